"""The small CNN: shapes, training on toy 16x16 images, reproducibility, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.shapes import dataset

from radiodiff.evaluation.classifier import (
    SmallCNN,
    accuracy_and_confusion,
    embed,
    train_classifier,
)


# ------------------------------------------------------------------ classifier

@pytest.mark.parametrize("size", [16, 80])
def test_small_cnn_shapes(size):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4).eval()
    x = torch.rand(3, 1, size, size)
    assert model.features(x).shape == (3, 128)
    assert model(x).shape == (3, 4)


def test_small_cnn_rejects_too_small_images():
    with pytest.raises(ValueError, match="at least 16x16"):
        SmallCNN(num_classes=2)(torch.rand(2, 1, 8, 8))


def test_classifier_separates_synthetic_classes(trained_cnn):
    model, (x_test, y_test) = trained_cnn
    acc, conf = accuracy_and_confusion(model, x_test, y_test, 3)
    assert acc > 0.9
    assert np.asarray(conf).shape == (3, 3)
    assert sum(map(sum, conf)) == len(y_test)
    assert np.trace(np.asarray(conf)) == round(acc * len(y_test))
    # Rows are true classes: each row sums to that class's count.
    assert [sum(row) for row in conf] == [40, 40, 40]
    assert not model.training


def test_horizontal_vs_vertical_is_learnt_only_without_augmentation():
    # Horizontal and vertical bars are related by a 90-degree rotation: learnable only
    # without rotation augmentation (which makes the two classes one).
    x, y = dataset(40, seed=5, classes=(3, 4))
    x_t, y_t = dataset(20, seed=6, classes=(3, 4))
    acc = {aug: accuracy_and_confusion(train_classifier(
        torch.from_numpy(x), torch.from_numpy(y), 2, epochs=6, augment=aug), x_t, y_t, 2)[0]
        for aug in (False, True)}
    assert acc[False] > 0.9 and acc[True] < 0.75


def test_training_is_reproducible():
    x, y = dataset(20, seed=3)
    rng_state = torch.get_rng_state()
    a = train_classifier(x, y, 3, epochs=2, batch_size=16, seed=7)
    assert torch.equal(torch.get_rng_state(), rng_state)  # caller's RNG untouched
    b = train_classifier(x[:, 0], y.tolist(), 3, epochs=2, batch_size=16, seed=7)
    c = train_classifier(x, y, 3, epochs=2, batch_size=16, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[key], sb[key]) for key in sa)
    assert not all(torch.equal(sa[key], sc[key]) for key in sa)


def test_early_stopping_and_progress():
    x, y = dataset(20, seed=3)
    x_v, y_v = dataset(10, seed=4)
    y_v = np.random.default_rng(0).permutation(y_v)  # labels nothing can learn: an early best
    calls = []
    model = train_classifier(x, y, 3, epochs=20, batch_size=16, val=(x_v, y_v),
                             patience=2, progress=lambda e, info: calls.append((e, info)))
    assert len(calls) == len(model.history)
    assert {"loss", "train_accuracy", "val_accuracy"} <= set(calls[0][1])
    best = max(info["val_accuracy"] for _, info in calls)
    assert model.history[model.best_epoch]["val_accuracy"] == best
    # stopped early: `patience` epochs after the best one
    assert len(calls) < 20 and len(calls) == model.best_epoch + 1 + 2


# ------------------------------------------------------------------ features

def test_embed(trained_cnn):
    model, (x_test, _) = trained_cnn
    f = embed(model, x_test)
    assert f.shape == (len(x_test), 128) and f.dtype == np.float64
    np.testing.assert_allclose(embed(model, x_test, batch_size=7), f, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ bad inputs

def test_bad_inputs():
    x, y = dataset(4, seed=0)
    nan = x.copy()
    nan[0, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="empty"):
        train_classifier(x[:0], y[:0], 3)
    with pytest.raises(ValueError, match="NaN"):
        train_classifier(nan, y, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        train_classifier(x, y, 2)
    with pytest.raises(ValueError, match="labels has 12 entries but there are 11"):
        train_classifier(x[:11], y, 3)
    with pytest.raises(ValueError, match="shape"):
        train_classifier(x[:, :, None], y, 3)
    with pytest.raises(ValueError, match="val images have shape"):
        train_classifier(x, y, 3, val=(x[:, :, :8], y))
    with pytest.raises(ValueError, match="NaN"):
        accuracy_and_confusion(SmallCNN(3), nan, y, 3)
    with pytest.raises(ValueError, match="empty"):
        embed(SmallCNN(3), x[:0])
