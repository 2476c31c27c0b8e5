"""Classifier-based metrics on synthetic 16x16 images and Gaussians with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radiodiff.evaluation.classifier import (
    SmallCNN,
    accuracy_and_confusion,
    embed,
    frechet_distance,
    memorisation,
    precision_recall,
    real_vs_fake,
    train_classifier,
)

S = 16  # image side in pixels


def synth(n: int, cls: int, seed: int, size: int = S) -> np.ndarray:
    """(n, 1, size, size) float32 images in [0, 1] with Gaussian noise (sigma 0.05).

    Classes are invariant under flips and 90-degree rotations (so augmentation keeps them):
    0 = bar (horizontal or vertical), 1 = double source (two compact lobes), 2 = single
    compact blob. Classes 3 and 4 are a horizontal and a vertical bar (not invariant).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        cx, cy = rng.uniform(5.5, size - 6.5, size=2)
        if cls in (0, 3, 4):
            vertical = rng.random() < 0.5 if cls == 0 else cls == 4
            u, v = (y - cy, x - cx) if vertical else (x - cx, y - cy)
            img = np.exp(-0.5 * ((u / 3.5) ** 4 + (v / 0.8) ** 2))
        elif cls == 1:
            t = rng.uniform(0, np.pi)
            dx, dy = 4.0 * np.cos(t), 4.0 * np.sin(t)
            img = sum(np.exp(-0.5 * ((x - cx - s * dx) ** 2 + (y - cy - s * dy) ** 2) / 1.0)
                      for s in (-1, 1))
        else:
            img = np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / rng.uniform(1.0, 2.0) ** 2)
        img = img + rng.normal(0.0, 0.05, size=img.shape)
        out[i, 0] = np.clip(img, 0.0, 1.0)
    return out


def dataset(n_per_class: int, seed: int, classes=(0, 1, 2)) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([synth(n_per_class, c, seed + 100 * c) for c in classes])
    y = np.repeat(np.arange(len(classes)), n_per_class)
    return x, y


@pytest.fixture(scope="module")
def trained():
    """A classifier trained on 3 x 80 synthetic images, with a separate test set."""
    x, y = dataset(80, seed=1)
    model = train_classifier(x, y, 3, epochs=12, seed=0)
    return model, dataset(40, seed=2)


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


def test_classifier_separates_synthetic_classes(trained):
    model, (x_test, y_test) = trained
    acc, conf = accuracy_and_confusion(model, x_test, y_test, 3)
    assert acc > 0.9
    assert np.asarray(conf).shape == (3, 3)
    assert sum(map(sum, conf)) == len(y_test)
    assert np.trace(np.asarray(conf)) == round(acc * len(y_test))
    # Rows are true classes: each row sums to that class's count.
    assert [sum(row) for row in conf] == [40, 40, 40]
    assert not model.training


def test_horizontal_vs_vertical_needs_no_augmentation():
    # Horizontal and vertical bars are related by a 90-degree rotation: learnable only
    # without rotation augmentation.
    x, y = dataset(40, seed=5, classes=(3, 4))
    x_t, y_t = dataset(20, seed=6, classes=(3, 4))
    model = train_classifier(torch.from_numpy(x), torch.from_numpy(y), 2, epochs=6,
                             augment=False)
    assert accuracy_and_confusion(model, x_t, y_t, 2)[0] > 0.9


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
    calls = []
    model = train_classifier(x, y, 3, epochs=20, batch_size=16, val=dataset(10, seed=4),
                             patience=2, progress=lambda e, info: calls.append((e, info)))
    assert len(calls) == len(model.history) <= 20
    assert {"loss", "train_accuracy", "val_accuracy"} <= set(calls[0][1])
    best = max(info["val_accuracy"] for _, info in calls)
    assert model.history[model.best_epoch]["val_accuracy"] == best
    if len(calls) < 20:  # stopped early: `patience` epochs after the best one
        assert len(calls) == model.best_epoch + 1 + 2


def test_real_vs_fake_same_and_different():
    same = synth(120, 0, seed=10)
    r = real_vs_fake(same[:60], same[60:], k=3, epochs=6)
    assert abs(r["mean_accuracy"] - 0.5) < 0.15
    assert len(r["fold_accuracies"]) == 3 and r["n_per_class"] == 60
    bars, blobs = synth(60, 0, seed=11), synth(90, 2, seed=12)
    r = real_vs_fake(bars, blobs, k=3, epochs=6)
    assert r["mean_accuracy"] > 0.9
    assert r["n_per_class"] == 60  # balanced by subsampling the larger set


# ------------------------------------------------------------------ feature distances

def test_embed(trained):
    model, (x_test, _) = trained
    f = embed(model, x_test)
    assert f.shape == (len(x_test), 128) and f.dtype == np.float64
    np.testing.assert_allclose(embed(model, x_test, batch_size=7), f, rtol=1e-4, atol=1e-5)


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


def test_memorisation_flags_copies(trained):
    model, _ = trained
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


# ------------------------------------------------------------------ bad inputs

def test_bad_inputs():
    x, y = dataset(4, seed=0)
    nan = x.copy()
    nan[0, 0, 3, 3] = np.nan
    f = np.zeros((10, 4))
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
    with pytest.raises(ValueError, match="differ in shape"):
        real_vs_fake(x, x[:, :, :, :8], k=2)
    with pytest.raises(ValueError, match="k=5 folds need at least k images"):
        real_vs_fake(x, x[:4], k=5)
    with pytest.raises(ValueError, match="empty"):
        embed(SmallCNN(3), x[:0])
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
    with pytest.raises(ValueError, match="differ in image shape"):
        memorisation(x, x[:, :, :8, :8], x)
    with pytest.raises(ValueError, match="all be images or all be"):
        memorisation(x, x.reshape(12, -1), x)
    with pytest.raises(ValueError, match="NaN"):
        memorisation(x, nan, x)
    with pytest.raises(ValueError, match="empty"):
        memorisation(x, x[:0], x)
