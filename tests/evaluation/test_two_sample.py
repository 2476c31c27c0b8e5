"""The real-vs-fake classifier test on toy 16x16 images with known answers."""

from __future__ import annotations

import pytest

from helpers.shapes import dataset, synth

from radiodiff.evaluation.two_sample import real_vs_fake


def test_real_vs_fake_same_and_different():
    same = synth(120, 0, seed=10)
    r = real_vs_fake(same[:60], same[60:], k=3, epochs=6)
    assert abs(r["mean_accuracy"] - 0.5) < 0.15
    assert len(r["fold_accuracies"]) == 3 and r["n_per_class"] == 60
    bars, blobs = synth(60, 0, seed=11), synth(90, 2, seed=12)
    r = real_vs_fake(bars, blobs, k=3, epochs=6)
    assert r["mean_accuracy"] > 0.9
    assert r["n_per_class"] == 60  # balanced by subsampling the larger set


def test_bad_inputs():
    x, _ = dataset(4, seed=0)
    with pytest.raises(ValueError, match="differ in shape"):
        real_vs_fake(x, x[:, :, :, :8], k=2)
    with pytest.raises(ValueError, match="k=5 folds need at least k images"):
        real_vs_fake(x, x[:4], k=5)
