"""Fréchet distance and precision/recall on Gaussian features with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radiodiff.evaluation.feature_distances import (
    frechet_distance,
    nn_distance,
    precision_recall,
)


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    assert abs(frechet_distance(a, a)) < 1e-6
    # A pure shift leaves the sample covariance identical: FD = |shift|^2 exactly.
    fds = []
    for length in (0.5, 1.0, 2.0, 4.0):
        shift = length * rng.normal(size=8) / np.sqrt(8)
        fd = frechet_distance(a, a + shift)
        np.testing.assert_allclose(fd, shift @ shift, rtol=1e-6, atol=1e-6)
        fds.append(fd)
    # Scaling by c: S_b = c^2 S_a, so the trace term is (1 - c)^2 Tr(S_a).
    c = 1.7
    expected = (1 - c) ** 2 * np.trace(np.cov(a, rowvar=False)) + (c - 1) ** 2 * (
        a.mean(0) @ a.mean(0))
    np.testing.assert_allclose(frechet_distance(a, c * a), expected, rtol=1e-6)
    # Independent samples of the same Gaussian: small compared with a unit shift.
    b = rng.normal(size=(500, 8))
    assert frechet_distance(b, rng.normal(size=(500, 8))) < 0.2
    assert frechet_distance(b, rng.normal(size=(500, 8)) + 1.0) > 7.0


def test_frechet_distance_singular_covariance():
    # Fewer samples than dimensions: singular covariances, must still be finite, >= 0,
    # and emit no warning (pytest turns warnings into errors).
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20))
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    assert frechet_distance(torch.from_numpy(a), a) < 1e-4


def test_precision_recall():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    pr = precision_recall(real, fake, k=3)
    assert pr["precision"] > 0.85 and pr["recall"] > 0.85
    pr = precision_recall(real, fake + 50.0)
    assert pr == {"precision": 0.0, "recall": 0.0}
    # Mode collapse: fakes all near one real point -> high precision, low recall.
    collapsed = real[:1] + 0.01 * rng.normal(size=(400, 4))
    pr = precision_recall(real, collapsed)
    assert pr["precision"] > 0.9 and pr["recall"] < 0.1


def test_nn_distance_matches_brute_force():
    # More queries than one distance block (1024 rows), so the blocks are joined.
    rng = np.random.default_rng(2)
    query, ref = rng.normal(size=(1100, 3)), rng.normal(size=(50, 3))
    brute = np.sqrt(((query[:, None] - ref[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nn_distance(query, ref), brute, rtol=1e-9, atol=1e-7)
    assert nn_distance(ref, ref).max() < 1e-7  # each point is its own nearest neighbour


def test_bad_inputs():
    f = np.zeros((10, 4))
    with pytest.raises(ValueError, match="empty"):
        frechet_distance(f[:0], f)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(f, np.zeros((10, 5)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(f[:1], f)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(f, np.full((10, 4), np.nan))
    with pytest.raises(ValueError, match="k=3 must be smaller"):
        precision_recall(f, f[:3], k=3)
