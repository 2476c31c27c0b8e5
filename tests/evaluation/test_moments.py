"""Pixel/shape statistics, their collector and the W1 distance, on images with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radiodiff.evaluation import (
    ALL_KEYS,
    PIXEL_KEYS,
    SHAPE_KEYS,
    StatsCollector,
    all_stats,
    histogram_distance,
    pixel_stats,
    shape_stats,
)

H = W = 80
SHAPE_ONLY = tuple(k for k in SHAPE_KEYS if k != "total")


def gaussian_blob(cx: float, cy: float, sx: float, sy: float, angle_deg: float = 0.0,
                  h: int = H, w: int = W) -> torch.Tensor:
    """(H, W) float64 elliptical Gaussian, peak 1; sigma ``sx`` along the axis at
    ``angle_deg`` from +x towards +y, ``sy`` across it (x = column, y = row, 0-based)."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                          torch.arange(w, dtype=torch.float64), indexing="ij")
    t = math.radians(angle_deg)
    u = (x - cx) * math.cos(t) + (y - cy) * math.sin(t)
    v = -(x - cx) * math.sin(t) + (y - cy) * math.cos(t)
    return torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


def angle_diff(a: float, b: float) -> float:
    """Difference of two axis angles modulo 180 degrees, in [-90, 90)."""
    return (a - b + 90.0) % 180.0 - 90.0


@pytest.mark.parametrize("angle", [0.0, 30.0, -30.0, -60.0, 45.0, 75.0, 89.5, 90.0, -89.5])
def test_elliptical_gaussian_known_answers(angle):
    cx, cy, sx, sy = 30.0, 45.5, 5.0, 2.5
    img = gaussian_blob(cx, cy, sx, sy, angle)[None, None]  # (1, 1, H, W)
    s = shape_stats(img)
    assert abs(s["cx"].item() - cx) < 1e-3
    assert abs(s["cy"].item() - cy) < 1e-3
    theta = s["orientation"].item()
    assert -90.0 < theta <= 90.0
    assert abs(angle_diff(theta, angle)) < 0.5
    assert s["elongation"].item() == pytest.approx(sx / sy, rel=0.01)
    assert s["size"].item() == pytest.approx(math.hypot(sx, sy), rel=0.01)
    assert s["radius"].item() == pytest.approx(math.hypot(cx - 39.5, cy - 39.5), abs=1e-3)
    # Total intensity of a sampled unit-peak Gaussian is 2 pi sx sy.
    assert s["total"].item() == pytest.approx(2 * math.pi * sx * sy, rel=1e-3)


def test_orientation_exactly_90_is_positive():
    img = gaussian_blob(39.5, 39.5, 2.0, 5.0, 0.0)[None]  # major axis along y
    assert shape_stats(img)["orientation"].item() == pytest.approx(90.0, abs=1e-9)


def test_round_blob_has_unit_elongation_and_centred_blob_zero_radius():
    s = shape_stats(gaussian_blob(39.5, 39.5, 4.0, 4.0)[None])
    assert s["elongation"].item() == pytest.approx(1.0, abs=1e-6)
    assert s["radius"].item() < 1e-9
    assert s["size"].item() == pytest.approx(4.0 * math.sqrt(2.0), rel=0.01)


def test_translation_shifts_centroid_exactly():
    gen = torch.Generator().manual_seed(0)
    patch = torch.rand(12, 9, generator=gen, dtype=torch.float64)
    a = torch.zeros(H, W, dtype=torch.float64)
    b = torch.zeros(H, W, dtype=torch.float64)
    a[20:32, 25:34] = patch
    b[20 - 7:32 - 7, 25 + 5:34 + 5] = patch  # shift dx = +5, dy = -7
    s = shape_stats(torch.stack([a, b]))
    assert s["cx"][1] - s["cx"][0] == pytest.approx(5.0, abs=1e-9)
    assert s["cy"][1] - s["cy"][0] == pytest.approx(-7.0, abs=1e-9)
    for key in ("size", "orientation", "elongation", "total"):
        assert s[key][1].item() == pytest.approx(s[key][0].item(), abs=1e-9), key


def test_zero_image_gives_nan_shape_stats_without_error():
    batch = torch.stack([torch.zeros(H, W), gaussian_blob(30.0, 45.5, 3.0, 2.0).float()])
    s = all_stats(batch)
    for key in SHAPE_ONLY:
        assert torch.isnan(s[key][0]), key
        assert torch.isfinite(s[key][1]), key
    assert s["total"][0].item() == 0.0
    assert s["mean"][0].item() == 0.0 and s["max"][0].item() == 0.0
    assert s["active_fraction"][0].item() == 0.0


def test_negative_pixels_are_clipped_for_shape_only():
    img = gaussian_blob(30.0, 45.5, 4.0, 2.0, 20.0)
    noisy = img.clone()
    noisy[0:10, 60:80] = -0.05  # undershoot far from the source
    s_clean, s_noisy = shape_stats(img[None]), shape_stats(noisy[None])
    for key in SHAPE_KEYS:
        assert s_noisy[key].item() == pytest.approx(s_clean[key].item(), abs=1e-12), key
    assert pixel_stats(noisy[None])["mean"] < pixel_stats(img[None])["mean"]


def test_degenerate_shapes():
    point = torch.zeros(1, H, W)
    point[0, 10, 20] = 0.7
    s = shape_stats(point)
    assert (s["cx"].item(), s["cy"].item()) == (20.0, 10.0)
    assert s["size"].item() == 0.0 and s["elongation"].item() == 1.0
    assert s["orientation"].item() == 0.0
    line = torch.zeros(1, H, W)
    line[0, 40, 10:70] = 1.0  # one pixel wide: minor-axis variance is zero
    s = shape_stats(line, max_elongation=50.0)
    assert s["elongation"].item() == 50.0
    assert s["orientation"].item() == pytest.approx(0.0, abs=1e-9)


def test_pixel_stats_constant_image():
    img = torch.full((2, 1, H, W), 0.3, dtype=torch.float64)
    img[1] = 0.05
    p = pixel_stats(img)
    assert set(p) == set(PIXEL_KEYS)
    torch.testing.assert_close(p["mean"], torch.tensor([0.3, 0.05], dtype=torch.float64))
    torch.testing.assert_close(p["std"], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(p["max"], torch.tensor([0.3, 0.05], dtype=torch.float64))
    torch.testing.assert_close(p["active_fraction"],
                               torch.tensor([1.0, 0.0], dtype=torch.float64))
    # The threshold is absolute and strict.
    assert pixel_stats(img, threshold=0.3)["active_fraction"][0].item() == 0.0
    assert pixel_stats(img, threshold=0.01)["active_fraction"][1].item() == 1.0


def test_pixel_stats_known_values():
    img = torch.zeros(1, 4, 5, dtype=torch.float64)
    img[0, 0, :] = 1.0  # 5 of 20 pixels are 1
    p = pixel_stats(img)
    assert p["mean"].item() == pytest.approx(0.25)
    assert p["std"].item() == pytest.approx(math.sqrt(0.25 * 0.75))  # population std
    assert p["active_fraction"].item() == pytest.approx(0.25)


def test_batched_equals_per_image_and_layouts_agree():
    gen = torch.Generator().manual_seed(1)
    blobs = [gaussian_blob(30.0, 45.5, 5.0, 2.0, 30.0), gaussian_blob(50.0, 20.0, 3.0, 3.0),
             torch.zeros(H, W, dtype=torch.float64),
             gaussian_blob(40.0, 40.0, 8.0, 1.5, -70.0)]
    batch = torch.stack(blobs).float()
    batch = (batch + 0.05 * torch.rand(batch.shape, generator=gen)).clamp(0, 1)
    batch[2] = 0.0
    full = all_stats(batch[:, None])
    assert list(full) == list(ALL_KEYS)
    flat = all_stats(batch)
    for key in ALL_KEYS:
        assert full[key].shape == (4,) and full[key].dtype == torch.float64
        torch.testing.assert_close(flat[key], full[key], equal_nan=True)
        single = torch.cat([all_stats(batch[i:i + 1, None])[key] for i in range(4)])
        torch.testing.assert_close(single, full[key], rtol=1e-12, atol=1e-12,
                                   equal_nan=True)


def test_bad_shapes_and_arguments_raise():
    with pytest.raises(ValueError, match="single-channel"):
        all_stats(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\) or \(N, H, W\)"):
        all_stats(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="max_elongation"):
        shape_stats(torch.zeros(1, 8, 8), max_elongation=0.5)
    with pytest.raises(ValueError, match="threshold"):
        pixel_stats(torch.zeros(1, 8, 8), threshold=math.nan)


def test_collector_concatenates_and_resets():
    a = torch.stack([gaussian_blob(30.0, 45.5, 4.0, 2.0), torch.zeros(H, W)])[:, None].float()
    b = gaussian_blob(50.0, 30.0, 3.0, 3.0)[None, None].float()
    col = StatsCollector()
    col.update(a)
    col.update(b)
    out = col.compute()
    assert list(out) == list(ALL_KEYS)
    expected = all_stats(torch.cat([a, b]))
    for key in ALL_KEYS:
        assert out[key].shape == (3,) and out[key].dtype == torch.float64
        torch.testing.assert_close(out[key], expected[key], equal_nan=True)
    assert torch.isnan(out["size"][1])  # NaNs of the empty image are kept
    col.reset()
    col.update(b)
    out = col.compute()
    for key in ALL_KEYS:
        torch.testing.assert_close(out[key], all_stats(b)[key])


def test_wasserstein_distance():
    gen = np.random.default_rng(0)
    x = gen.normal(size=257)
    assert histogram_distance(x, x) == 0.0
    assert histogram_distance(x, x + 2.5) == pytest.approx(2.5, abs=1e-12)
    assert histogram_distance(torch.tensor(x), torch.tensor(x - 1.0)) == pytest.approx(1.0)
    assert histogram_distance([0.0, 1.0], [0.0, 0.0]) == pytest.approx(0.5)
    # NaNs are dropped; an all-NaN sample gives NaN rather than raising.
    with_nan = np.concatenate([x, [np.nan, np.nan]])
    assert histogram_distance(with_nan, x + 0.5) == pytest.approx(0.5, abs=1e-12)
    assert math.isnan(histogram_distance([np.nan], x))
    with pytest.raises(ValueError, match="1-D"):
        histogram_distance(np.zeros((2, 2)), x)


def test_collector_forward_and_copy_keep_one_value_per_image():
    import copy
    import pickle

    b = gaussian_blob(50.0, 30.0, 3.0, 3.0)[None, None].float()
    col = StatsCollector(threshold=0.2)
    batch_out = col(b)  # forward: stats of this batch only, also accumulated
    assert batch_out["size"].shape == (1,)
    col.update(b)
    for clone in (copy.deepcopy(col), pickle.loads(pickle.dumps(col))):
        out = clone.compute()
        assert out["elongation"].shape == (2,)
        torch.testing.assert_close(out["active_fraction"],
                                   pixel_stats(b, threshold=0.2)["active_fraction"].repeat(2))
