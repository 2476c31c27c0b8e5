"""The physical-units model (models/mirabest) judged on a MiraBest split, beside its floor.

    python bench/bench_mirabest.py --split valid                        # choosing settings
    python bench/bench_mirabest.py --split test --configs dpmpp_2m:10  # once, at the end
    python bench/bench_mirabest.py --model run/last.ckpt --configs heun:25 dpmpp_2m:10:guidance=1.5

A configuration is a sampler setting, ``solver:steps[:key=value ...]``
(:mod:`radiodiff.pipeline.settings`; solver options only). Each draws one image per real row of
the split with that row's class, peak flux and LAS (paired), and runs the full evaluation
(``radiodiff evaluate``: real-vs-fake plain and faint view, class classifier, image and
shape statistics, PyBDSF unless ``--no-sourcefinder``) plus the physical-units checks
(LAS and integrated flux against the real rows, background rms, histogram and beam-scale
autocorrelation). A first row compares another real split (train for ``valid``, valid for
``test``) with the same code: the real-vs-real floor. Prints the checks table and writes
every row (the report folders under ``--reports``, the numbers to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from radiodiff.evaluation.metrics import EvalSettings
from radiodiff.evaluation.quality import result_header, spec_arg
from radiodiff.evaluation.run import run_evaluation
from radiodiff.evaluation.sets import Compared, reference_set
from radiodiff.io.artifacts import atomic_text

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("real_vs_fake", "real_vs_fake_faint", "las_fraction_within_20pct",
          "las_median_abs_relative_error", "las_vs_catalogue_fraction_within_20pct",
          "flux_median_ratio", "flux_scatter_dex", "rms_ratio_deviation",
          "background_histogram_w1", "acf_beam_w1")


def _compared(config, model: str, n: int, seed: int, floor_split: str) -> Compared:
    if config == "real":
        return Compared(real_split=floor_split)
    return Compared(model=model, n=n, spec=config.spec, seed=seed)


def _summary(m: dict, config: str, seconds: float) -> dict:
    phys = m.get("physical") or {}
    checks = phys.get("checks") or {}
    return {"config": config, "n": m["sets"]["fake"]["n"], "seconds": round(seconds, 1),
            "real_vs_fake": m["real_vs_fake"]["mean_accuracy"],
            "real_vs_fake_faint": m["real_vs_fake_faint"]["mean_accuracy"],
            "class_fidelity_ratio": (m.get("class_fidelity") or {}).get("fidelity_ratio"),
            "checks": {k: checks[k] for k in CHECKS if k in checks},
            "physical_pass": phys.get("pass")}


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mirabest")
    p.add_argument("--reference", default=str(ROOT / "data" / "mirabest.h5"))
    p.add_argument("--split", default="valid", choices=["valid", "test"])
    p.add_argument("--configs", nargs="*", type=spec_arg, default=[spec_arg("dpmpp_2m:10")],
                   help="sampler settings, solver:steps[:key=value ...]")
    p.add_argument("--n", type=int, default=None, help="images (default: the split's rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-real-row", action="store_true")
    p.add_argument("--no-sourcefinder", action="store_true")
    p.add_argument("--reports", default=str(ROOT / "outputs" / "bench_mirabest"))
    p.add_argument("--out", default=None, help="JSON of all rows")
    p.add_argument("--cache-dir", default=str(ROOT / "outputs" / "eval_cache"),
                   help="class classifier and real statistics cache")
    a = p.parse_args(argv)
    floor_split = "train" if a.split == "valid" else "valid"
    settings = EvalSettings(seed=a.seed, sourcefinder=not a.no_sourcefinder,
                            cache_dir=a.cache_dir)
    rows = []
    n = a.n or len(reference_set(a.reference, a.split)[0].images)
    for config in ([] if a.no_real_row else ["real"]) + a.configs:
        t0 = time.perf_counter()
        out = Path(a.reports) / f"{a.split}-{str(config).replace(':', '_')}"
        result, _ = run_evaluation(a.reference, _compared(config, a.model, n, a.seed,
                                                          floor_split),
                                   out, a.split, settings, overwrite=True)
        rows.append(_summary(result.to_dict(), str(config), time.perf_counter() - t0))
        print(json.dumps(rows[-1]), flush=True)
    names = [k for k in CHECKS if any(k in r["checks"] for r in rows)]
    print("\n| metric | " + " | ".join(f"{r['config']} (floor)" for r in rows) + " | target |")
    print("|---|" + "---|" * (len(rows) + 1))
    for k in names:
        target = next((r["checks"][k]["target"] for r in rows if k in r["checks"]), None)
        cells = [f"{_fmt(r['checks'].get(k, {}).get('value'))} "
                 f"({_fmt(r['checks'].get(k, {}).get('floor'))})" for r in rows]
        print(f"| {k} | " + " | ".join(cells) + f" | {target or ''} |")
    if a.out:
        atomic_text(a.out, json.dumps({"model": Path(a.model).name,
                                       **result_header(a.reference, a.split, a.seed),
                                       "n": n, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
