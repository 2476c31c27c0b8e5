"""Where the faint view's worst statistic comes from: segmented components per image.

    python bench/faint_components.py [--model first] [--split valid] [--n 200] [--seed 0]

Draws ``--n`` images from ``--model`` with the real ``--split``'s class mix at ``--config``
(a sampler setting, default ``dpmpp_2m:7``; the release's refiner included, as
``bench/bench_quality.py`` does) and prints, for real and generated sets, the distribution
of ``seg_n_components`` (the segmentation statistic of
:func:`radiodiff.evaluation.metrics.image_statistics`) on the plain and the faint (x^0.25)
view, with its mean per class: too many or too few islands?
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from radiodiff.evaluation.faint import faint_view
from radiodiff.evaluation.metrics import image_statistics
from radiodiff.evaluation.quality import add_generation_args, draw_setting
from radiodiff.evaluation.sets import open_model, proportional_labels, reference_splits


def _summary(name: str, counts: np.ndarray, labels: np.ndarray, classes: list[str]) -> str:
    q = np.percentile(counts, [10, 50, 90])
    per = " ".join(f"{c} {counts[labels == k].mean():.2f}" for k, c in enumerate(classes)
                   if (labels == k).any())
    return (f"{name:<22} mean {counts.mean():5.2f}  p10/50/90 {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}"
            f"  one component {np.mean(counts == 1):5.1%}  by class: {per}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_args(ap)
    args = ap.parse_args()

    real, _, _, ps = reference_splits(args.reference, args.split)
    classes = list(ps.classes)
    labels = proportional_labels(real.labels, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        fake = draw_setting(*open_model(args.model, Path(tmp)), labels, args.config, args.seed)
    for view, f in (("plain", lambda x: x), ("faint x^0.25", faint_view)):
        print(f"-- {view} view: seg_n_components per image")
        for name, s in ((f"real {args.split}", real), ("generated", fake)):
            counts = np.asarray(image_statistics(f(s.images), None)["seg_n_components"])
            print(_summary(name, counts, np.asarray(s.labels), classes))


if __name__ == "__main__":
    main()
