"""Accumulate per-image statistics over many batches (DDP-aware) and compare samples.

:class:`StatsCollector` is a :class:`torchmetrics.Metric` whose states are lists of (N,)
tensors reduced with ``"cat"``, so under DDP every rank ends up with the values of all
ranks. :func:`histogram_distance` compares two such 1-D samples, e.g. generated vs real
``elongation`` values.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from radiodiff.evaluation.moments import ALL_KEYS, all_stats

__all__ = ["StatsCollector", "histogram_distance"]


def _state_name(key: str) -> str:
    # A suffix keeps state attributes clear of Metric/nn.Module attribute names.
    return f"{key}_values"


class StatsCollector(Metric):
    """Collects :func:`~radiodiff.evaluation.moments.all_stats` of every image seen.

    Parameters
    ----------
    threshold : float
        Active-pixel threshold [intensity on the [0, 1] scale, absolute]. Default 0.1.
    max_elongation : float
        Elongation cap (>= 1). Default 1e3.
    **kwargs
        Passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Notes
    -----
    ``compute()`` returns a dict mapping each key of ``ALL_KEYS`` to a 1-D float64 tensor
    holding one value per image seen since the last ``reset()``, in update order (and rank
    order under DDP); NaNs (e.g. shape stats of empty images) are kept. As for any
    torchmetrics metric, calling ``compute()`` before any ``update()`` warns.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, threshold: float = 0.1, max_elongation: float = 1e3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        if not (math.isfinite(max_elongation) and max_elongation >= 1):
            raise ValueError(
                f"max_elongation must be a finite number >= 1, got {max_elongation}")
        self.threshold = float(threshold)
        self.max_elongation = float(max_elongation)
        for key in ALL_KEYS:
            self.add_state(_state_name(key), default=[], dist_reduce_fx="cat")

    def update(self, images: Tensor) -> None:
        """Add the statistics of a batch (N, 1, H, W) or (N, H, W) of images."""
        stats = all_stats(images, threshold=self.threshold,
                          max_elongation=self.max_elongation)
        for key in ALL_KEYS:
            getattr(self, _state_name(key)).append(stats[key])

    def _wrap_compute(self, compute: Callable) -> Callable:
        # torchmetrics squeezes every one-element tensor of compute()'s output to 0-D; undo
        # that so each value is always 1-D, even after a single image. (Overriding here, not
        # in __init__, keeps it across pickling: __setstate__ re-wraps via this method.)
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def one_dimensional(*args: Any, **kwargs: Any) -> dict[str, Tensor]:
            return {k: v.reshape(-1) for k, v in wrapped(*args, **kwargs).items()}

        return one_dimensional

    def compute(self) -> dict[str, Tensor]:
        """All collected values: key -> 1-D float64 tensor (NaNs kept)."""
        out = {}
        for key in ALL_KEYS:
            state = getattr(self, _state_name(key))
            if isinstance(state, list) and not state:
                out[key] = torch.empty(0, dtype=torch.float64, device=self.device)
            else:
                out[key] = dim_zero_cat(state).to(torch.float64)
        return out


def _finite_1d(x: Any, name: str) -> np.ndarray:
    """A 1-D float64 numpy array of the finite values of ``x`` (tensor or array-like)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr[np.isfinite(arr)]


def histogram_distance(a: Any, b: Any) -> float:
    """Wasserstein-1 (earth mover's) distance between two 1-D samples.

    Exact distance between the empirical distributions, ``integral |F_a(t) - F_b(t)| dt``
    (``scipy.stats.wasserstein_distance``); no binning. Non-finite values (NaN, e.g. shape
    stats of empty images, and +-inf) are dropped first.

    Parameters
    ----------
    a, b : torch.Tensor or array-like
        1-D samples of the same quantity; they may differ in length.

    Returns
    -------
    float
        The distance, in the units of the quantity itself (pixels for ``size``, degrees
        for ``orientation``, intensity for ``mean`` ...). NaN if either sample has no
        finite value.
    """
    a_ = _finite_1d(a, "a")
    b_ = _finite_1d(b, "b")
    if a_.size == 0 or b_.size == 0:
        return math.nan
    return float(wasserstein_distance(a_, b_))
