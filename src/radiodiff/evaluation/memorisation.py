"""Memorisation: are generated images copies of training images?

:func:`memorisation` compares each generated image's distance to its nearest training
image with the same distance for real held-out images, in pixel space and optionally in
the feature space of a trained :class:`~radiodiff.evaluation.classifier.SmallCNN`.
Inputs follow :mod:`radiodiff.evaluation.inputs` (images on the [0, 1] scale, or (N, D)
features).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from radiodiff.evaluation.classifier import SmallCNN, embed
from radiodiff.evaluation.feature_distances import nn_distance
from radiodiff.evaluation.inputs import ArrayLike, as_features, as_images

__all__ = ["memorisation"]


def _as_vectors(x: ArrayLike, name: str) -> tuple[np.ndarray, str, tuple[int, ...]]:
    """Images -> flattened float64 pixels (space "pixel"); (N, D) -> features ("feature").

    Also returns the per-sample shape, (1, H, W) or (D,)."""
    if isinstance(x, (np.ndarray, Tensor)) and x.ndim == 2:
        f = as_features(x, name)
        return f, "feature", (f.shape[1],)
    img = as_images(x, name)
    return img.flatten(1).to(torch.float64).numpy(), "pixel", tuple(img.shape[1:])


def _nn_summary(train: np.ndarray, gen: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    d_gen = nn_distance(gen, train)
    d_test = nn_distance(test, train)
    threshold = float(np.percentile(d_test, 1))
    return {
        "gen_median": float(np.median(d_gen)), "gen_p5": float(np.percentile(d_gen, 5)),
        "test_median": float(np.median(d_test)), "test_p5": float(np.percentile(d_test, 5)),
        "threshold": threshold, "copy_fraction": float(np.mean(d_gen < threshold)),
        "gen_distances": d_gen, "test_distances": d_test,
    }


def memorisation(train: ArrayLike, gen: ArrayLike, test: ArrayLike,
                 model: SmallCNN | None = None,
                 batch_size: int = 256) -> dict[str, dict[str, Any]]:
    """Nearest-neighbour distances to the training set, to detect copied training images.

    For every generated image the distance to its nearest training image is compared with
    the same distance for real held-out test images (which the model has not seen, so
    they show how close a genuinely new image typically comes to the training set).
    Generated images much closer than any test image are likely copies.

    Parameters
    ----------
    train, gen, test : numpy.ndarray or torch.Tensor
        Training, generated and held-out real images, (N, 1, H, W) or (N, H, W) on the
        [0, 1] scale with the same (H, W); compared by L2 distance of the flattened
        pixels. Alternatively all three may be (N, D) feature arrays.
    model : SmallCNN, optional
        If given (with image inputs), distances are also computed between
        ``embed(model, ...)`` features.
    batch_size : int
        Batch size for :func:`embed`. Default 256.

    Returns
    -------
    dict
        Keyed by space, ``"pixel"`` (image inputs) and/or ``"feature"`` (feature inputs or
        ``model`` given). Each value is a dict with ``gen_median``, ``gen_p5``,
        ``test_median``, ``test_p5`` (median and 5th percentile of the nearest-neighbour
        distances of generated and of test samples; pixel distances in [0, 1]-intensity
        units), ``threshold`` (1st percentile of the test distances), ``copy_fraction``
        (fraction of generated samples strictly closer to a training sample than
        ``threshold``; ~0.01 for a model that does not copy, ~1 for one that copies) and
        the raw ``gen_distances`` and ``test_distances`` arrays.
    """
    parts = [_as_vectors(x, name) for x, name in ((train, "train"), (gen, "gen"),
                                                   (test, "test"))]
    spaces = {space for _, space, _ in parts}
    if len(spaces) != 1:
        raise ValueError("train, gen and test must all be images or all be (N, D) features")
    space = spaces.pop()
    shapes = [shape for _, _, shape in parts]
    if len(set(shapes)) != 1:
        what = "image shape" if space == "pixel" else "feature dimension"
        raise ValueError(f"train, gen and test differ in {what}: {shapes}")
    tr, ge, te = (v for v, _, _ in parts)
    result: dict[str, dict[str, Any]] = {space: _nn_summary(tr, ge, te)}
    if model is not None:
        if space != "pixel":
            raise ValueError("model can only be used with image inputs, not features")
        feats = [embed(model, x, batch_size) for x in (train, gen, test)]
        result["feature"] = _nn_summary(*feats)
    return result
