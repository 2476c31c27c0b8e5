"""Sample quality against the number of network evaluations (NFE), on a FIRST split.

    python bench/bench_quality.py --n 200                  # the built-in model
    python bench/bench_quality.py --model run/last.ckpt --configs heun:25 heun:12 dpmpp_2m:10
    python bench/bench_quality.py --configs dpmpp_2m:10:guidance=2 heun:25:sigma_max=10 \
        --no-real-row

A configuration is a sampler setting (:mod:`radiodiff.pipeline.settings`):
``solver:steps`` then any of ``guidance=`` (classifier-free guidance; doubles the network
evaluations), ``sigma_min=``, ``sigma_max=``, ``rho=``, ``S_churn=``, and the switches
``project=false`` (skip the release's output projection, to score the network's own
images), ``refine=false`` (skip the release's faint-end refiner; the NFE column counts the
refiner's evaluations when it runs) and ``islands=false`` (leave the data's noise islands
out of the projection).

For each setting, draws N images (test-split class proportions, one seed each) and scores
them with :func:`radiodiff.evaluation.quality.score_settings`: real-vs-fake accuracy, class
fidelity, the Fréchet distance on classifier features, and the Wasserstein-1 ratio to the
real-vs-real noise floor of every image statistic, each also on the faint-pixel view
(x^0.25), with the fractions of exactly-zero and (0, 1 %]-of-peak pixels. A first row
scores N other real images the same way: what "indistinguishable" gives at this sample
size. It scores against the validation split, where settings are chosen; ``--split test`` is
for the end, once per release, on the chosen setting. Prints a Markdown table and one JSON
line per row, and with ``--out`` writes them (and the settings) as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from radiodiff.evaluation.quality import (markdown_table, result_header, score_settings,
                                          setting_arg)
from radiodiff.io.artifacts import atomic_text
from radiodiff.io.release_files import resolve_model

DEFAULT_CONFIGS = ["heun:25", "heun:12", "heun:6", "dpmpp_2m:10", "dpmpp_2m:6"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="first",
                    help="release folder, shipped model name or training checkpoint")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--split", default="valid", choices=("valid", "test"),
                    help="real images to score against: valid (choose settings here) or "
                         "test (once per release)")
    ap.add_argument("--n", type=int, default=200, help="generated images per configuration")
    ap.add_argument("--configs", nargs="+", type=setting_arg,
                    default=[setting_arg(c) for c in DEFAULT_CONFIGS])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sourcefinder", action="store_true", help="also run PyBDSF")
    ap.add_argument("--no-real-row", action="store_true", help="skip the real-vs-real row")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    rows = score_settings(args.model, args.reference, args.split, args.n, args.configs,
                          args.seed, not args.no_real_row, args.sourcefinder)
    print(markdown_table(rows))
    if args.out:
        settings = dict(vars(args), configs=[str(c) for c in args.configs])
        atomic_text(args.out, json.dumps({
            "model": resolve_model(args.model).name,
            **result_header(args.reference, args.split, args.seed),
            # no local paths in an artifact: file and folder names only
            "settings": {k: Path(v).name if k in ("model", "reference", "out") and v else v
                         for k, v in settings.items()},
            "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
