"""Are the generated images useful? Train a class classifier on them, test it on real ones.

Train-synthetic-test-real (TSTR; ``radiodiff evaluate --tstr``): the
:class:`~radiodiff.evaluation.classifier.SmallCNN` of the class-fidelity test is trained
three ways with one protocol (the same epochs, seed and augmentation, no early stopping, so
no split is used both to choose and to score), and each is scored on the real reference
split:

* ``real``: on the real training split (the number to reach);
* ``synthetic``: on generated images only, one per training row with that row's class
  and conditions (:meth:`radiodiff.evaluation.sets.Compared.train_like`: the same size and
  class mix as the real training split);
* ``real+synthetic``: on both (augmentation, the use users want: the FIRST wGAN result
  0.790 -> 0.814 in the literature).

Targets of issue #28: synthetic >= 0.95 x real with every class's recall >= 0.9 x its
real recall, and real+synthetic >= real. Each accuracy and recall carries its binomial
standard error over the test images (``accuracy_se``, ``recall_se``): with ~50 test images
per class a recall is uncertain by ~0.07 from the test set's size alone, before the
classifier's own seed.

The ``real`` classifier depends only on the real training split and the protocol, so with a
``cache_dir`` it is trained once per training split and reused by every model scored against
it (a quarter of the group's time; keyed by a digest of the images, labels and settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from radiodiff.io.integrity import content_digest

__all__ = ["recalls", "binomial_se", "tstr", "real_arm_path"]

# Bump when how the arms are trained changes in code (the classifier's defaults are hashed
# on their own): cached real-arm classifiers of an older protocol are then not reused.
PROTOCOL_VERSION = 1


def recalls(confusion: list[list[int]]) -> list[Optional[float]]:
    """Per-class recall (rows = true class) of a confusion matrix; None for an empty row."""
    out = []
    for row in confusion:
        total = sum(row)
        out.append(None if total == 0 else row[len(out)] / total)
    return out


def binomial_se(p: Optional[float], n: int) -> Optional[float]:
    """Standard error sqrt(p (1 - p) / n) of a fraction ``p`` of ``n`` test images: the
    noise the test set's size alone puts on an accuracy or a recall (None if undefined)."""
    return None if p is None or n <= 0 else float(np.sqrt(p * (1.0 - p) / n))


def _score(model, test_images, test_labels, num_classes: int) -> dict[str, Any]:
    from radiodiff.evaluation.classifier import accuracy_and_confusion
    acc, conf = accuracy_and_confusion(model, test_images, test_labels, num_classes)
    rec = recalls(conf)
    return {"accuracy": acc, "recall": rec, "confusion": conf,
            "accuracy_se": binomial_se(acc, int(np.sum(conf))),
            "recall_se": [binomial_se(r, int(sum(row))) for r, row in zip(rec, conf)]}


def _ratios(entry: dict, base: dict) -> dict:
    acc = entry["accuracy"] / base["accuracy"] if base["accuracy"] else None
    rec = [None if (a is None or not b) else a / b
           for a, b in zip(entry["recall"], base["recall"])]
    return {"accuracy_ratio": acc, "recall_ratio": rec}


def real_arm_path(cache_dir: str | Path, train: tuple[np.ndarray, np.ndarray],
                  num_classes: int, epochs: int, seed: int) -> Path:
    """``tstr-real-<digest>.safetensors`` in ``cache_dir``: the digest covers the arms'
    protocol (this module's version, the classifier's defaults:
    :func:`~radiodiff.evaluation.classifier.protocol_digest`), the settings, and the
    training images and labels byte for byte."""
    from radiodiff.evaluation.classifier import protocol_digest
    digest = content_digest([PROTOCOL_VERSION, protocol_digest(), int(num_classes),
                             int(epochs), int(seed)],
                            np.asarray(train[0]), np.asarray(train[1], np.int64))
    return Path(cache_dir) / f"tstr-real-{digest[:24]}.safetensors"


def tstr(train: tuple[np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray],
         test: tuple[np.ndarray, np.ndarray], classes: list[str], epochs: int = 30,
         seed: int = 0, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Accuracy and per-class recall on ``test`` of classifiers trained on ``train``
    (real), ``synthetic`` and both, each ``(images, labels)``; synthetic rows with label
    < 0 are left out (with fewer than 2 per class only the real one is trained). Returns
    the three scores, with ``accuracy_ratio`` and ``recall_ratio`` (per class) of the two
    synthetic ones to the real one; ``real_cached`` says whether the real classifier was
    read from ``cache_dir`` (:func:`real_arm_path`) instead of trained."""
    from radiodiff.evaluation.classifier import cached_classifier, train_classifier
    k = len(classes)
    keep = np.asarray(synthetic[1]) >= 0
    xs, ys = synthetic[0][keep], np.asarray(synthetic[1])[keep]
    runs = {"real": train, "synthetic": (xs, ys),
            "real+synthetic": (np.concatenate([train[0], xs]),
                               np.concatenate([train[1], ys]))}
    out: dict[str, Any] = {"classes": list(classes), "n_synthetic": int(keep.sum()),
                           "n_real_train": int(len(train[0])), "n_test": int(len(test[0])),
                           "epochs": int(epochs)}
    per_class = np.bincount(ys, minlength=k)[:k]
    if per_class.min() < 2:
        runs = {"real": train}
        out["synthetic_skipped"] = (
            f"fewer than 2 synthetic images of class {classes[int(per_class.argmin())]!r}")
    for name, (x, y) in runs.items():
        def fit(x=x, y=y):
            return train_classifier(x, y, k, epochs=epochs, seed=seed)
        if name == "real":
            path = None if cache_dir is None else real_arm_path(cache_dir, train, k,
                                                                epochs, seed)
            model, out["real_cached"] = cached_classifier(path, k, fit)
        else:
            model = fit()
        out[name] = _score(model, *test, k)
    for name in set(runs) - {"real"}:
        out[name].update(_ratios(out[name], out["real"]))
    return out
