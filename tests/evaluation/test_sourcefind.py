"""PyBDSF source-finder statistics on FIRST-like synthetic images with known sources.

Images are 80x80 pixels of 1.8" with a circular 5.4" (3-pixel FWHM) beam and Gaussian noise
of rms 0.1 mJy/beam. Sources are beam-shaped, so each one's total flux density [Jy] equals
its peak [Jy/beam] and half of its flux lies inside the half-power contour, of area
pi * FWHM^2 / 4 = 7.07 pixels = 22.9 arcsec^2.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from radiodiff.evaluation import sourcefind
from radiodiff.evaluation.sourcefind import (
    SOURCE_KEYS,
    find_sources,
    find_sources_batch,
    source_stats,
)

try:
    sourcefind._import_bdsf()  # not pytest.importorskip: this also undoes bdsf's np.seterr
    HAVE_BDSF = True
except ImportError:
    HAVE_BDSF = False

pytestmark = pytest.mark.skipif(not HAVE_BDSF,
                                reason="PyBDSF is not installed (pip install bdsf)")

N = 80
PIXEL = 1.8       # arcsec
BEAM = 5.4        # arcsec FWHM
RMS = 1e-4        # Jy/beam
FWHM_PIX = BEAM / PIXEL
BEAM_HALF_AREA = math.pi * FWHM_PIX**2 / 4  # pixels


def beam_source(x0: float, y0: float, peak: float, n: int = N) -> np.ndarray:
    """(n, n) beam-shaped source [Jy/beam] at 0-based (x = column, y = row)."""
    sigma = FWHM_PIX / (2 * math.sqrt(2 * math.log(2)))
    y, x = np.mgrid[:n, :n]
    return peak * np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / sigma**2)


def noisy(sources: list[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).normal(0.0, RMS, (N, N))
    for x0, y0, peak in sources:
        image += beam_source(x0, y0, peak)
    return image


def find(image: np.ndarray, **kwargs) -> dict:
    kwargs.setdefault("rms", RMS)
    return find_sources(image, PIXEL, BEAM, **kwargs)


def test_single_source_position_flux_and_area50():
    x0, y0, peak = 30.3, 40.7, 5e-3  # S/N 50
    result = find(noisy([(x0, y0, peak)]))
    assert result["n_sources"] == 1 and result["n_gaussians"] == 1
    (x, y), = result["positions"]
    assert abs(x - x0) < 1 and abs(y - y0) < 1
    assert result["total_flux"] == pytest.approx(peak, rel=0.1)
    assert result["source_fluxes"] == [pytest.approx(result["total_flux"])]
    # Half the flux of a point source lies within the half-power contour; 10 % leaves room
    # for the noise in the fitted size (a few per cent at S/N 50).
    assert result["area50"] == pytest.approx(BEAM_HALF_AREA, rel=0.1)
    assert result["area50_arcsec2"] == pytest.approx(result["area50"] * PIXEL**2)


def test_two_sources():
    truth = [(20.0, 55.0, 3e-3), (58.4, 22.6, 1.5e-3)]
    result = find(noisy(truth, seed=1))
    assert result["n_sources"] == 2
    found = sorted(zip(result["positions"], result["source_fluxes"]))  # by x
    for ((x, y), flux), (x0, y0, peak) in zip(found, truth):
        assert abs(x - x0) < 1 and abs(y - y0) < 1
        assert flux == pytest.approx(peak, rel=0.1)
    assert result["total_flux"] == pytest.approx(3e-3 + 1.5e-3, rel=0.1)
    # Two well separated point sources of unequal flux: more than one beam, less than two.
    assert BEAM_HALF_AREA < result["area50"] < 2 * BEAM_HALF_AREA


@pytest.mark.parametrize("rms", [RMS, None], ids=["fixed_rms", "estimated_rms"])
def test_noise_only_finds_nothing(rms):
    result = find(noisy([], seed=2), rms=rms)
    assert result == {"n_sources": 0, "n_gaussians": 0, "total_flux": 0.0, "source_fluxes": [],
                      "positions": [], "area50": 0.0, "area50_arcsec2": 0.0}


@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_blank_images_find_nothing(fill):
    assert find(np.full((N, N), fill))["n_sources"] == 0


def test_zero_background_model_units():
    # Model-space images: no noise, background exactly 0, peak 1. PyBDSF alone stops on the
    # zero clipped rms; the module's 1e-3 rms dither keeps it going.
    image = beam_source(40.2, 39.6, 1.0)
    image[image < 1e-3] = 0.0
    result = find_sources(image, PIXEL, BEAM, rms=0.01)
    assert result["n_sources"] == 1
    assert result["positions"][0] == pytest.approx((40.2, 39.6), abs=0.05)
    assert result["total_flux"] == pytest.approx(1.0, rel=0.02)
    assert result["area50"] == pytest.approx(BEAM_HALF_AREA, rel=0.03)


def test_constant_image_without_rms_is_a_clear_error():
    with pytest.raises(RuntimeError, match="PyBDSF failed"):
        find(np.zeros((N, N)), rms=None)


def test_area50_of_rendered_gaussians():
    # Half the flux of an elliptical Gaussian lies inside its half-maximum ellipse.
    model = sourcefind._render_gaussians([(1.0, 50.3, 49.6, 6.0, 3.0, 30.0)], (100, 100))
    assert sourcefind._area50(model) == pytest.approx(math.pi * 6.0 * 3.0 / 4, rel=0.01)
    # Two equal, far apart copies: twice the area.
    model = sourcefind._render_gaussians([(2.0, 20, 20, 4, 4, 0), (2.0, 70, 70, 4, 4, 0)],
                                         (100, 100))
    assert sourcefind._area50(model) == pytest.approx(2 * math.pi * 4.0, rel=0.01)
    assert sourcefind._area50(np.zeros((10, 10))) == 0.0


def test_quiet_and_clean(tmp_path, capfd):
    errstate = np.geterr()
    result = find(noisy([(40.0, 40.0, 2e-3)]), workdir=tmp_path)
    assert result["n_sources"] == 1
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert list(tmp_path.iterdir()) == []  # FITS file and PyBDSF log removed
    assert logging.getLogger("PyBDSF").handlers == []  # log file closed
    assert np.geterr() == errstate  # bdsf sets numpy.seterr while it runs


def test_batch_with_two_processes_equals_sequential():
    images = np.stack([noisy([(30.0, 40.0, 5e-3)], seed=3),
                       noisy([(20.0, 55.0, 3e-3), (58.4, 22.6, 1.5e-3)], seed=4),
                       noisy([], seed=5),
                       noisy([(60.5, 60.5, 1e-3)], seed=6)])
    sequential = [find(image) for image in images]
    calls = []

    def progress(iterable, total):
        calls.append(total)
        return iterable

    parallel = find_sources_batch(images[:, None], PIXEL, BEAM, rms=RMS, processes=2,
                                  progress=progress)
    assert parallel == sequential
    assert calls == [4]
    assert [r["n_sources"] for r in parallel] == [1, 2, 0, 1]

    stats = source_stats(parallel)
    assert tuple(stats) == SOURCE_KEYS
    assert stats["n_sources"].dtype == np.int64 and stats["area50"].dtype == np.float64
    np.testing.assert_array_equal(stats["n_sources"], [1, 2, 0, 1])
    np.testing.assert_allclose(stats["total_flux"], [r["total_flux"] for r in sequential])
    assert stats["area50"][2] == 0.0


def test_argument_errors():
    with pytest.raises(ValueError, match="image must be 2-D"):
        find(np.zeros((2, N, N)))
    with pytest.raises(ValueError, match="beam_arcsec"):
        find_sources(np.zeros((N, N)), PIXEL, (5.4, -1.0), rms=RMS)
    with pytest.raises(ValueError, match="rms must be a positive"):
        find(np.zeros((N, N)), rms=0.0)
    with pytest.raises(ValueError, match="rms has 1 values for 2 images"):
        find_sources_batch(np.zeros((2, N, N)), PIXEL, BEAM, rms=[RMS], processes=1)
    with pytest.raises(ValueError, match="processes must be >= 1"):
        find_sources_batch(np.zeros((2, N, N)), PIXEL, BEAM, rms=RMS, processes=0)
