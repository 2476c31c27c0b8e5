"""The training rows' condition table: from a prepared file's rows, CSV text, drawing pools."""

import math

import numpy as np
import pytest

from helpers.releases import train_table
from radiodiff.diffusion.condition_table import ConditionTable
from radiodiff.diffusion.conditions import ConditionTransform


def test_from_rows_keeps_the_rows_whose_conditions_are_known():
    columns = {"label": np.array([0, 1, -1, 1, 0], np.int16),
               "peak_flux": np.array([0.1, 0.2, 0.3, np.nan, 0.5]),
               "las_arcsec": np.array([10.0, 20.0, 30.0, 40.0, 0.0])}
    t = ConditionTable.from_rows(columns, [0, 1, 2, 3, 4], True, ["peak_flux", "las_arcsec"])
    assert t.names == ("label", "peak_flux", "las_arcsec") and len(t) == 2
    assert t.columns["label"].tolist() == [0, 1] and t.columns["label"].dtype == np.int64
    assert t.columns["peak_flux"].tolist() == [0.1, 0.2]
    # only the requested rows and conditions; nothing to record -> None
    t = ConditionTable.from_rows(columns, [4, 2], False, ["peak_flux"])
    assert t.names == ("peak_flux",) and t.columns["peak_flux"].tolist() == [0.5, 0.3]
    assert ConditionTable.from_rows(columns, [0, 1], False, []) is None
    assert ConditionTable.from_rows(columns, [2], True, []) is None  # unlabelled only


def test_csv_round_trip_is_exact():
    t = ConditionTable({"label": np.array([0, 3]), "peak_flux": np.array([0.1 + 0.2, 1e-300]),
                        "las_arcsec": np.array([1 / 3, 12.5])})
    text = t.to_csv()
    assert text.splitlines()[0] == "label,peak_flux,las_arcsec"
    back = ConditionTable.from_csv(text)
    assert back.names == t.names
    for name in t.names:
        assert back.columns[name].tolist() == t.columns[name].tolist()  # bit for bit
        assert back.columns[name].dtype == t.columns[name].dtype


@pytest.mark.parametrize("text, match", [
    ("", "needs a header line and at least one row"),
    ("label,peak_flux\n", "needs a header line and at least one row"),
    ("label,label\n0,1\n", "repeated names"),
    ("label,peak_flux\n0\n", "line 2 has 1 values, the header 2"),
    ("label,peak_flux\n0,0.1\n1.5,0.1\n", r"line 3: label '1.5' is not a class index"),
    ("label,peak_flux\n-1,0.1\n", r"label '-1' is not a class index"),
    ("peak_flux\n0.1\n-2\n", r"line 3: peak_flux '-2' is not a finite number > 0"),
    ("peak_flux\nnan\n", r"peak_flux 'nan' is not a finite number > 0"),
])
def test_from_csv_errors_are_one_line(text, match):
    with pytest.raises(ValueError, match=r"^t\.csv: .*" + match):
        ConditionTable.from_csv(text, "t.csv")


def test_pool_by_class_and_nearest_fixed_values():
    t = train_table(40)
    transform = ConditionTransform.fit(t.columns, t.scalars)
    rows, matched = t.pool(transform)
    assert matched and rows.tolist() == list(range(40))
    rows, matched = t.pool(transform, label=1)
    assert matched and rows.tolist() == list(range(1, 40, 2))
    # a fixed peak: the ceil(sqrt(20)) = 5 FRII rows nearest in log peak
    peak = float(t.columns["peak_flux"][7])
    rows, _ = t.pool(transform, label=1, fixed={"peak_flux": peak})
    frii = np.arange(1, 40, 2)
    dist = np.abs(np.log10(t.columns["peak_flux"][frii]) - math.log10(peak))
    assert sorted(rows.tolist()) == sorted(frii[np.argsort(dist)[:5]].tolist())
    assert 7 in rows.tolist()
    # no row of the class: all rows, said so
    rows, matched = train_table(6, labels=[0] * 6).pool(transform, label=1)
    assert not matched and rows.tolist() == list(range(6))
