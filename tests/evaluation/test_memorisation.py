"""The memorisation check: copies of training images are flagged, fresh images are not."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.shapes import dataset, synth

from radiodiff.evaluation.memorisation import memorisation


def test_memorisation_flags_copies(trained_cnn):
    model, _ = trained_cnn
    train = synth(150, 2, seed=20)
    test, fresh = synth(100, 2, seed=21), synth(100, 2, seed=22)
    copies = train[:50] + 0.0
    m = memorisation(train, copies, test, model=model)
    assert set(m) == {"pixel", "feature"}
    for space in ("pixel", "feature"):
        assert m[space]["copy_fraction"] == 1.0
        assert m[space]["gen_median"] < 1e-4 < m[space]["test_p5"]
    m = memorisation(train, fresh, test)
    assert set(m) == {"pixel"}
    assert m["pixel"]["copy_fraction"] < 0.1
    assert abs(m["pixel"]["gen_median"] / m["pixel"]["test_median"] - 1) < 0.2
    # Feature inputs work directly.
    f = memorisation(train.reshape(150, -1), copies.reshape(50, -1), test.reshape(100, -1))
    assert set(f) == {"feature"} and f["feature"]["copy_fraction"] == 1.0


def test_bad_inputs():
    x, _ = dataset(4, seed=0)
    nan = x.copy()
    nan[0, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="differ in image shape"):
        memorisation(x, x[:, :, :8, :8], x)
    with pytest.raises(ValueError, match="all be images or all be"):
        memorisation(x, x.reshape(12, -1), x)
    with pytest.raises(ValueError, match="NaN"):
        memorisation(x, nan, x)
    with pytest.raises(ValueError, match="empty"):
        memorisation(x, x[:0], x)
