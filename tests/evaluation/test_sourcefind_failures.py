"""An image PyBDSF refuses is counted and left out, not the end of the evaluation."""

import numpy as np
import pytest

from radiodiff.evaluation import sourcefind
from radiodiff.evaluation.metrics import EvalSettings, _sourcefinder
from radiodiff.evaluation.physical import set_background
from radiodiff.evaluation.sets import ImageSet


CALLS = []  # (image peak, rms) of each call, in order


def _fake_find(image, **kwargs):
    CALLS.append((float(image.max()), kwargs["rms"]))
    if image.max() > 0.9:  # the "bad" images
        raise RuntimeError("PyBDSF failed: A region with an unphysical rms value has been found.")
    return {"n_sources": 1, "n_gaussians": 1, "total_flux": float(image.sum()),
            "source_fluxes": [1.0], "positions": [(0.0, 0.0)], "area50": 3.0,
            "area50_arcsec2": 9.0, "rms": kwargs["rms"]}


def test_failures_are_counted_and_the_physical_rms_is_per_image(monkeypatch):
    monkeypatch.setattr(sourcefind, "find_sources", _fake_find)
    monkeypatch.setattr(sourcefind, "_import_bdsf", lambda: None)
    images = np.full((6, 1, 8, 8), 0.5, np.float32)
    images[[1, 4], 0, 0, 0] = 1.0
    images[2] = 0.0  # no background to measure: the survey's rms stands in
    cond = {"peak_flux": np.array([1e-3, 2e-3, 4e-3, 1e-2, 1e-1, 1.0]),
            "las_arcsec": np.full(6, 30.0)}
    real = ImageSet(images, np.zeros(6, np.int64), "real", cond)
    fake = ImageSet(images[::-1].copy(), np.zeros(6, np.int64), "fake", cond)
    meta = {"pixel_scale_arcsec": 1.8, "beam_arcsec": [5.4, 5.4], "image_unit": "Jy/beam",
            "scaling": "per_image", "negatives": "clip", "rms_jy_beam": 1.5e-4}
    CALLS.clear()
    out = _sourcefinder(real, fake, meta, EvalSettings(sf_processes=1, n_repeats=2), None)
    # each real image's threshold: its own background rms (the survey's where it has none)
    # over its own peak flux, in the image's units
    bg = set_background(real, meta).rms
    assert np.isfinite(bg[[0, 1, 3, 4, 5]]).all() and not bg[2] > 0
    want = np.where(np.isfinite(bg) & (bg > 0), bg, 1.5e-4) / cond["peak_flux"]
    assert len(CALLS) == 12 and [c[0] for c in CALLS[:6]] == [0.5, 1, 0, 0.5, 1, 0.5]
    np.testing.assert_allclose([c[1] for c in CALLS[:6]], want, rtol=1e-6)
    assert want[2] == pytest.approx(1.5e-4 / 4e-3) and want[0] == pytest.approx(0.7413, 1e-3)
    failed = out["sourcefinder_summary"]["failed"]
    assert failed["real"]["n"] == 2 and failed["real"]["of"] == 6
    assert "unphysical rms" in failed["real"]["first"][0]
    assert len(out["per_image"]["real"]["n_sources"]) == 4
    assert out["sourcefinder_summary"]["rms"] == "background rms / peak, per image"
    # every image refused: an error, not an empty comparison
    bad = ImageSet(np.ones((3, 1, 8, 8), np.float32), np.zeros(3, np.int64), "bad",
                   {k: v[:3] for k, v in cond.items()})
    with pytest.raises(RuntimeError, match="failed on every real image"):
        _sourcefinder(bad, bad, meta, EvalSettings(sf_processes=1, n_repeats=2), None)


def test_without_skip_a_failure_still_raises(monkeypatch):
    monkeypatch.setattr(sourcefind, "find_sources", _fake_find)
    monkeypatch.setattr(sourcefind, "_import_bdsf", lambda: None)
    with pytest.raises(RuntimeError, match="unphysical"):
        sourcefind.find_sources_batch(np.ones((2, 8, 8), np.float32), 1.8, 5.4, rms=0.01,
                                      processes=1)


def test_the_beam_position_angle_reaches_pybdsf_and_its_input_file(monkeypatch):
    from types import SimpleNamespace

    from astropy.io import fits
    seen = {}

    def process_image(path, outdir, **options):
        seen.update(options, bpa=fits.getheader(path)["BPA"])
        raise RuntimeError("stop here")
    monkeypatch.setattr(sourcefind, "_import_bdsf",
                        lambda: SimpleNamespace(process_image=process_image))
    image = np.zeros((32, 32), np.float32)
    image[16, 16] = 1.0
    with pytest.raises(RuntimeError, match="stop here"):
        sourcefind.find_sources(image, 1.8, (6.4, 5.4), rms=0.01, beam_pa_deg=30.0)
    assert seen["beam"] == pytest.approx((6.4 / 3600, 5.4 / 3600, 30.0)) and seen["bpa"] == 30.0
    with pytest.raises(ValueError, match="beam_pa_deg must be finite"):
        sourcefind.find_sources(image, 1.8, (6.4, 5.4), rms=0.01, beam_pa_deg=float("nan"))
