"""Sample quality against the number of network evaluations (NFE), on the FIRST test split.

    python bench/bench_quality.py --model models/first --n 200
    python bench/bench_quality.py --model run/last.ckpt --configs heun:25 heun:12 dpmpp_2m:10

For each sampler:steps, draws N images (test-split class proportions, one seed each) and
scores them with the evaluation suite: real-vs-fake accuracy, class fidelity, the Fréchet
distance on classifier features, and the Wasserstein-1 ratio to the real-vs-real noise floor
of every image statistic. Prints a Markdown table and one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from radiodiff.evaluate import EvalSettings, evaluate, generated_set, reference_set

NFE = {"heun": lambda n: 2 * n - 1, "euler": lambda n: n, "dpmpp_2m": lambda n: n,
       "stochastic": lambda n: 2 * n - 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="release folder or training checkpoint")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--n", type=int, default=200, help="generated images per configuration")
    ap.add_argument("--configs", nargs="+", default=["heun:25", "heun:12", "heun:6",
                                                     "dpmpp_2m:10", "dpmpp_2m:6"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sourcefinder", action="store_true", help="also run PyBDSF")
    args = ap.parse_args()

    real, ps = reference_set(args.reference, "test")
    train, _ = reference_set(args.reference, "train")
    val, _ = reference_set(args.reference, "valid")
    meta = {"classes": ps.classes, "data_sha256": ps.attrs.get("data_sha256"),
            **ps.geometry()}
    labels = np.sort(real.labels)[(np.arange(args.n) * len(real.labels)) // args.n]
    settings = EvalSettings(seed=args.seed, sourcefinder=args.sourcefinder)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            sampler, steps = config.split(":")
            t0 = time.perf_counter()
            fake = generated_set(args.model, labels, Path(tmp), sampler, int(steps), 1.0,
                                 args.seed, 32)
            t_sample = time.perf_counter() - t0
            m = evaluate(real, fake, train, val, meta, settings)
            ratios = {k: e["wasserstein1"]["ratio"] for k, e in m["distances"].items()
                      if e["wasserstein1"]["ratio"] is not None}
            rows.append({
                "sampler": sampler, "steps": int(steps), "nfe": NFE[sampler](int(steps)),
                "n": args.n, "sample_s": round(t_sample, 1),
                "real_vs_fake": m["real_vs_fake"]["mean_accuracy"],
                "real_vs_fake_std": m["real_vs_fake"]["std_accuracy"],
                "class_fidelity_ratio": m.get("class_fidelity", {}).get("fidelity_ratio"),
                "frechet": m.get("features", {}).get("frechet"),
                "frechet_floor": m.get("features", {}).get("frechet_floor"),
                "w1_ratio_median": float(np.median(list(ratios.values()))),
                "w1_ratio_max": float(np.max(list(ratios.values()))),
                "w1_ratio_worst": max(ratios, key=ratios.get),
            })
    print("| sampler | steps | NFE | real-vs-fake | class fidelity | Fréchet (floor) | "
          "W1/floor median | W1/floor max (stat) | sampling s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['real_vs_fake']:.3f} ± "
              f"{r['real_vs_fake_std']:.3f} | {r['class_fidelity_ratio']:.3f} | "
              f"{r['frechet']:.3g} ({r['frechet_floor']:.3g}) | {r['w1_ratio_median']:.2f} | "
              f"{r['w1_ratio_max']:.2f} ({r['w1_ratio_worst']}) | {r['sample_s']} |")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
