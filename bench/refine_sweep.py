"""Choose the faint-end refiner's setting on the validation split (issue 10).

    python bench/refine_sweep.py --refiner <stretch release> --sigmas 0.3 0.6 1.2 \
        --configs dpmpp_2m:7 --out bench/results/refine_valid.json

For every sigma, attaches ``--refiner`` (a release trained with ``schedule=stretch``, e.g.
``radiodiff export --ckpt <run>/last.ckpt --ema-halflife 5``) to ``--base`` (default: the
built-in model) in a temporary folder (:func:`radiodiff.pipeline.release.attach_refiner`,
``--steps`` refiner steps) and scores each base sampler setting with
:func:`radiodiff.evaluation.quality.score_settings` against the real ``--split`` images
(default valid: the test split is for the end), faint-pixel view included. ``--base-row``
adds the base alone (``refine=false``) for comparison; a first row scores real images the
same way, the real-vs-real floor of this session (``--no-real-row`` leaves it out). Prints
the table and writes the rows as JSON (``sigma``, ``refine_steps`` and ``refine_rho`` in
every refined row); ``--rho`` sets the curvature of the refiner's schedule (EDM Eq. 5).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from radiodiff.evaluation.quality import markdown_table, score_settings, setting_arg
from radiodiff.io.artifacts import atomic_text
from radiodiff.io.provenance import git_commit
from radiodiff.io.release_files import resolve_model
from radiodiff.pipeline.refine import RefineSpec
from radiodiff.pipeline.release import attach_refiner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="first", help="base release or shipped model name")
    ap.add_argument("--refiner", required=True, help="refiner release (schedule=stretch)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 0.6, 1.2])
    ap.add_argument("--steps", type=int, default=RefineSpec.steps, help="refiner steps")
    ap.add_argument("--rho", type=float, default=RefineSpec.rho,
                    help="refiner schedule curvature")
    ap.add_argument("--configs", nargs="+", type=setting_arg,
                    default=[setting_arg("dpmpp_2m:7")],
                    help="base sampler settings (radiodiff.pipeline.settings)")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base-row", action="store_true", help="also score the base alone")
    ap.add_argument("--no-real-row", action="store_true", help="skip the real-vs-real row")
    ap.add_argument("--out", default=None, help="JSON file for the rows")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, sigma in enumerate(args.sigmas):
            pair = attach_refiner(resolve_model(args.base), resolve_model(args.refiner),
                                  Path(tmp) / f"pair{k}", sigma=sigma, steps=args.steps,
                                  rho=args.rho)
            extra = ([c.with_options(refine=False) for c in args.configs]
                     if args.base_row and k == 0 else [])
            got = score_settings(str(pair), args.reference, args.split, args.n,
                                 extra + list(args.configs), args.seed,
                                 real_row=not args.no_real_row and k == 0)
            for row in got:
                if row.get("refine_nfe"):
                    row.update(sigma=sigma, refine_steps=args.steps, refine_rho=args.rho)
            rows += got
    print(markdown_table(rows))
    if args.out:
        atomic_text(args.out, json.dumps({
            "base": resolve_model(args.base).name, "refiner": resolve_model(args.refiner).name,
            "split": args.split, "n": args.n, "seed": args.seed, "git_commit": git_commit(),
            "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
