"""ConditionTransform: round trips, standardisation, null values, serialisation, errors."""

import json

import numpy as np
import pytest
import torch

from radiodiff.diffusion.conditions import ConditionTransform


@pytest.fixture
def columns():
    rng = np.random.default_rng(0)
    return {"peak_flux": rng.lognormal(-5.0, 1.5, 500),      # Jy/beam
            "las_arcsec": rng.gamma(3.0, 20.0, 500)}         # arcsec


@pytest.mark.parametrize("method", ["log", "boxcox"])
def test_round_trip_and_standardised(columns, method):
    t = ConditionTransform.fit(columns, ["peak_flux", "las_arcsec"], method=method)
    assert t.names == ("peak_flux", "las_arcsec")
    for name, x in columns.items():
        z = t.encode(name, x)
        assert z.dtype == np.float64 and np.isfinite(z).all()
        np.testing.assert_allclose(z.mean(), 0.0, atol=1e-10)
        np.testing.assert_allclose(z.std(), 1.0, rtol=1e-10)
        np.testing.assert_allclose(t.decode(name, z), x, rtol=1e-9)


def test_log_is_standardised_log10():
    x = np.array([1e-3, 1e-2, 1e-1])
    t = ConditionTransform.fit({"f": x}, ["f"])
    np.testing.assert_allclose(t.encode("f", x), [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_allclose(t.encode("f", [1e-2]), [0.0], atol=1e-12)


def test_boxcox_per_name_method_and_lambda(columns):
    t = ConditionTransform.fit(columns, ["peak_flux", "las_arcsec"],
                               method={"peak_flux": "boxcox"})
    d = t.to_dict()["conditions"]
    assert d["peak_flux"]["method"] == "boxcox" and np.isfinite(d["peak_flux"]["lmbda"])
    assert d["las_arcsec"]["method"] == "log" and d["las_arcsec"]["lmbda"] is None


def test_invalid_raw_values_are_null(columns):
    t = ConditionTransform.fit(columns, ["peak_flux"], method="boxcox")
    z = t.encode("peak_flux", [np.nan, 0.0, -1.0, np.inf, 0.01])
    assert np.isnan(z[:4]).all() and np.isfinite(z[4])
    assert np.isnan(t.decode("peak_flux", [np.nan]))[0]


def test_fit_ignores_invalid_training_values(columns):
    x = columns["peak_flux"]
    clean = ConditionTransform.fit({"p": x}, ["p"]).to_dict()
    dirty = ConditionTransform.fit({"p": np.concatenate([x, [np.nan, -1, 0, np.inf]])},
                                   ["p"]).to_dict()
    assert clean == dirty


def test_dict_round_trip(columns):
    t = ConditionTransform.fit(columns, ["peak_flux", "las_arcsec"],
                               method={"peak_flux": "boxcox", "las_arcsec": "log"})
    back = ConditionTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back.names == t.names and back.to_dict() == t.to_dict()
    for name, x in columns.items():
        np.testing.assert_array_equal(back.encode(name, x), t.encode(name, x))


def test_encode_batch(columns):
    t = ConditionTransform.fit(columns, ["peak_flux", "las_arcsec"])
    label = torch.tensor([0, -1, 1])
    raw = {"label": label, "peak_flux": torch.tensor([0.01, float("nan"), 0.1]),
           "las_arcsec": torch.tensor([30.0, 60.0, -1.0], dtype=torch.float64)}
    enc = t.encode_batch(raw)
    assert enc["label"] is label
    for name in ("peak_flux", "las_arcsec"):
        assert enc[name].dtype == torch.float32 and enc[name].shape == (3,)
        np.testing.assert_allclose(enc[name].numpy(), t.encode(name, raw[name].numpy()),
                                   rtol=1e-6)
    assert torch.isnan(enc["peak_flux"][1]) and torch.isnan(enc["las_arcsec"][2])


def test_errors(columns):
    with pytest.raises(ValueError, match=r"unknown condition 'size'"):
        ConditionTransform.fit(columns, ["size"])
    with pytest.raises(ValueError, match=r"'p' has 1 finite positive value\(s\); need at least 2"):
        ConditionTransform.fit({"p": [1.0, np.nan, -2.0, 0.0]}, ["p"])
    with pytest.raises(ValueError, match=r"'p' is constant"):
        ConditionTransform.fit({"p": [2.0, 2.0, 2.0]}, ["p"])
    with pytest.raises(ValueError, match=r"unknown method 'sqrt'.*\['log', 'boxcox'\]"):
        ConditionTransform.fit(columns, ["peak_flux"], method="sqrt")
    t = ConditionTransform.fit(columns, ["peak_flux"])
    with pytest.raises(ValueError, match=r"unknown condition 'las_arcsec'.*\['peak_flux'\]"):
        t.encode("las_arcsec", [1.0])
    with pytest.raises(ValueError, match=r"unknown condition 'las_arcsec'"):
        t.decode("las_arcsec", [0.0])
    with pytest.raises(ValueError, match=r"unknown condition 'las_arcsec'"):
        t.encode_batch({"las_arcsec": torch.ones(2)})
    with pytest.raises(ValueError, match=r"not a ConditionTransform dict"):
        ConditionTransform.from_dict({"peak_flux": {}})
