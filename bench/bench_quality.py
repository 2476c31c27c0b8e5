"""Sample quality against the number of network evaluations (NFE), on the FIRST test split.

    python bench/bench_quality.py --n 200                  # the built-in model
    python bench/bench_quality.py --model run/last.ckpt --configs heun:25 heun:12 dpmpp_2m:10
    python bench/bench_quality.py --configs dpmpp_2m:10:g=2 heun:25:smax=10 --no-real-row

A configuration is ``sampler:steps`` with optional ``:g=<guidance>`` (classifier-free
guidance; doubles the network evaluations), ``:smax=<sigma_max>`` and ``:churn=<S_churn>``.

For each sampler:steps, draws N images (test-split class proportions, one seed each) and
scores them with the evaluation suite: real-vs-fake accuracy, class fidelity, the Fréchet
distance on classifier features, and the Wasserstein-1 ratio to the real-vs-real noise floor
of every image statistic. A first row scores N real validation images the same way: what
"indistinguishable" gives at this sample size. Prints a Markdown table and one JSON line per
row, and with ``--out`` writes them (and the settings) as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from radiodiff.evaluation.evaluate import (EvalSettings, ImageSet, evaluate, generated_set,
                                reference_meta, reference_set, w1_ratios,
                                w1_summary)

NFE = {"heun": lambda n: 2 * n - 1, "euler": lambda n: n, "dpmpp_2m": lambda n: n,
       "stochastic": lambda n: 2 * n - 1}


def _parse_config(config: str) -> tuple[str, int, float, dict]:
    """``sampler:steps[:g=<guidance>][:smax=<sigma_max>][:churn=<S_churn>]``."""
    sampler, steps, *opts = config.split(":")
    names = {"g": "guidance", "smax": "sigma_max", "churn": "S_churn"}
    kw = {}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key not in names or not value:
            raise SystemExit(f"config {config!r}: options are g=, smax=, churn= (got {opt!r})")
        kw[names[key]] = float(value)
    return sampler, int(steps), kw.pop("guidance", 1.0), kw


def _num(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="first",
                    help="release folder, shipped model name or training checkpoint")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--n", type=int, default=200, help="generated images per configuration")
    ap.add_argument("--configs", nargs="+", default=["heun:25", "heun:12", "heun:6",
                                                     "dpmpp_2m:10", "dpmpp_2m:6"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sourcefinder", action="store_true", help="also run PyBDSF")
    ap.add_argument("--no-real-row", action="store_true", help="skip the real-vs-real row")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()

    real, ps = reference_set(args.reference, "test")
    train, _ = reference_set(args.reference, "train")
    val, _ = reference_set(args.reference, "valid")
    meta = reference_meta(ps)
    labels = np.sort(real.labels)[(np.arange(args.n) * len(real.labels)) // args.n]
    settings = EvalSettings(seed=args.seed, sourcefinder=args.sourcefinder)
    rows = []
    configs = ([] if args.no_real_row else ["real:0"]) + list(args.configs)
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            sampler, steps, guidance, kw = _parse_config(config)
            t0 = time.perf_counter()
            if sampler == "real":  # validation images in place of generated ones
                pick = np.random.default_rng(args.seed).permutation(len(val.labels))[:args.n]
                fake = ImageSet(val.images[pick], val.labels[pick], "real (valid)")
            else:
                fake = generated_set(args.model, labels, Path(tmp), sampler, steps, guidance,
                                     args.seed, 32, sampler_kw=kw)
            t_sample = time.perf_counter() - t0
            m = evaluate(real, fake, train, val, meta, settings)
            ratios = w1_ratios(m["distances"])
            w = w1_summary(ratios)  # a missing statistic counts as inf
            mem = (m.get("memorisation") or {}).get("pixel", {})
            rows.append({
                "sampler": sampler, "steps": steps, "guidance": guidance, **kw,
                # network evaluations per image (guidance != 1 evaluates twice)
                "nfe": (NFE[sampler](steps) * (1 if guidance == 1 else 2)
                        if sampler in NFE else 0),
                "n": len(fake.images), "sample_s": round(t_sample, 1),
                "real_vs_fake": m["real_vs_fake"]["mean_accuracy"],
                "real_vs_fake_std": m["real_vs_fake"]["std_accuracy"],
                "class_fidelity_ratio": m.get("class_fidelity", {}).get("fidelity_ratio"),
                "frechet": m.get("features", {}).get("frechet"),
                "frechet_floor": m.get("features", {}).get("frechet_floor"),
                "w1_ratio_median": w["median"],
                "w1_ratio_max": w["max"],  # may be inf
                "w1_ratio_worst": w["worst"][0],
                "w1_within_3x": w["within"],
                "n_stats": w["n"],
                "w1_ratios": {k: round(v, 3) for k, v in sorted(ratios.items())},
                # nearest training image (pixel L2): generated vs held-out test images
                "copy_fraction": mem.get("copy_fraction"),
                "nn_median_ratio": (mem["gen_median"] / mem["test_median"]
                                    if mem.get("test_median") else None),
            })
            print(json.dumps(rows[-1]), flush=True)  # inf -> Infinity
    print("| sampler | steps | NFE | real-vs-fake | class fidelity | Fréchet (floor) | "
          "W1/floor median | W1/floor ≤ 3 | W1/floor max (stat) | NN ratio (copies) | "
          "sampling s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = "".join(f" {k}={r[k]:g}" for k in ("guidance", "sigma_max", "S_churn")
                        if k in r and r[k] != (1.0 if k == "guidance" else None))
        print(f"| {r['sampler']}{extra} | {r['steps'] or '–'} | {r['nfe'] or '–'} | "
              f"{r['real_vs_fake']:.3f} ± {r['real_vs_fake_std']:.3f} | "
              f"{r['class_fidelity_ratio']:.3f} | {r['frechet']:.3g} ({r['frechet_floor']:.3g})"
              f" | {r['w1_ratio_median']:.2f} | {r['w1_within_3x']}/{r['n_stats']} | "
              f"{r['w1_ratio_max']:.2f} ({r['w1_ratio_worst']}) | "
              f"{_num(r['nn_median_ratio'], '.2f')} ({_num(r['copy_fraction'], '.3f')}) | "
              f"{r['sample_s']} |")
    if args.out:
        from radiodiff.io.artifacts import atomic_text
        from radiodiff.io.release import resolve_model
        from radiodiff.io.provenance import git_commit
        atomic_text(args.out, json.dumps({
            "model": str(resolve_model(args.model)), "reference": args.reference,
            "reference_sha256": meta.get("data_sha256"), "seed": args.seed,
            "git_commit": git_commit(), "settings": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
