"""The output projection's quantum floor against lower floors (issue 10, faint view).

    python bench/projection_floor.py --split valid --seed 0 --floors 0.00392156862745098 0.0005

Draws ``--n`` images from ``--model`` (``--config``, a sampler setting, its refiner
included, the real split's class mix) without the final projection, applies
:func:`radiodiff.data.projection.project_like_data` at each floor (halo and peak rule from the
release's final projection) and scores each set with the evaluation suite, as
``bench/bench_quality.py`` does; prints one row per floor with the faint-view (x^0.25)
segmented components per image, after a first row that scores ``--n`` other real images the
same way (the real-vs-real floor; train images when scoring valid). The data's noise islands
(:mod:`radiodiff.data.islands`) are left out: each row is the floor alone;
``bench_quality.py --configs dpmpp_2m:7:islands=false`` gives the release's own floor row.
Choose on ``--split valid``; the test split is touched once.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from radiodiff.data.projection import project_like_data, projection_dict
from radiodiff.evaluation.faint import faint_view
from radiodiff.evaluation.metrics import EvalSettings, evaluate, image_statistics
from radiodiff.evaluation.quality import (REAL_HEAD, add_generation_args, draw_setting,
                                          floor_images, quality_row, refine_nfe,
                                          setting_head)
from radiodiff.evaluation.sets import (ImageSet, open_model, proportional_labels,
                                       reference_meta, reference_splits)

_SHOWN = ("real_vs_fake", "real_vs_fake_std", "real_vs_fake_faint", "real_vs_fake_faint_std",
          "zero_real", "zero_fake", "faint_real", "faint_fake", "class_fidelity_ratio",
          "class_recall_ratio_min", "frechet", "frechet_floor", "w1_within_3x",
          "w1_ratio_max", "w1_ratio_worst", "faint_w1_within_3x", "faint_w1_ratio_max",
          "faint_w1_ratio_worst")


def final_projection(release, refine: bool = True) -> dict:
    """The projection a release applies to its output (its pipeline's final projection,
    refined or not: :meth:`radiodiff.pipeline.spec.PipelineSpec.for_call`), floors only."""
    pipe = release.pipeline.for_call(release.sampler, None if refine else False, islands=False)
    if pipe.projection is None:
        raise SystemExit(f"{release.path.name}: the release records no output projection")
    return projection_dict(pipe.projection)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_args(ap)
    ap.add_argument("--floors", type=float, nargs="+", required=True,
                    help="final projection floors, fractions of the peak")
    args = ap.parse_args()

    real, train, val, ps = reference_splits(args.reference, args.split)
    meta = reference_meta(ps)
    labels = proportional_labels(real.labels, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        release, kind = open_model(args.model, Path(tmp))
        # every floor row projects the same unprojected images
        raw = draw_setting(release, kind, labels, args.config, args.seed, project=False)
    refine = args.config.given.get("refine", True)
    projection = final_projection(release, refine)
    head = setting_head(args.config, refine_nfe(release, args.config))
    _print_row("real", floor_images(train, val, args.split, args.n, args.seed), real, train,
               meta, dict(REAL_HEAD), args.seed)
    for floor in args.floors:
        images = project_like_data(raw.images, **dict(projection, floor=floor))  # no islands
        _print_row(f"floor {floor:.4g}", ImageSet(images, raw.labels, f"floor {floor:g}"),
                   real, train, meta, head, args.seed)


def _print_row(name: str, fake: ImageSet, real: ImageSet, train: ImageSet, meta: dict,
               head: dict, seed: int) -> None:
    """One printed row: ``fake`` scored against ``real`` and its faint components."""
    counts = np.asarray(image_statistics(faint_view(fake.images), None)["seg_n_components"])
    m = evaluate(real, fake, train, meta, EvalSettings(seed=seed)).to_dict()
    row = quality_row(m, head, len(fake.images), 0.0)
    shown = {k: round(v, 3) if isinstance(v, float) else v
             for k, v in row.items() if k in _SHOWN}
    print(f"{name} faint components {counts.mean():.2f} {shown}", flush=True)


if __name__ == "__main__":
    main()
