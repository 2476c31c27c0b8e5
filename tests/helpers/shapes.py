"""Toy images of known class for the classifier-based tests: 16x16 bars, doubles, blobs."""

from __future__ import annotations

import numpy as np

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
    """``n_per_class`` images of each shape class in ``classes`` and their labels: label i
    is ``classes[i]``."""
    x = np.concatenate([synth(n_per_class, c, seed + 100 * c) for c in classes])
    y = np.repeat(np.arange(len(classes)), n_per_class)
    return x, y
