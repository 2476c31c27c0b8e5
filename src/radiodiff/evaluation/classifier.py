"""The domain classifier of the classifier-based tests: network, training loop, scores.

Inception weights are not available here, and Inception features of ImageNet photographs
are a poor description of radio sources anyway. Following radio-astronomy practice, the
Fréchet Inception Distance is replaced by a Fréchet distance on the penultimate features of
a small CNN trained to classify the real training split (a domain-specific embedding).

Contents
--------
* :class:`SmallCNN` and :func:`train_classifier`: the domain classifier and its
  (seeded, reproducible on CPU) training loop.
* :func:`accuracy_and_confusion`: its accuracy and confusion matrix on labelled images.
* :func:`embed`: its penultimate features, for
  :mod:`radiodiff.evaluation.feature_distances` and :mod:`radiodiff.evaluation.memorisation`.

The tests built on it live beside it: :mod:`radiodiff.evaluation.two_sample` (real vs
generated), :mod:`radiodiff.evaluation.feature_distances` (Fréchet distance, precision and
recall), :mod:`radiodiff.evaluation.memorisation` (copies of training images) and
:mod:`radiodiff.evaluation.usefulness` (train-synthetic-test-real).

Conventions
-----------
* Images are numpy arrays or torch tensors of shape (N, 1, H, W) or (N, H, W), intensities
  on the [0, 1] model/display scale (checked by :mod:`radiodiff.evaluation.inputs`); they
  are fed to the network as given (no normalisation inside the network). All images of
  one call share one (H, W).
* Randomness comes from ``seed`` only: initialisation and dropout run under a forked,
  seeded global torch RNG (the caller's RNG state is untouched); shuffling and
  augmentation use an explicit generator. On CPU with a fixed number of threads the same
  seed gives bit-identical weights.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radiodiff.evaluation.inputs import (
    ArrayLike, as_images, as_labels, check_num_classes, check_positive_int,
)
from radiodiff.seeds import seed_generator

__all__ = ["SmallCNN", "train_classifier", "cached_classifier", "protocol_digest",
           "accuracy_and_confusion", "embed"]

log = logging.getLogger(__name__)

# Training images used to recompute BatchNorm statistics after training (and before every
# validation): a forward pass over them costs about a tenth of an epoch of 1758 images.
_RECAL_IMAGES = 512


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


# --------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """Compact convolutional classifier of single-channel images.

    ``len(widths)`` blocks of 3x3 convolution, normalisation, ReLU and 2x2 max-pooling,
    then global average pooling (the embedding, :meth:`features`), dropout and a linear
    head (:meth:`forward`). With the default four blocks, an 80x80 image is reduced to
    5x5 and a 16x16 image to 1x1 before pooling; any H, W >= 2**len(widths) works.

    Parameters
    ----------
    num_classes : int
        Number of output classes (>= 2).
    in_channels : int
        Image channels; 1 for radio images.
    widths : sequence of int
        Output channels of the convolution blocks. The embedding dimension is
        ``widths[-1]``. Default (16, 32, 64, 128).
    dropout : float
        Dropout probability in [0, 1) applied to the embedding before the head.
    norm : {"batch", "group"}
        BatchNorm (default; faster training) or GroupNorm (batch-independent, for very
        small batches).
    """

    def __init__(self, num_classes: int, in_channels: int = 1,
                 widths: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.3,
                 norm: str = "batch") -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_positive_int(in_channels, "in_channels")
        widths = tuple(widths)
        if not widths:
            raise ValueError("widths must name at least one block")
        for w in widths:
            check_positive_int(w, "every entry of widths")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.widths = widths
        self.embed_dim = widths[-1]
        blocks: list[nn.Module] = []
        c_in = in_channels
        for c_out in widths:
            norm_layer = (nn.BatchNorm2d(c_out) if norm == "batch"
                          else nn.GroupNorm(min(8, c_out), c_out))
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm_layer,
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.body = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.embed_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate embedding.

        Parameters
        ----------
        x : torch.Tensor
            (N, C, H, W) images, intensities on the [0, 1] scale.

        Returns
        -------
        torch.Tensor
            (N, D) embedding, ``D = widths[-1]`` (after ReLU, so non-negative).
        """
        min_size = 2 ** len(self.widths)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W) input, "
                             f"got {tuple(x.shape)}")
        if min(x.shape[-2:]) < min_size:
            raise ValueError(f"images must be at least {min_size}x{min_size} for "
                             f"{len(self.widths)} pooling blocks, got {tuple(x.shape[-2:])}")
        h = self.body(x)  # (N, D, H / 2**B, W / 2**B)
        return h.mean(dim=(2, 3))  # (N, D): global average pooling

    def forward(self, x: Tensor) -> Tensor:
        """Class logits.

        Parameters
        ----------
        x : torch.Tensor
            (N, C, H, W) images, intensities on the [0, 1] scale.

        Returns
        -------
        torch.Tensor
            (N, num_classes) unnormalised logits.
        """
        return self.head(self.dropout(self.features(x)))  # (N, num_classes)


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random element of the dihedral group D4 per image: flips and 90-degree rotations.

    Radio sources have no preferred orientation on the sky, so these leave the class
    unchanged. Non-square images get only flips (rotations by 0 or 180 degrees).
    """
    # the one D4 rule of the training data; imported here: the DataModule pulls in Lightning
    from radiodiff.data.datamodule import dihedral

    n = x.shape[0]
    square = x.shape[-1] == x.shape[-2]
    # (N,) rotation count and flip flag; drawn for all images in one go so the random
    # stream does not depend on the grouping below.
    k = torch.randint(0, 4, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    if not square:
        k = (k // 2) * 2
    out = x.clone()
    for kk in range(4):
        for ff in (False, True):
            idx = ((k == kk) & (flip == ff)).nonzero().flatten()
            if idx.numel() == 0:
                continue
            out[idx] = dihedral(x[idx], kk, flip_x=ff)
    return out


@torch.no_grad()
def _predict(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """(N,) int64 predicted classes, model in eval mode."""
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        preds = [model(images[i:i + batch_size].to(device)).argmax(1).cpu()
                 for i in range(0, images.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(preds)


@torch.no_grad()
def _recalibrate_batchnorm(model: nn.Module, images: Tensor, batch_size: int) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``images``.

    The running statistics start at mean 0, variance 1 and follow an EMA with momentum 0.1,
    so after a few hundred steps or fewer they still remember the start (0.9**48 = 0.6 %
    of a unit variance can dwarf the true variance of the first layer) and lag the
    weights. One forward pass with cumulative averaging ("precise BN") removes both.
    """
    bn_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    bns = [m for m in model.modules() if isinstance(m, bn_types)]
    if not bns:
        return
    device = _model_device(model)
    was_training = model.training
    model.eval()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
        bn.train()
    try:
        for i in range(0, images.shape[0], batch_size):
            xb = images[i:i + batch_size]
            if xb.shape[0] >= 2:
                model(xb.to(device))
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.train(was_training)


def _training_inputs(images, labels, num_classes, val, batch_size, lr):
    """Checked (x, y, x_val, y_val) tensors; x_val and y_val are None without ``val``."""
    check_num_classes(num_classes)
    check_positive_int(batch_size, "batch_size", minimum=2)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr}")
    x = as_images(images, "images")
    y = as_labels(labels, x.shape[0], num_classes)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 training images, got {x.shape[0]}")
    if val is None:
        return x, y, None, None
    if not isinstance(val, (tuple, list)) or len(val) != 2:
        raise ValueError("val must be a pair (images, labels)")
    x_val = as_images(val[0], "val images")
    y_val = as_labels(val[1], x_val.shape[0], num_classes, "val labels")
    if x_val.shape[1:] != x.shape[1:]:
        raise ValueError(f"val images have shape {tuple(x_val.shape[1:])} but training "
                         f"images have {tuple(x.shape[1:])}")
    return x, y, x_val, y_val


def _train_epoch(model, opt, x, y, batch_size, augment, generator, device) -> dict[str, float]:
    """One shuffled pass (a last batch of one image is skipped: BatchNorm needs two)."""
    model.train()
    perm = torch.randperm(x.shape[0], generator=generator)
    loss_sum, correct, seen = 0.0, 0, 0
    for i in range(0, x.shape[0], batch_size):
        idx = perm[i:i + batch_size]
        if idx.numel() < 2:
            continue
        xb = _augment(x[idx], generator) if augment else x[idx]
        xb, yb = xb.to(device), y[idx].to(device)
        logits = model(xb)  # (B, num_classes)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * idx.numel()
        correct += int((logits.argmax(1) == yb).sum())
        seen += idx.numel()
    return {"loss": loss_sum / seen, "train_accuracy": correct / seen}


def train_classifier(images: ArrayLike, labels: ArrayLike, num_classes: int,
                     epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                     seed: int = 0, augment: bool = True,
                     val: tuple[ArrayLike, ArrayLike] | None = None, patience: int = 8,
                     weight_decay: float = 1e-4, device: str | torch.device = "cpu",
                     progress: Callable[[int, dict[str, float]], None] | None = None,
                     **model_kwargs: Any) -> SmallCNN:
    """Train a :class:`SmallCNN` on labelled images with AdamW and cross-entropy.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        (N, 1, H, W) or (N, H, W) training images on the [0, 1] scale.
    labels : array-like of int
        (N,) class indices in ``[0, num_classes)``.
    num_classes : int
        Number of classes (>= 2).
    epochs : int
        Maximum number of passes over the training images. Default 30.
    batch_size : int
        Images per optimiser step. Default 64. A final batch of a single image is dropped
        (BatchNorm needs at least two).
    lr : float
        AdamW learning rate (constant). Default 1e-3.
    seed : int
        Seeds initialisation, dropout, shuffling and augmentation. Same seed, same inputs,
        same threads on CPU: identical weights.
    augment : bool
        Apply a random flip and 90-degree rotation to every training image each epoch.
    val : tuple of (images, labels), optional
        Validation set. If given, the weights with the best validation accuracy are kept
        (ties: the earliest epoch) and training stops after ``patience`` epochs without
        improvement.
    patience : int
        Early-stopping patience in epochs (only with ``val``). Default 8.
    weight_decay : float
        Decoupled weight decay (AdamW). Default 1e-4.
    device : str or torch.device
        Device to train on. Default "cpu".
    progress : callable, optional
        Called after every epoch as ``progress(epoch, info)`` with ``info`` holding
        ``loss`` (mean training cross-entropy, nats), ``train_accuracy`` (on the
        augmented batches seen) and, with ``val``, ``val_accuracy``. Nothing is printed.
    **model_kwargs
        Passed to :class:`SmallCNN` (``widths``, ``dropout``, ``norm``).

    Returns
    -------
    SmallCNN
        Trained model in eval mode, on ``device``, with BatchNorm statistics recomputed
        over (up to 512 of) the unaugmented training images. Its ``history`` attribute is
        the list of per-epoch ``info`` dicts and ``best_epoch`` the epoch (0-based) whose
        weights were kept.
    """
    check_positive_int(epochs, "epochs")
    check_positive_int(patience, "patience")
    x, y, x_val, y_val = _training_inputs(images, labels, num_classes, val, batch_size, lr)
    device = torch.device(device)

    generator = seed_generator(seed)  # shuffling and augmentation
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # initialisation and dropout
        model = SmallCNN(num_classes, in_channels=x.shape[1], **model_kwargs).to(device)
        # Build-time validation of the image size, before any training.
        model.eval()
        with torch.no_grad():
            model.features(x[:1].to(device))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        history: list[dict[str, float]] = []
        best_acc, best_epoch, best_state, stale = -1.0, 0, None, 0
        n = x.shape[0]
        # BatchNorm statistics are re-estimated on a fixed random subset of at most
        # _RECAL_IMAGES training images (enough for per-channel means and variances).
        x_recal = x[torch.randperm(n, generator=generator)[:_RECAL_IMAGES]]
        for epoch in range(epochs):
            info = _train_epoch(model, opt, x, y, batch_size, augment, generator, device)
            if val is not None or epoch == epochs - 1:
                _recalibrate_batchnorm(model, x_recal, batch_size)
            if val is not None:
                acc = float((_predict(model, x_val, 256) == y_val).double().mean())
                info["val_accuracy"] = acc
                if acc > best_acc:
                    best_acc, best_epoch, stale = acc, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
            else:
                best_epoch = epoch
            history.append(info)
            if progress is not None:
                progress(epoch, info)
            if val is not None and stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    model.history = history
    model.best_epoch = best_epoch
    return model


def protocol_digest() -> str:
    """Digest of every default a trained classifier's weights depend on: those of
    :func:`train_classifier` and :class:`SmallCNN`, the BatchNorm recalibration count and the
    torch version. Part of every cache key (:func:`cached_classifier`), so a changed default
    retires the cached classifiers instead of mixing two protocols."""
    import hashlib
    import inspect
    import json

    def defaults(fn) -> dict:
        return {k: v.default for k, v in inspect.signature(fn).parameters.items()
                if v.default is not inspect.Parameter.empty
                and k not in ("val", "progress", "device")}
    protocol = {"train": defaults(train_classifier), "net": defaults(SmallCNN.__init__),
                "recal_images": _RECAL_IMAGES, "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(protocol, sort_keys=True, default=str).encode()
                          ).hexdigest()[:12]


def cached_classifier(path: str | Path | None, num_classes: int,
                      train: Callable[[], SmallCNN]) -> tuple[SmallCNN, bool]:
    """A default :class:`SmallCNN` trained once: read from ``path`` (safetensors) when it
    holds one, else ``train()``'s, written there atomically (``path`` None: no file).

    The caller's ``path`` must name everything the weights depend on beyond the protocol
    (data, labels, epochs, seed; :func:`protocol_digest` for the rest). A file that does not
    load (truncated, another architecture) is a cache, not data: it is named in a warning,
    retrained and replaced (:func:`radiodiff.io.artifacts.read_or_compute`). Returns the
    model in eval mode and whether it came from the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from radiodiff.io.artifacts import read_or_compute

    def read(file: Path) -> SmallCNN:
        model = SmallCNN(num_classes)
        model.load_state_dict(load_file(str(file)))
        return model

    def write(tmp: Path, model: SmallCNN) -> None:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    model, cached = read_or_compute(path, "classifier", read, train, write,
                                    errors=(SafetensorError,))
    return model.eval(), cached


def accuracy_and_confusion(model: nn.Module, images: ArrayLike, labels: ArrayLike,
                           num_classes: int, batch_size: int = 256,
                           ) -> tuple[float, list[list[int]]]:
    """Classification accuracy and confusion matrix.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning (N, num_classes) logits (e.g. a :class:`SmallCNN`); it is run
        in eval mode and its mode is restored afterwards.
    images : numpy.ndarray or torch.Tensor
        (N, 1, H, W) or (N, H, W) images on the [0, 1] scale.
    labels : array-like of int
        (N,) true classes in ``[0, num_classes)``.
    num_classes : int
        Number of classes (>= 2).
    batch_size : int
        Images per forward pass. Default 256.

    Returns
    -------
    accuracy : float
        Fraction of images classified correctly, in [0, 1].
    confusion : list of list of int
        ``num_classes x num_classes`` counts; ``confusion[i][j]`` is the number of images
        of true class ``i`` predicted as class ``j`` (rows = true class). Sums to N.
    """
    check_num_classes(num_classes)
    check_positive_int(batch_size, "batch_size")
    x = as_images(images)
    y = as_labels(labels, x.shape[0], num_classes)
    pred = _predict(model, x, batch_size)
    if pred.min() < 0 or pred.max() >= num_classes:
        raise ValueError(f"model predicts classes outside [0, {num_classes})")
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    conf.scatter_add_(0, y * num_classes + pred, torch.ones_like(y))
    accuracy = float((pred == y).double().mean())
    return accuracy, conf.view(num_classes, num_classes).tolist()


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------

@torch.no_grad()
def embed(model: SmallCNN, images: ArrayLike, batch_size: int = 256) -> np.ndarray:
    """Penultimate-layer features of images.

    Parameters
    ----------
    model : SmallCNN
        Trained classifier (any module with a ``features`` method); run in eval mode, its
        mode is restored afterwards.
    images : numpy.ndarray or torch.Tensor
        (N, 1, H, W) or (N, H, W) images on the [0, 1] scale.
    batch_size : int
        Images per forward pass. Default 256; the result does not depend on it.

    Returns
    -------
    numpy.ndarray
        (N, D) float64 features.
    """
    check_positive_int(batch_size, "batch_size")
    x = as_images(images)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        feats = [model.features(x[i:i + batch_size].to(device)).cpu()
                 for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(feats).to(torch.float64).numpy()
