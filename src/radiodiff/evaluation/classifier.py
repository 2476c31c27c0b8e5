"""Classifier-based evaluation of generated radio-galaxy images against real ones.

Inception weights are not available here, and Inception features of ImageNet photographs
are a poor description of radio sources anyway. Following radio-astronomy practice, the
Fréchet Inception Distance is replaced by a Fréchet distance on the penultimate features of
a small CNN trained to classify the real training split (a domain-specific embedding).

Contents
--------
* :class:`SmallCNN` and :func:`train_classifier`: the domain classifier and its
  (seeded, reproducible on CPU) training loop; :func:`accuracy_and_confusion`.
* :func:`real_vs_fake`: k-fold accuracy of a classifier trained to tell real from
  generated images (a two-sample test; 0.5 means indistinguishable).
* :func:`embed`, :func:`frechet_distance`, :func:`precision_recall`: distances between
  feature distributions.
* :func:`memorisation`: nearest-neighbour distances to the training set, to detect copies.

Conventions
-----------
* Images are numpy arrays or torch tensors of shape (N, 1, H, W) or (N, H, W), intensities
  on the [0, 1] model/display scale; they are fed to the network as given (no
  normalisation inside the network). All images of one call share one (H, W).
* Features are (N, D) arrays, in the arbitrary units of the embedding.
* Randomness comes from ``seed`` only: initialisation and dropout run under a forked,
  seeded global torch RNG (the caller's RNG state is untouched); shuffling, augmentation
  and subsampling use explicit generators. On CPU with a fixed number of threads the same
  seed gives bit-identical weights.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radiodiff.diffusion.sampling import seed_generator

__all__ = [
    "SmallCNN", "train_classifier", "accuracy_and_confusion", "real_vs_fake", "embed",
    "frechet_distance", "precision_recall", "memorisation",
]

ArrayLike = np.ndarray | Tensor

# Pairwise distances are computed in row blocks of this many rows, so an (N, M) matrix is
# never held at once for large sets (memory ~ _CHUNK * M * 8 bytes).
_CHUNK = 1024
# Training images used to recompute BatchNorm statistics after training (and before every
# validation): a forward pass over them costs about a tenth of an epoch of 1758 images.
_RECAL_IMAGES = 512


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------

def _as_images(images: ArrayLike, name: str = "images") -> Tensor:
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


def _as_features(features: ArrayLike, name: str) -> np.ndarray:
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


def _as_labels(labels: ArrayLike, n: int, num_classes: int, name: str = "labels") -> Tensor:
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


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


def _check_positive_int(value: int, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _model_device(model: nn.Module) -> torch.device:
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
        _check_num_classes(num_classes)
        _check_positive_int(in_channels, "in_channels")
        widths = tuple(widths)
        if not widths:
            raise ValueError("widths must name at least one block")
        for w in widths:
            _check_positive_int(w, "every entry of widths")
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
    _check_num_classes(num_classes)
    _check_positive_int(batch_size, "batch_size", minimum=2)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr}")
    x = _as_images(images, "images")
    y = _as_labels(labels, x.shape[0], num_classes)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 training images, got {x.shape[0]}")
    if val is None:
        return x, y, None, None
    if not isinstance(val, (tuple, list)) or len(val) != 2:
        raise ValueError("val must be a pair (images, labels)")
    x_val = _as_images(val[0], "val images")
    y_val = _as_labels(val[1], x_val.shape[0], num_classes, "val labels")
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
    _check_positive_int(epochs, "epochs")
    _check_positive_int(patience, "patience")
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
    _check_num_classes(num_classes)
    _check_positive_int(batch_size, "batch_size")
    x = _as_images(images)
    y = _as_labels(labels, x.shape[0], num_classes)
    pred = _predict(model, x, batch_size)
    if pred.min() < 0 or pred.max() >= num_classes:
        raise ValueError(f"model predicts classes outside [0, {num_classes})")
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    conf.scatter_add_(0, y * num_classes + pred, torch.ones_like(y))
    accuracy = float((pred == y).double().mean())
    return accuracy, conf.view(num_classes, num_classes).tolist()


def real_vs_fake(real: ArrayLike, fake: ArrayLike, k: int = 5, epochs: int = 15,
                 seed: int = 0, batch_size: int = 64, **train_kwargs: Any) -> dict[str, Any]:
    """Two-sample classifier test: k-fold accuracy at telling real from generated images.

    The larger set is randomly subsampled to the size of the smaller one, both are split
    into ``k`` folds of (almost) equal size, and for each fold a fresh :class:`SmallCNN`
    is trained on the other folds (real = label 0, fake = label 1) and scored on it.
    An accuracy of 0.5 means the classifier cannot tell the sets apart; 1.0 means every
    generated image is recognisable.

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
        Passed to :func:`train_classifier` (e.g. ``lr``, ``augment``, ``widths``).

    Returns
    -------
    dict
        ``mean_accuracy`` and ``std_accuracy`` (population std over folds) of the held-out
        accuracies, ``fold_accuracies`` (list of k floats) and ``n_per_class`` (images per
        set after balancing).
    """
    x_real = _as_images(real, "real images")
    x_fake = _as_images(fake, "fake images")
    if x_real.shape[1:] != x_fake.shape[1:]:
        raise ValueError(f"real and fake images differ in shape: {tuple(x_real.shape[1:])} "
                         f"vs {tuple(x_fake.shape[1:])}")
    _check_positive_int(k, "k", minimum=2)
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
                                 seed=seed + f, **train_kwargs)
        acc, _ = accuracy_and_confusion(model, x_te, y_te, 2)
        accs.append(acc)
    return {"mean_accuracy": float(np.mean(accs)), "std_accuracy": float(np.std(accs)),
            "fold_accuracies": accs, "n_per_class": n}


# --------------------------------------------------------------------------------------
# Feature-space distances
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
    _check_positive_int(batch_size, "batch_size")
    x = _as_images(images)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        feats = [model.features(x[i:i + batch_size].to(device)).cpu()
                 for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(feats).to(torch.float64).numpy()


def frechet_distance(feat_a: ArrayLike, feat_b: ArrayLike, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017,
    eq. 6; Dowson & Landau 1982), with sample means and unbiased sample covariances. With
    classifier features this is the domain replacement of the FID.

    Numerical safeguards as in the reference FID code: if the matrix square root of
    ``S_a S_b`` is singular or not finite, ``eps * I`` is added to both covariances;
    imaginary parts from round-off are dropped (an error is raised if they are large).

    Parameters
    ----------
    feat_a, feat_b : numpy.ndarray or torch.Tensor
        (N_a, D) and (N_b, D) features, N >= 2 each.
    eps : float
        Diagonal offset used only when the product of covariances is singular.

    Returns
    -------
    float
        The distance, in squared feature units; >= 0 (clipped at 0 against round-off).
    """
    a = _as_features(feat_a, "feat_a")
    b = _as_features(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    for f, name in ((a, "feat_a"), (b, "feat_b")):
        if f.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 samples for a covariance, "
                             f"got {f.shape[0]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))  # (D, D)
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b

    def _sqrtm(m: np.ndarray) -> tuple[np.ndarray, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = scipy.linalg.sqrtm(m)
        singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
        return np.asarray(r), singular or not np.isfinite(r).all()

    covmean, bad = _sqrtm(s_a @ s_b)
    if bad:
        offset = eps * np.eye(s_a.shape[0])
        covmean, bad = _sqrtm((s_a + offset) @ (s_b + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("matrix square root of the covariance product is not finite "
                             "even after adding eps*I; try a larger eps")
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.trace(s_a) + np.trace(s_b)))
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag > 1e-3 * scale:
            raise ValueError(f"matrix square root has a large imaginary component "
                             f"({max_imag:.3g}); covariances are ill-conditioned")
        covmean = covmean.real
    fd = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean)
    return max(float(fd), 0.0)


def _sq_dist_blocks(a: np.ndarray, b: np.ndarray):
    """Yield (start, block) with block the (rows, N_b) squared L2 distances of a[start:]
    to b, float64, clipped at 0 (the expansion |a|^2 + |b|^2 - 2 a.b can go slightly
    negative through round-off)."""
    b2 = np.einsum("ij,ij->i", b, b)
    for s in range(0, a.shape[0], _CHUNK):
        blk = a[s:s + _CHUNK]
        d2 = np.einsum("ij,ij->i", blk, blk)[:, None] + b2[None, :] - 2.0 * blk @ b.T
        yield s, np.maximum(d2, 0.0)


def _kth_nn_radius(x: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance from each point to its k-th nearest neighbour in x, self excluded."""
    out = np.empty(x.shape[0])
    for s, d2 in _sq_dist_blocks(x, x):
        # The self-distance (0) is the smallest entry of each row, so the k-th neighbour
        # is the (k+1)-th smallest (index k); exact duplicates count as neighbours.
        out[s:s + d2.shape[0]] = np.partition(d2, k, axis=1)[:, k]
    return np.sqrt(out)


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of points inside at least one ball B(centre, radius)."""
    inside = np.zeros(points.shape[0], dtype=bool)
    r2 = radii ** 2
    for s, d2 in _sq_dist_blocks(points, centres):
        inside[s:s + d2.shape[0]] = (d2 <= r2[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real_feat: ArrayLike, fake_feat: ArrayLike,
                     k: int = 3) -> dict[str, float]:
    """Improved precision and recall of Kynkäänniemi et al. (2019, NeurIPS).

    Each set's manifold is the union of balls around its samples, each ball's radius being
    the distance to that sample's k-th nearest neighbour in the same set (Sect. 2 of the
    paper). Precision is the fraction of fake samples inside the real manifold (fidelity);
    recall is the fraction of real samples inside the fake manifold (diversity).

    Parameters
    ----------
    real_feat, fake_feat : numpy.ndarray or torch.Tensor
        (N_real, D) and (N_fake, D) features (e.g. from :func:`embed`), Euclidean metric.
    k : int
        Neighbourhood size; the paper uses 3. Must be smaller than both set sizes.

    Returns
    -------
    dict of str to float
        ``precision`` and ``recall``, each in [0, 1].
    """
    real = _as_features(real_feat, "real_feat")
    fake = _as_features(fake_feat, "fake_feat")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    _check_positive_int(k, "k")
    n_min = min(real.shape[0], fake.shape[0])
    if k >= n_min:
        raise ValueError(f"k={k} must be smaller than the number of samples in each set "
                         f"(real {real.shape[0]}, fake {fake.shape[0]})")
    r_real = _kth_nn_radius(real, k)
    r_fake = _kth_nn_radius(fake, k)
    return {"precision": _coverage(fake, real, r_real),
            "recall": _coverage(real, fake, r_fake)}


def _as_vectors(x: ArrayLike, name: str) -> tuple[np.ndarray, str, tuple[int, ...]]:
    """Images -> flattened float64 pixels (space "pixel"); (N, D) -> features ("feature").

    Also returns the per-sample shape, (1, H, W) or (D,)."""
    if isinstance(x, (np.ndarray, Tensor)) and x.ndim == 2:
        f = _as_features(x, name)
        return f, "feature", (f.shape[1],)
    img = _as_images(x, name)
    return img.flatten(1).to(torch.float64).numpy(), "pixel", tuple(img.shape[1:])


def _nn_distance(query: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N_query,) Euclidean distance from each query to its nearest neighbour in ref."""
    out = np.empty(query.shape[0])
    for s, d2 in _sq_dist_blocks(query, ref):
        out[s:s + d2.shape[0]] = d2.min(axis=1)
    return np.sqrt(out)


def _nn_summary(train: np.ndarray, gen: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    d_gen = _nn_distance(gen, train)
    d_test = _nn_distance(test, train)
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
