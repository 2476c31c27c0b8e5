"""Checked inputs of the classifier-based tests: images, features and class labels.

The one rule per kind of input of :mod:`radiodiff.evaluation.classifier`,
:mod:`radiodiff.evaluation.two_sample`, :mod:`radiodiff.evaluation.feature_distances` and
:mod:`radiodiff.evaluation.memorisation`:

* images: numpy arrays or torch tensors of shape (N, 1, H, W) or (N, H, W), real-valued,
  finite, N >= 1; returned as a float32 (N, 1, H, W) CPU tensor (intensities unchanged);
* features: (N, D) arrays, N, D >= 1, real-valued, finite; returned as float64 numpy;
* class labels: integers in [0, num_classes); returned as an int64 (N,) tensor.

Every check raises ``TypeError`` or ``ValueError`` naming the input.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ArrayLike", "as_images", "as_features", "as_labels", "check_num_classes",
    "check_positive_int",
]

ArrayLike = np.ndarray | Tensor


def as_images(images: ArrayLike, name: str = "images") -> Tensor:
    """Validate images and return them as a float32 (N, 1, H, W) CPU tensor."""
    if isinstance(images, np.ndarray):
        if not (np.issubdtype(images.dtype, np.floating)
                or np.issubdtype(images.dtype, np.integer)
                or images.dtype == np.bool_):
            raise TypeError(f"{name} must be a real-valued array, got dtype {images.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, Tensor):
        if images.is_complex():
            raise TypeError(f"{name} must be real-valued")
        x = images.detach().cpu()
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, "
                        f"got {type(images).__name__}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), "
                         f"got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 images)")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has empty images of shape {tuple(x.shape[2:])}")
    x = x.to(torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite pixel values")
    return x


def as_features(features: ArrayLike, name: str) -> np.ndarray:
    """Validate features and return them as a float64 (N, D) array."""
    if isinstance(features, Tensor):
        features = features.detach().cpu().numpy()
    if not isinstance(features, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, "
                        f"got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {features.shape}")
    if features.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if features.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature dimensions")
    if np.iscomplexobj(features):
        raise TypeError(f"{name} must be real-valued")
    f = features.astype(np.float64)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return f


def as_labels(labels: ArrayLike, n: int, num_classes: int, name: str = "labels") -> Tensor:
    """Validate integer class labels in [0, num_classes) and return an int64 (N,) tensor."""
    if isinstance(labels, Tensor):
        y = labels.detach().cpu()
    else:
        y = torch.as_tensor(np.asarray(labels))
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but there are {n} images")
    if y.is_floating_point():
        if not torch.isfinite(y).all() or (y != y.round()).any():
            raise ValueError(f"{name} must be integers")
    elif y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name} must be integers, got dtype {y.dtype}")
    y = y.to(torch.int64)
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values in "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y


def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless ``num_classes`` is an integer >= 2."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


def check_positive_int(value: int, name: str, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
