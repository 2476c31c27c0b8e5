"""Conditions checked against what the model knows (issue 27, item 2): peak flux and LAS far
beyond the training rows are refused unless asked for, conditions at the edges of float
range never reach the network, and nothing non-finite or absurd is written (images, FITS
cards, CDELT)."""

import dataclasses

import numpy as np
import pytest
from omegaconf import OmegaConf

from helpers.releases import train_table, tiny_physical_release
from radiodiff.cli import main
from radiodiff.pipeline import run as run_mod
from radiodiff.diffusion.condition_table import EXTRAPOLATION_FACTOR
from radiodiff.pipeline.generate import generate
from radiodiff.io.fits import write_fits_image
from radiodiff.io.integrity import IntegrityError
from radiodiff.pipeline.release import load_release
from radiodiff.io.samples import save_samples

FAST = dict(steps=2)


@pytest.fixture(scope="module")
def rel_dir(tmp_path_factory):
    return tiny_physical_release(tmp_path_factory.mktemp("rel") / "phys",
                                 train_conditions=train_table(40))


@pytest.fixture(scope="module")
def release(rel_dir):
    return load_release(rel_dir)


def _range(release, name):
    col = release.train_conditions.columns[name]
    return float(col.min()), float(col.max())


@pytest.mark.parametrize("name, side", [("peak_flux", "above"), ("peak_flux", "below"),
                                        ("las_arcsec", "above"), ("las_arcsec", "below")])
def test_conditions_far_beyond_the_training_rows_are_refused(release, name, side):
    lo, hi = _range(release, name)
    value = hi * EXTRAPOLATION_FACTOR * 3 if side == "above" else lo / EXTRAPOLATION_FACTOR / 3
    with pytest.raises(ValueError, match=rf"{name}=.* more than 10x {side} the training "
                                         r"rows' range .*--allow-extrapolation"):
        generate(release, 1, **{name: value}, **FAST)
    r = generate(release, 1, **{name: value}, allow_extrapolation=True, **FAST)
    assert np.isfinite(r.output).all()
    inside = hi * EXTRAPOLATION_FACTOR / 2 if side == "above" else lo / EXTRAPOLATION_FACTOR * 2
    generate(release, 1, **{name: inside}, **FAST)  # within the factor: as before


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_one_unknown_row_does_not_switch_the_range_check_off(bad):
    """The range is that of the finite rows (before: min/max of a column holding one NaN is
    NaN, and every comparison with it false: nothing was ever beyond the range)."""
    from radiodiff.diffusion.condition_table import ConditionTable

    table = ConditionTable({"label": np.array([0, 1, 0]),
                            "peak_flux": np.array([1e-3, bad, 1e-2]),
                            "las_arcsec": np.array([10.0, 20.0, 30.0])})
    why = table.beyond_range("peak_flux", [1e-2 * EXTRAPOLATION_FACTOR * 3])
    assert why is not None and "above the training rows' range [0.001, 0.01]" in why
    assert table.beyond_range("peak_flux", [5e-3]) is None
    assert ConditionTable({"peak_flux": np.array([np.nan])}).beyond_range("peak_flux",
                                                                         [1e9]) is None


def test_cli_refuses_extrapolation_in_one_line(rel_dir, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["sample", "--model", str(rel_dir), "--n", "1", "--steps", "2", "--out", str(out)]
    assert main([*args, "--peak-flux", "1000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "peak_flux=1000 Jy/beam is more than 10x above" in err[0]
    assert not out.exists()
    assert main([*args, "--peak-flux", "1000", "--allow-extrapolation"]) == 0
    assert (out / "samples.h5").is_file()


@pytest.mark.parametrize("option", ["--peak-flux", "--las"])
@pytest.mark.parametrize("value, says", [
    ("1e308", "outside float32's range"),      # before: an all-inf FITS, exit 0
    ("1e-320", "outside float32's range"),     # before: an all-zero FITS, exit 0
    ("nan", "must be a positive number"),
    ("inf", "must be a positive number"),
    ("-0.0", "must be a positive number"),
])
def test_conditions_at_the_edges_of_float_range(rel_dir, tmp_path, capsys, option, value,
                                                says):
    out = tmp_path / "o"
    assert main(["sample", "--model", str(rel_dir), "--n", "1", "--steps", "2",
                 "--out", str(out), "--allow-extrapolation", option, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_absurd_las_never_writes_an_absurd_cdelt(release, tmp_path):
    """A LAS-cut release (mirabest-like) asked for LAS 1e30 (explicitly allowed) would get
    pixels of 1e24 degrees: refused before anything is written."""
    cfg = OmegaConf.create({"model": OmegaConf.to_container(release.config.model),
                            "data": {"name": "mirabest", "source": "mirabest",
                                     "cutout": {"k_las": 1.5, "min_size_arcsec": 144.0}}})
    mb = dataclasses.replace(release, config=cfg)
    r = generate(mb, 1, las_arcsec=1e30, allow_extrapolation=True, **FAST)
    with pytest.raises(ValueError, match=r"deg wide, more than 180 deg \(CDELT would be absurd"):
        save_samples(tmp_path / "o", mb, r)
    assert not (tmp_path / "o").exists()


def test_nonfinite_fits_cards_are_refused(tmp_path):
    """Before: a non-finite card was written as the string 'inf'."""
    for value in (float("inf"), float("nan"), np.float32("-inf")):
        with pytest.raises(ValueError, match="FITS card PEAKFLUX = .* is not finite"):
            write_fits_image(tmp_path / "x.fits", np.ones((4, 4)), 1.8,
                             cards={"PEAKFLUX": value})
    assert not list(tmp_path.iterdir())


def test_nonfinite_restored_images_are_never_written(rel_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run_mod, "_restore",
                        lambda pipe, images, peak: np.full_like(images, np.inf))
    with pytest.raises(IntegrityError, match=r"1 of 1 restored \(Jy/beam\) images hold NaN"):
        generate(load_release(rel_dir), 1, peak_flux=0.02, **FAST)
    out = tmp_path / "o"
    assert main(["sample", "--model", str(rel_dir), "--n", "1", "--steps", "2",
                 "--peak-flux", "0.02", "--out", str(out)]) == 2
    assert "nothing written" in capsys.readouterr().err and not out.exists()
