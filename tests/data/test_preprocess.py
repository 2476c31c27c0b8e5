"""Cuts, measurements, resizing, negatives and scaling on arrays with known answers."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from radiodiff.data.prepared import FLAGS
from radiodiff.data.preprocess import (
    apply_negatives, beam_area_arcsec2, first_reason, fit_scaling, measure, quality_flags,
    resize_image,
)


def cuts(**kw):
    base = dict(nan="drop", blank=True, snr_min=5.0, edge_max_frac=0.8)
    base.update(kw)
    return SimpleNamespace(**base)


def gauss(n=64, x0=32.0, y0=32.0, s=3.0, peak=1.0):
    y, x = np.mgrid[:n, :n]
    return (peak * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * s * s))).astype(np.float32)


def test_total_flux_of_a_point_source_equals_its_peak():
    # A point source imaged by a round beam: total flux (Jy) = peak (Jy/beam).
    pix, fwhm = 1.5, 6.0
    s = fwhm / 2.3548200450309493 / pix
    img = gauss(s=s, peak=0.05)
    m = measure(img, rms=1e-5, pixel_scale_arcsec=pix, beam_arcsec=(fwhm, fwhm))
    assert m["peak_flux"] == pytest.approx(0.05, rel=1e-6)
    assert m["snr"] == pytest.approx(5000.0, rel=1e-6)
    assert m["total_flux"] == pytest.approx(0.05, rel=2e-3)
    assert beam_area_arcsec2(fwhm, fwhm) == pytest.approx(2 * math.pi * (fwhm / 2.35482) ** 2,
                                                          rel=1e-4)


def test_measure_without_noise_has_no_snr_or_total():
    m = measure(gauss(), rms=float("nan"), pixel_scale_arcsec=1.8, beam_arcsec=(5.4, 5.4))
    assert m["peak_flux"] == 1.0 and math.isnan(m["snr"]) and math.isnan(m["total_flux"])


def test_clean_source_passes_every_cut():
    assert quality_flags(gauss(), snr=100.0, cuts=cuts()) == 0


def test_low_snr_and_switching_it_off():
    assert quality_flags(gauss(), snr=4.9, cuts=cuts()) == FLAGS["low_snr"]
    assert quality_flags(gauss(), snr=4.9, cuts=cuts(snr_min=None)) == 0
    assert quality_flags(gauss(), snr=float("nan"), cuts=cuts()) == 0  # no noise measured


def test_edge_emission_threshold_is_0p8_of_peak():
    img = gauss()
    img[0, 10] = 0.81
    assert quality_flags(img, 100.0, cuts()) == FLAGS["edge_emission"]
    img[0, 10] = 0.79
    assert quality_flags(img, 100.0, cuts()) == 0
    img[-1, 5] = 0.9
    assert quality_flags(img, 100.0, cuts(edge_max_frac=None)) == 0


def test_nan_drop_and_fill_policies():
    img = gauss()
    img[3:6, 3:6] = np.nan
    assert quality_flags(img, 100.0, cuts()) == FLAGS["nan"]
    assert quality_flags(img, 100.0, cuts(nan="fill")) == 0


def test_blank_images_are_flagged_and_reasons_ordered():
    zero = np.zeros((20, 20), np.float32)
    assert quality_flags(zero, float("nan"), cuts()) == FLAGS["blank"]
    assert quality_flags(zero, float("nan"), cuts(blank=False, edge_max_frac=None)) == 0
    allnan = np.full((20, 20), np.nan, np.float32)
    flags = quality_flags(allnan, float("nan"), cuts())
    assert flags == FLAGS["nan"] | FLAGS["blank"] and first_reason(flags) == "nan"


def test_resize_downsamples_with_antialiasing_and_keeps_centre():
    img = gauss(n=300, x0=149.5, y0=149.5, s=12.0)
    out = resize_image(img, 80)
    assert out.shape == (80, 80) and out.dtype == np.float32
    iy, ix = np.unravel_index(np.argmax(out), out.shape)
    assert abs(iy - 39.5) <= 0.5 and abs(ix - 39.5) <= 0.5
    # Surface brightness is kept: the mean over the image is unchanged by resampling.
    assert out.mean() == pytest.approx(img.mean(), rel=0.02)
    # Anti-aliasing: a one-pixel checkerboard averages out instead of aliasing.
    checker = (np.indices((300, 300)).sum(0) % 2).astype(np.float32)
    assert resize_image(checker, 80).std() < 0.05


def test_resize_upsamples_small_cutouts():
    out = resize_image(gauss(n=33, x0=16, y0=16), 80)
    assert out.shape == (80, 80) and 0.9 < out.max() <= 1.0


@pytest.mark.parametrize("mode, expected", [
    ("clip", [0.0, 0.0, 2.0]), ("abs", [1.0, 0.0, 2.0]), ("keep", [-1.0, 0.0, 2.0])])
def test_negatives(mode, expected):
    assert apply_negatives(np.array([-1.0, 0.0, 2.0]), mode).tolist() == expected


def test_negatives_rejects_unknown_mode():
    with pytest.raises(ValueError, match="clip, abs or keep"):
        apply_negatives(np.zeros(3), "square")


def test_scaling_per_image_and_dataset():
    imgs = np.stack([np.full((4, 4), 2.0), np.full((4, 4), 4.0)])
    imgs[:, 0, 0] = 0.0
    scale, offset = fit_scaling(imgs, "per_image", "clip")
    assert scale.tolist() == [2.0, 4.0] and offset.tolist() == [0.0, 0.0]
    scale, offset = fit_scaling(imgs, "dataset", "clip")
    assert scale.tolist() == [4.0, 4.0] and offset.tolist() == [0.0, 0.0]
    imgs[:, 0, 0] = -1.0
    scale, offset = fit_scaling(imgs, "per_image", "keep")
    assert scale.tolist() == [3.0, 5.0] and offset.tolist() == [-1.0, -1.0]
    scaled = (imgs - offset[:, None, None]) / scale[:, None, None]
    assert scaled.min() == 0.0 and scaled.max() == 1.0


def test_scaling_of_a_constant_image_is_finite():
    scale, offset = fit_scaling(np.zeros((1, 4, 4)), "per_image", "clip")
    assert scale.tolist() == [1.0] and offset.tolist() == [0.0]
    with pytest.raises(ValueError, match="per_image or dataset"):
        fit_scaling(np.zeros((1, 4, 4)), "global", "clip")


def test_measure_is_float64_for_huge_values():
    # float32 sums overflow at ~3.4e38: the total flux of a 1e38 Jy/beam image stays finite
    img = np.full((32, 32), 1e38, np.float32)
    m = measure(img, rms=1e36, pixel_scale_arcsec=1.8, beam_arcsec=(5.4, 5.4))
    assert np.isfinite(m["total_flux"]) and m["snr"] == pytest.approx(100.0)
    assert np.isnan(measure(img, rms=float("inf"), pixel_scale_arcsec=1.8,
                            beam_arcsec=(5.4, 5.4))["snr"])


def test_a_cutout_without_one_finite_pixel_is_blank_even_with_the_blank_cut_off():
    img = np.full((8, 8), np.nan)
    assert quality_flags(img, 100.0, cuts(nan="fill", blank=False)) == FLAGS["blank"]
    assert quality_flags(img, 100.0, cuts()) == FLAGS["nan"] | FLAGS["blank"]
