"""The shipped physical-units model, models/mirabest: Jy/beam FITS from a fresh clone."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from radiodiff.cli import main
from radiodiff.pipeline.generate import generate
from radiodiff.io.release_files import resolve_model
from radiodiff.pipeline.release import load_release
from radiodiff.io.samples import sample_images


@pytest.fixture(scope="module")
def release():
    return load_release(resolve_model("mirabest"))  # hashes checked


def test_release_is_conditioned_in_physical_units(release):
    m = release.meta
    assert m["image_unit"] == "Jy/beam" and m["scaling"] == "per_image"
    assert release.classes == ["FRI", "FRII", "hybrid"]
    assert set(release.scalar_conditions) == {"peak_flux", "las_arcsec"}
    assert release.train_conditions is not None and m["train_conditions"]["rows"] > 700
    assert 1e-4 < m["rms_jy_beam"] < 3e-4               # FIRST: ~0.15 mJy/beam
    assert m["beam_arcsec"] == [5.4, 5.4]
    # the cutout rule: 80 native pixels at least, so no image finer than FIRST's 1.8"
    assert release.pixel_scale(10.0) == pytest.approx(1.8)
    assert release.pixel_scale(200.0) == pytest.approx(1.5 * 200 / 80)


def test_cli_sample_writes_jy_per_beam_fits(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "--model", "mirabest", "--peak-flux", "0.05", "--las", "90",
                 "--class", "FRII", "--n", "2", "--sampler", "dpmpp_2m", "--steps", "3",
                 "--ra", "150.1", "--dec", "2.2", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    for k in range(2):
        with fits.open(out / f"sample_{k:05d}.fits") as hdul:
            h, data = hdul[0].header, hdul[0].data
        assert h["BUNIT"] == "Jy/beam" and h["TELESCOP"] == "VLA"
        assert h["FREQ"] == pytest.approx(1.4e9)
        assert h["BMAJ"] * 3600 == pytest.approx(5.4) and h["BMIN"] * 3600 == pytest.approx(5.4)
        assert 1e-4 < h["RMS"] < 3e-4
        w = WCS(h)
        assert w.has_celestial and w.celestial.wcs.ctype[0].startswith("RA---")
        # LAS 90": side max(1.5 * 90, 144) = 144" over 80 pixels
        assert abs(w.wcs.cdelt[0]) * 3600 == pytest.approx(1.8)
        centre = w.pixel_to_world_values((data.shape[1] - 1) / 2, (data.shape[0] - 1) / 2)
        assert centre[0] == pytest.approx(150.1) and centre[1] == pytest.approx(2.2)
        # the unit restoration: the peak is the requested peak flux to float precision
        assert data.max() == pytest.approx(0.05, rel=1e-6)


def test_python_api_population_from_the_training_table(release):
    res = generate(release, 3, sampler="dpmpp_2m", steps=2, seed=7)
    table = release.train_conditions.columns
    rows = set(zip(table["label"].tolist(), table["peak_flux"].tolist(),
                   table["las_arcsec"].tolist()))
    c = res.conditions
    drawn = set(zip(c["label"].tolist(), c["peak_flux"].tolist(), c["las_arcsec"].tolist()))
    assert drawn <= rows                                # whole training rows
    assert res.unit == "Jy/beam"
    np.testing.assert_allclose(res.physical.reshape(3, -1).max(1), c["peak_flux"], rtol=1e-6)
    pairs = sample_images(release, res, ra=10.0, dec=-5.0)
    for (image, header), las in zip(pairs, c["las_arcsec"]):
        assert header["BUNIT"] == "Jy/beam" and image.shape == (80, 80)
        assert abs(header["CDELT1"]) * 3600 == pytest.approx(release.pixel_scale(las))
