"""Segmentation statistics and intensity-bin statistics on images with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radiodiff.evaluation.segmentation import SEGMENT_KEYS, pixel_bin_stats, segment_stats

H = W = 80


def blank(n: int = 1) -> np.ndarray:
    return np.zeros((n, H, W))


def test_two_separated_blobs():
    img = blank()
    img[0, 30:35, 10:15] = 1.0  # 5x5 blob, flux 25
    img[0, 30:35, 50:55] = 0.5  # 5x5 blob, flux 12.5
    s = segment_stats(img)
    assert tuple(s) == SEGMENT_KEYS
    assert s["n_components"][0] == 2
    assert s["area"][0] == 50
    # Outer edges at x = 9.5 and 54.5 (45 px apart); the farthest corners are also 5 px
    # apart in y: sqrt(45^2 + 5^2), within 1 % of the edge-to-edge distance.
    assert s["las"][0] == pytest.approx(math.hypot(45.0, 5.0), abs=1e-12)
    assert s["las"][0] == pytest.approx(45.0, rel=0.01)
    assert s["flux"][0] == 37.5
    assert s["peak"][0] == 1.0
    assert s["largest_component_fraction"][0] == pytest.approx(25.0 / 37.5, abs=1e-15)


@pytest.mark.parametrize("length", [3, 20, 60])
def test_bar_las_is_its_length(length):
    horizontal, vertical = blank(2)
    horizontal[40, 10:10 + length] = 0.5
    vertical[5:5 + length, 33] = 0.5
    s = segment_stats(np.stack([horizontal, vertical]))
    # Pixels are unit squares: the corner-to-corner diagonal is sqrt(L^2 + 1), which is
    # within 1 / (2 L) of L.
    np.testing.assert_allclose(s["las"], math.hypot(length, 1.0), rtol=0, atol=1e-12)
    assert np.all(np.abs(s["las"] - length) <= 0.5 / length)
    np.testing.assert_array_equal(s["n_components"], [1, 1])
    np.testing.assert_array_equal(s["area"], [length, length])
    np.testing.assert_allclose(s["flux"], 0.5 * length, rtol=0, atol=1e-12)


def test_diagonal_pixels_are_one_component_with_8_connectivity():
    img = blank()
    for k in range(10):
        img[0, 20 + k, 20 + k] = 0.8
    s = segment_stats(img)
    assert s["n_components"][0] == 1
    # Corners (19.5, 19.5) and (29.5, 29.5).
    assert s["las"][0] == pytest.approx(10.0 * math.sqrt(2.0), abs=1e-12)


def test_small_components_are_ignored_but_peak_is_not():
    img = blank(3)
    img[0, 10, 10] = 0.9  # one pixel < min_area = 3
    img[1, 10, 10:12] = 0.9  # two pixels < 3
    img[1, 50, 20:23] = 0.4  # exactly min_area: kept
    img[2, 10, 10] = 0.9
    s = segment_stats(img)
    np.testing.assert_array_equal(s["n_components"], [0, 1, 0])
    np.testing.assert_array_equal(s["area"], [0, 3, 0])
    np.testing.assert_allclose(s["flux"], [0.0, 1.2, 0.0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(s["peak"], [0.9, 0.9, 0.9])  # whole-image maximum
    assert s["las"][1] == pytest.approx(math.hypot(3.0, 1.0), abs=1e-12)
    single = segment_stats(img[2:], min_area=1)
    assert single["n_components"][0] == 1 and single["area"][0] == 1
    assert single["las"][0] == pytest.approx(math.sqrt(2.0), abs=1e-12)
    assert single["largest_component_fraction"][0] == 1.0


def test_empty_image_gives_zeros_without_error():
    img = blank(2)
    img[1] = 0.1  # exactly at the threshold: not emission (strict >)
    s = segment_stats(img)
    for key in ("n_components", "area", "las", "flux"):
        np.testing.assert_array_equal(s[key], [0.0, 0.0], err_msg=key)
    np.testing.assert_array_equal(s["peak"], [0.0, 0.1])
    assert np.isnan(s["largest_component_fraction"]).all()


def test_threshold_and_flux_exact():
    img = blank()
    img[0] = 0.05  # background below threshold, not in the flux
    img[0, 10:14, 10:14] = np.arange(16).reshape(4, 4) / 20.0 + 0.15  # all > 0.1
    s = segment_stats(img)
    assert s["n_components"][0] == 1 and s["area"][0] == 16
    assert s["flux"][0] == pytest.approx(16 * 0.15 + np.arange(16).sum() / 20.0, abs=1e-12)
    assert s["peak"][0] == pytest.approx(0.15 + 15 / 20.0, abs=1e-15)
    higher = segment_stats(img, threshold=0.5)
    assert higher["area"][0] == int((np.arange(16) / 20.0 + 0.15 > 0.5).sum())


def test_pixel_scale_converts_las_only():
    img = blank()
    img[0, 40, 10:30] = 1.0
    px = segment_stats(img)
    arcsec = segment_stats(img, pixel_scale_arcsec=1.8)
    assert arcsec["las"][0] == pytest.approx(1.8 * px["las"][0], rel=1e-15)
    for key in ("n_components", "area", "flux", "peak"):
        assert arcsec[key][0] == px[key][0], key


def test_torch_and_channel_axis_match_numpy():
    img = blank(2)
    img[0, 30:35, 10:15] = 1.0
    img[1, 40, 10:30] = 0.7
    ref = segment_stats(img)
    for batch in (torch.from_numpy(img)[:, None].float(), img[:, None]):
        s = segment_stats(batch)
        for key in SEGMENT_KEYS:
            np.testing.assert_allclose(s[key], ref[key], rtol=1e-6, err_msg=key)


def test_segment_stats_rejects_bad_input():
    with pytest.raises(ValueError, match="min_area"):
        segment_stats(blank(), min_area=0)
    with pytest.raises(ValueError, match="pixel_scale_arcsec"):
        segment_stats(blank(), pixel_scale_arcsec=-1.0)
    with pytest.raises(ValueError, match="shape"):
        segment_stats(np.zeros((H, W)))
    with pytest.raises(ValueError, match="single-channel"):
        segment_stats(np.zeros((1, 3, H, W)))
    bad = blank()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        segment_stats(bad)


def test_pixel_bin_stats_known_answer():
    img = np.zeros((1, 4, 4))
    img[0, :2] = 0.05  # 8 pixels in [0, 0.1)
    img[0, 2] = [0.1, 0.2, 0.2, 0.25]  # 4 pixels in [0.1, 0.3): left edge included
    img[0, 3] = 1.0  # 4 pixels in the closed last bin [0.6, 1]
    s = pixel_bin_stats(img)
    names = ["0-0.1", "0.1-0.3", "0.3-0.6", "0.6-1"]
    assert list(s) == [f"frac_{n}" for n in names] + [f"mean_{n}" for n in names]
    np.testing.assert_array_equal([s[f"frac_{n}"][0] for n in names], [0.5, 0.25, 0.0, 0.25])
    assert s["mean_0-0.1"][0] == pytest.approx(0.05, abs=1e-15)
    assert s["mean_0.1-0.3"][0] == pytest.approx(0.1875, abs=1e-15)
    assert math.isnan(s["mean_0.3-0.6"][0])
    assert s["mean_0.6-1"][0] == 1.0


def test_pixel_bin_fractions_sum_to_one():
    images = np.random.default_rng(0).random((5, 1, 16, 16))
    images[0, 0, 0, 0] = 1.0
    s = pixel_bin_stats(images, bins=(0.0, 0.25, 0.5, 1.0))
    total = sum(v for k, v in s.items() if k.startswith("frac_"))
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
    for lo, hi in ((0.0, 0.25), (0.25, 0.5), (0.5, 1.0)):
        mean = s[f"mean_{lo:g}-{hi:g}"]
        assert np.all((mean >= lo) & (mean <= hi))
    # Pixels outside [bins[0], bins[-1]] fall in no bin.
    images[:, :, 0, :] = -0.5
    s = pixel_bin_stats(images, bins=(0.0, 0.25, 0.5, 1.0))
    total = sum(v for k, v in s.items() if k.startswith("frac_"))
    np.testing.assert_allclose(total, 1.0 - 16 / 256, rtol=0, atol=1e-12)


def test_pixel_bin_stats_rejects_bad_bins():
    with pytest.raises(ValueError, match="strictly increasing"):
        pixel_bin_stats(blank(), bins=(0.0, 0.5, 0.5, 1.0))
    with pytest.raises(ValueError, match="at least two"):
        pixel_bin_stats(blank(), bins=(0.5,))
