"""Grids of 32 real and 32 generated images per class under x^0.25, beside a model card.

    python bench/class_grids.py --model mirabest --reference data/mirabest.h5 --split valid
    python bench/class_grids.py --model first --reference data/first.h5 --split valid

Real images: a seeded choice of the class's rows of ``--split`` (filled up from the training
split where the class has fewer rows). Generated: one image per shown real row, with that
row's class and, for a physical model, its peak flux and LAS, at the release's default
sampler unless ``--sampler`` (a sampler setting, e.g. ``dpmpp_2m:10:guidance=1.5``).
Writes ``<out>/grid_<class>.png`` (default: the release's folder, ``grids/``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from radiodiff.evaluation.grids import class_grid_figure
from radiodiff.evaluation.quality import spec_arg
from radiodiff.evaluation.sets import ImageSet, open_model, reference_set, released_set
from radiodiff.io.release_files import resolve_model


def pick(split: ImageSet, train: ImageSet, label: int, n: int, rng) -> ImageSet:
    rows = np.flatnonzero(split.labels == label)
    rows = rng.choice(rows, min(n, len(rows)), replace=False)
    extra = np.flatnonzero(train.labels == label)
    extra = rng.choice(extra, min(n - len(rows), len(extra)), replace=False)
    parts = [(split, rows), (train, extra)]
    images = np.concatenate([s.images[r] for s, r in parts])
    cond = {k: np.concatenate([s.conditions[k][r] for s, r in parts])
            for k in (split.conditions or {})}
    return ImageSet(images, np.full(len(images), label), "real", conditions=cond or None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="first")
    p.add_argument("--reference", default="data/first.h5")
    p.add_argument("--split", default="valid")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--sampler", type=spec_arg, default=None,
                   help="solver:steps[:key=value ...] (default: the release's setting)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    split, ps = reference_set(a.reference, a.split)
    train, _ = reference_set(a.reference, "train")
    out = Path(a.out or resolve_model(a.model) / "grids")
    release, kind = open_model(a.model, out)
    # the release's recommended setting, as its quoted numbers, unless given
    spec = a.sampler.spec if a.sampler else release.sampler
    rng = np.random.default_rng(a.seed)
    for label, name in enumerate(ps.classes):
        real = pick(split, train, label, a.n, rng)
        fake = released_set(release, kind, real.labels, spec, a.seed + 1000 * label,
                            conditions=real.conditions)
        path = class_grid_figure(out / f"grid_{name}.png", real.images, fake.images,
                                 f"{Path(str(a.model)).name} {name} ({spec.name} {spec.steps})")
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
