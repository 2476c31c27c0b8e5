"""Are the generated images useful? Train a class classifier on them, test it on real ones.

Train-synthetic-test-real (TSTR): the :class:`~radiodiff.evaluation.classifier.SmallCNN`
of the class-fidelity test is trained three ways with one protocol (same epochs, seed,
augmentation, and early stopping on the *real* validation split), and each is scored on
the real reference split:

* ``real``: on the real training split (the floor to reach; the class-fidelity
  classifier, cached);
* ``synthetic``: on the labelled generated images only;
* ``real+synthetic``: on both (augmentation: the use users want, e.g. the FIRST wGAN
  result 0.790 -> 0.814 in the literature).

Targets of issue #28: synthetic >= 0.95 x real with every class's recall >= 0.9 x its
real recall, and real+synthetic >= real.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["recalls", "tstr"]


def recalls(confusion: list[list[int]]) -> list[Optional[float]]:
    """Per-class recall (rows = true class) of a confusion matrix; None for an empty row."""
    out = []
    for row in confusion:
        total = sum(row)
        out.append(None if total == 0 else row[len(out)] / total)
    return out


def _score(model, test_images, test_labels, num_classes: int) -> dict[str, Any]:
    from radiodiff.evaluation.classifier import accuracy_and_confusion
    acc, conf = accuracy_and_confusion(model, test_images, test_labels, num_classes)
    return {"accuracy": acc, "recall": recalls(conf), "confusion": conf}


def tstr(real_model, train_images: np.ndarray, train_labels: np.ndarray,
         fake_images: np.ndarray, fake_labels: np.ndarray, val: tuple[np.ndarray, np.ndarray],
         test: tuple[np.ndarray, np.ndarray], classes: list[str], epochs: int = 30,
         seed: int = 0) -> dict[str, Any]:
    """Accuracy and per-class recall on ``test`` of classifiers trained on real,
    synthetic and real + synthetic images (see the module docstring).

    ``real_model`` is the classifier already trained on the real training split;
    ``fake_labels`` < 0 (unlabelled) rows are left out. Returns the three scores and the
    ratios to the real one (``accuracy_ratio``, ``recall_ratio`` per class).
    """
    from radiodiff.evaluation.classifier import train_classifier
    k = len(classes)
    keep = np.asarray(fake_labels) >= 0
    xf, yf = fake_images[keep], np.asarray(fake_labels)[keep]
    out: dict[str, Any] = {"classes": list(classes), "n_synthetic": int(keep.sum()),
                           "n_real_train": int(len(train_images)), "n_test": int(len(test[0]))}
    out["real"] = _score(real_model, *test, k)
    if keep.sum() < 2 * k:
        return out
    runs = {"synthetic": (xf, yf),
            "real+synthetic": (np.concatenate([train_images, xf]),
                               np.concatenate([train_labels, yf]))}
    for name, (x, y) in runs.items():
        model = train_classifier(x, y, k, epochs=epochs, seed=seed, val=val)
        out[name] = _score(model, *test, k)
    base = out["real"]
    for name in runs:
        entry = out[name]
        entry["accuracy_ratio"] = entry["accuracy"] / base["accuracy"] if base["accuracy"] \
            else None
        entry["recall_ratio"] = [None if (a is None or not b) else a / b
                                 for a, b in zip(entry["recall"], base["recall"])]
    return out
