"""Distances between 1-D samples and their noise floor, with hand-computed answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from radiodiff.evaluation.distances import (
    binned_relative_difference,
    cdf_distance,
    compare,
    ks_statistic,
    noise_floor,
    wasserstein1,
)

METRICS = ("wasserstein1", "ks", "cdf")


def sample(seed: int = 0, n: int = 500) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n)


def test_wasserstein1_identity_shift_and_nan():
    a = sample()
    assert wasserstein1(a, a.copy()) == 0.0
    assert wasserstein1(a, a + 0.37) == pytest.approx(0.37, abs=1e-12)
    with_nan = np.concatenate([a + 0.37, [np.nan, np.nan]])
    assert wasserstein1(torch.from_numpy(a), with_nan) == pytest.approx(0.37, abs=1e-12)
    assert math.isnan(wasserstein1(a, [np.nan]))


def test_ks_statistic():
    a = sample()
    stat, p = ks_statistic(a, a.copy())
    assert stat == 0.0 and p == pytest.approx(1.0)
    stat, p = ks_statistic(a, a + 10.0)  # disjoint supports
    assert stat == 1.0 and p < 1e-10
    assert all(math.isnan(v) for v in ks_statistic([], a))


def test_binned_relative_difference_hand_computed():
    bins = [0.0, 1.0, 2.0, 3.0]
    a = [0.1, 0.2, 0.3, 0.4, 1.5, 7.0]  # counts [4, 1, 0]; 7.0 is outside the edges
    b = [0.5, 0.6, 1.1, 1.2, 1.3, 1.4, 2.1, 2.2, 3.0]  # counts [2, 4, 3]; 3.0 in last bin
    r = binned_relative_difference(a, b, bins, normalize=False)
    np.testing.assert_array_equal(r["edges"], bins)
    np.testing.assert_array_equal(r["counts_a"], [4, 1, 0])
    np.testing.assert_array_equal(r["counts_b"], [2, 4, 3])
    assert (r["n_a"], r["n_b"]) == (6, 9)
    # (2 - 4) / 4 and (4 - 1) / 1; sigma = sqrt(n_b / n_a^2 + n_b^2 / n_a^3).
    np.testing.assert_allclose(r["rel_diff"][:2], [-0.5, 3.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(r["rel_err"][:2], [math.sqrt(2 / 16 + 4 / 64), math.sqrt(20.0)],
                               rtol=1e-14)
    assert math.isnan(r["rel_diff"][2]) and math.isnan(r["rel_err"][2])  # empty a bin
    # Normalised: frequencies n / N with N_a = 6, N_b = 9, i.e. counts_b scaled by 6 / 9.
    rn = binned_relative_difference(a, b, bins)
    np.testing.assert_allclose(rn["rel_diff"][:2], [2 / 3 * 0.5 - 1, 2 / 3 * 4 - 1], rtol=1e-14)
    np.testing.assert_allclose(rn["rel_err"][:2], 2 / 3 * r["rel_err"][:2], rtol=1e-14)


def test_binned_relative_difference_empty_b_bin_and_int_bins():
    r = binned_relative_difference([0.2, 0.3, 1.5], [0.2, 0.3, 0.4], [0.0, 1.0, 2.0])
    assert r["rel_diff"][1] == -1.0 and r["rel_err"][1] == 0.0
    r = binned_relative_difference([0.0, 1.0], [2.0, 4.0], 4)  # pooled range [0, 4]
    np.testing.assert_array_equal(r["edges"], [0.0, 1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        binned_relative_difference([0.0], [1.0], [1.0, 0.0])


def test_cdf_distance_hand_computed():
    a = sample()
    assert cdf_distance(a, a[::-1].copy(), 20) == 0.0
    edges = np.arange(11.0)  # 0, 1, ..., 10
    lo, hi = [0.2, 0.5, 0.9], [5.1, 5.5]
    # F_lo = 1 and F_hi = 0 at edges 1, 2, 3, 4, 5; both 0 at edge 0, both 1 from 6 on.
    assert cdf_distance(lo, hi, edges) == 5.0
    assert cdf_distance(hi, lo, edges) == 5.0
    # F_a = [1/4, 1/2, 3/4, 1, 1], F_b = [0, 1/4, 1/2, 3/4, 1] at edges 0..4.
    assert cdf_distance([0, 1, 2, 3], [1, 2, 3, 4], [0, 1, 2, 3, 4]) == pytest.approx(1.0)
    assert math.isnan(cdf_distance([np.nan], a, edges))


def test_noise_floor_reproducible_and_disjoint():
    real = np.arange(100.0)
    seen = []

    def overlap(x, y):
        seen.append((x.copy(), y.copy()))
        return float(np.intersect1d(x, y).size)

    nf = noise_floor(real, overlap, n=50, n_repeats=4, seed=3)
    assert nf == {"mean": 0.0, "std": 0.0, "values": [0.0] * 4}
    assert len(seen) == 4
    for x, y in seen:
        assert x.size == y.size == 50
        np.testing.assert_array_equal(np.sort(np.concatenate([x, y])), real)
    assert not np.array_equal(seen[0][0], seen[1][0])  # new subsets each repeat

    data = sample(1, 300)
    a = noise_floor(data, wasserstein1, n=100, seed=7)
    b = noise_floor(torch.from_numpy(data), wasserstein1, n=100, seed=7)
    c = noise_floor(data, wasserstein1, n=100, seed=8)
    assert a == b
    assert a["values"] != c["values"]
    assert a["mean"] > 0 and a["std"] > 0
    assert a["mean"] == pytest.approx(np.mean(a["values"]))
    assert a["std"] == pytest.approx(np.std(a["values"]))


def test_noise_floor_errors():
    with pytest.raises(ValueError, match="2 n <= len"):
        noise_floor(np.arange(9.0), wasserstein1, n=5)
    with pytest.raises(ValueError, match="n must be"):
        noise_floor(np.arange(9.0), wasserstein1, n=0)
    with pytest.raises(ValueError, match="n_repeats"):
        noise_floor(np.arange(9.0), wasserstein1, n=2, n_repeats=0)


def _ratios(result: dict) -> np.ndarray:
    return np.array([result[k][m]["ratio"] for k in result for m in METRICS], dtype=float)


def test_compare_same_distribution_near_one_and_shift_much_larger():
    rng = np.random.default_rng(0)
    pool = {
        "normal": rng.normal(size=1500),
        "exponential": rng.exponential(size=1500),
        "uniform": rng.random(1500),
        "count": rng.integers(0, 6, size=1500).astype(float),
    }
    real = {k: v[:1000] for k, v in pool.items()}
    fake = {k: torch.from_numpy(v[1000:]) for k, v in pool.items()}
    fake["only_in_fake"] = np.zeros(3)
    same = compare(real, fake)
    json.dumps(same, allow_nan=False)  # strict-JSON serialisable
    assert list(same) == list(real)
    for key, entry in same.items():
        assert (entry["n_real"], entry["n_fake"], entry["n_floor"]) == (1000, 500, 500)
        assert set(entry) == {"n_real", "n_fake", "n_floor", *METRICS}
        for m in METRICS:
            assert {"distance", "floor_mean", "floor_std", "ratio"} <= set(entry[m])
            assert all(isinstance(v, (float, int)) for v in entry[m].values()), (key, m)
        assert entry["ks"]["pvalue"] > 1e-3
    ratios = _ratios(same)
    # The full real sample makes the distance's own noise smaller than the floor's: the
    # expected ratio is ~0.9 here, and single draws scatter by a factor ~2.
    assert 0.5 < ratios.mean() < 1.5 and ratios.max() < 3.0

    shifted = compare(real, {k: v + 2.0 * np.std(pool[k]) for k, v in real.items()})
    assert _ratios(shifted).min() > 10.0


def test_a_pooled_statistic_draws_its_subsets_by_image():
    """Pixels of images whose level scatters from image to image (as sources do): drawn by
    image, a fake set from the same process sits at its floor; the same pixels pooled and
    drawn pixel by pixel give a floor without that scatter, and the ratio of a perfect
    generator far above 1 (the bug this guards against)."""
    def images(rng, n, k=40):
        level = rng.normal(0.0, 1.0, (n, 1))
        v = level + rng.normal(0.0, 0.1, (n, k))
        v[:, k // 2:][rng.random((n, k - k // 2)) < 0.5] = np.nan  # ragged rows
        return v
    real, fake = images(np.random.default_rng(0), 200), images(np.random.default_rng(1), 100)
    by_image = compare({"p": real}, {"p": fake}, n_repeats=10)["p"]
    assert (by_image["n_real"], by_image["n_fake"], by_image["n_floor"]) == (200, 100, 100)
    assert by_image["wasserstein1"]["ratio"] < 2.0 and by_image["ks"]["ratio"] < 2.0
    flat = compare({"p": real[np.isfinite(real)]}, {"p": fake[np.isfinite(fake)]},
                   n_repeats=10)["p"]
    assert flat["wasserstein1"]["ratio"] > 3.0
    shifted = compare({"p": real}, {"p": fake + 1.0}, n_repeats=10)["p"]
    assert shifted["wasserstein1"]["ratio"] > 3.0
    assert compare({"p": real}, {"p": np.full((5, 40), np.nan)})["p"]["n_fake"] == 0
    json.dumps(by_image, allow_nan=False)


def test_compare_drops_nan_and_handles_empty():
    real = {"x": np.concatenate([sample(2, 200), [np.nan] * 10]), "y": sample(3, 200)}
    fake = {"x": np.concatenate([sample(4, 50), [np.nan] * 5]), "y": [np.nan, np.nan]}
    out = compare(real, fake, n_repeats=3)
    assert (out["x"]["n_real"], out["x"]["n_fake"], out["x"]["n_floor"]) == (200, 50, 50)
    assert out["x"]["wasserstein1"]["floor_mean"] > 0
    assert out["y"]["n_floor"] == 0
    for m in METRICS:
        assert out["y"][m]["distance"] is None and out["y"][m]["ratio"] is None
    json.dumps(out, allow_nan=False)
    # A constant real statistic has a single quantile edge; a floor of 0 gives ratio None.
    const = compare({"c": np.ones(20)}, {"c": np.r_[np.ones(5), 2.0 * np.ones(5)]})["c"]
    assert const["cdf"]["n_edges"] == 1 and const["cdf"]["distance"] == 0.5
    assert const["wasserstein1"]["distance"] == 0.5 and const["wasserstein1"]["floor_mean"] == 0
    assert const["wasserstein1"]["ratio"] is None
    # The CDF distance uses the distinct real quantiles as edges: at most cdf_bins + 1.
    assert out["x"]["cdf"]["n_edges"] == 21
    with pytest.raises(ValueError, match="cdf_bins"):
        compare(real, fake, cdf_bins=0)
