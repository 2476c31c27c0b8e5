"""Classifier two-sample test: can a small CNN tell generated images from real ones?

:func:`real_vs_fake` trains a fresh :class:`~radiodiff.evaluation.classifier.SmallCNN` per
cross-validation fold on real (label 0) and generated (label 1) images and reports the
held-out accuracy: 0.5 means indistinguishable, 1.0 that every generated image is
recognisable. Its real-vs-real floor is the same call with a second real set in place
of the generated one.

Images are (N, 1, H, W) or (N, H, W) on the [0, 1] model/display scale, as in
:mod:`radiodiff.evaluation.inputs`. Randomness comes from ``seed`` only (subsampling and
fold assignment through ``numpy.random.default_rng(seed)``, fold ``i`` trained with seed
``seed + i``: :func:`radiodiff.seeds.classifier_fold_seed`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from radiodiff.evaluation.classifier import accuracy_and_confusion, train_classifier
from radiodiff.evaluation.inputs import ArrayLike, as_images, check_positive_int
from radiodiff.seeds import classifier_fold_seed

__all__ = ["real_vs_fake"]


def real_vs_fake(real: ArrayLike, fake: ArrayLike, k: int = 5, epochs: int = 15,
                 seed: int = 0, batch_size: int = 64, **train_kwargs: Any) -> dict[str, Any]:
    """Two-sample classifier test: k-fold accuracy at telling real from generated images.

    The larger set is randomly subsampled to the size of the smaller one, both are split
    into ``k`` folds of (almost) equal size, and for each fold a fresh
    :class:`~radiodiff.evaluation.classifier.SmallCNN` is trained on the other folds
    (real = label 0, fake = label 1) and scored on it. An accuracy of 0.5 means the
    classifier cannot tell the sets apart; 1.0 means every generated image is recognisable.

    Parameters
    ----------
    real, fake : numpy.ndarray or torch.Tensor
        (N, 1, H, W) or (N, H, W) images on the [0, 1] scale, same (H, W).
    k : int
        Number of cross-validation folds (>= 2; at most the size of the smaller set).
    epochs : int
        Training epochs per fold. Default 15.
    seed : int
        Seeds the subsampling, fold assignment and every fold's training (fold ``i`` uses
        ``seed + i``).
    batch_size : int
        Training batch size. Default 64.
    **train_kwargs
        Passed to :func:`~radiodiff.evaluation.classifier.train_classifier` (e.g. ``lr``,
        ``augment``, ``widths``).

    Returns
    -------
    dict
        ``mean_accuracy`` and ``std_accuracy`` (population std over folds) of the held-out
        accuracies, ``fold_accuracies`` (list of k floats) and ``n_per_class`` (images per
        set after balancing).
    """
    x_real = as_images(real, "real images")
    x_fake = as_images(fake, "fake images")
    if x_real.shape[1:] != x_fake.shape[1:]:
        raise ValueError(f"real and fake images differ in shape: {tuple(x_real.shape[1:])} "
                         f"vs {tuple(x_fake.shape[1:])}")
    check_positive_int(k, "k", minimum=2)
    n = min(x_real.shape[0], x_fake.shape[0])
    if k > n:
        raise ValueError(f"k={k} folds need at least k images per set, but the smaller set "
                         f"has {n}")
    rng = np.random.default_rng(seed)
    real_idx = rng.permutation(x_real.shape[0])[:n]
    fake_idx = rng.permutation(x_fake.shape[0])[:n]
    x_real, x_fake = x_real[torch.from_numpy(real_idx)], x_fake[torch.from_numpy(fake_idx)]
    # Stratified folds: fold f holds the same positions of both (shuffled) sets.
    folds = np.array_split(np.arange(n), k)
    accs: list[float] = []
    for f, test_pos in enumerate(folds):
        train_pos = np.setdiff1d(np.arange(n), test_pos)
        tr, te = torch.from_numpy(train_pos), torch.from_numpy(test_pos)
        x_tr = torch.cat([x_real[tr], x_fake[tr]])
        y_tr = torch.cat([torch.zeros(len(tr), dtype=torch.int64),
                          torch.ones(len(tr), dtype=torch.int64)])
        x_te = torch.cat([x_real[te], x_fake[te]])
        y_te = torch.cat([torch.zeros(len(te), dtype=torch.int64),
                          torch.ones(len(te), dtype=torch.int64)])
        model = train_classifier(x_tr, y_tr, 2, epochs=epochs, batch_size=batch_size,
                                 seed=classifier_fold_seed(seed, f), **train_kwargs)
        acc, _ = accuracy_and_confusion(model, x_te, y_te, 2)
        accs.append(acc)
    return {"mean_accuracy": float(np.mean(accs)), "std_accuracy": float(np.std(accs)),
            "fold_accuracies": accs, "n_per_class": n}
