"""Capacity / receptive-field ablation of the physical-units model on MiraBest's valid split.

Issue #28 item 3. Each arm is a Hydra experiment (``conf/experiment/ablation_capacity_*``):
the same recipe (``conf/experiment/mirabest.yaml``) and the same number of images (equal
compute: the presets train at the same images/s on 2 CPU cores, ``bench/throughput.py``),
differing only in the model preset (``tests/test_config.py`` checks it):

    python train.py +experiment=ablation_capacity_deep       # run abl-deep
    python train.py +experiment=ablation_capacity_small      # run abl-small
    python bench/ablation_capacity.py --ckpt-root $RADIODIFF_CKPT_DIR abl-deep abl-small

Each arm's checkpoint is exported (main EMA) to ``--work``/<arm>, its fixed-noise validation
loss measured (:func:`radiodiff.evaluation.val_loss.val_loss`), and one image drawn per
valid row with that row's class, peak flux and LAS at ``--sampler`` (a sampler setting,
default ``dpmpp_2m:10:guidance=1.5``: the first ``models/mirabest`` release's setting, kept
so the ablation's committed table reproduces; the shipped model's default is
``dpmpp_2m:10:guidance=1``; the same for every arm) and scored by ``radiodiff evaluate``'s
metrics: source morphology per class (KS against the real-vs-real floor at equal sample
size), paired LAS, the scatter of the measured LAS about the catalogue's and its median ratio
per size bin (issue 28), real-vs-fake (plain and x^0.25), the exact-zero background
fraction. A real row (train vs valid) gives the floors. Prints a Markdown table; ``--out``
writes every number as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from radiodiff.evaluation.metrics import EvalSettings
from radiodiff.evaluation.quality import result_header, spec_arg
from radiodiff.evaluation.run import run_evaluation
from radiodiff.evaluation.sets import Compared, reference_set
from radiodiff.evaluation.val_loss import val_loss
from radiodiff.io.artifacts import atomic_text
from radiodiff.io.release_files import META_FILE
from radiodiff.pipeline.checkpoint import export_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STATS = ("las", "elongation", "n_components", "outer_flux_fraction", "brightest_offset")


def row(name: str, m: dict) -> dict:
    morph = m.get("morphology") or {}
    catalogue = (m.get("conditioning") or {}).get("las_arcsec") or {}
    las, real = catalogue.get("paired") or {}, catalogue.get("real") or {}
    return {"arm": name, "real_vs_fake": m["real_vs_fake"]["mean_accuracy"],
            "real_vs_fake_faint": m["real_vs_fake_faint"]["mean_accuracy"],
            # the spread over the real-vs-fake folds
            "real_vs_fake_std": m["real_vs_fake"].get("std_accuracy"),
            "real_vs_fake_faint_std": m["real_vs_fake_faint"].get("std_accuracy"),
            "zero_fraction": m["background"]["fake"]["zero"],
            "zero_fraction_real": m["background"]["real"]["zero"],
            "las_within_20": las.get("fraction_within"),
            "las_within_20_floor": (las.get("real") or {}).get("fraction_within"),
            "las_median_error": las.get("median_abs_relative_error"),
            # measured vs catalogue LAS (issue 28): scatter, its real floor, ratio per size
            "las_iqr_log_ratio": catalogue.get("iqr_log_ratio"),
            "las_iqr_log_ratio_floor": real.get("iqr_log_ratio"),
            "las_by_size": catalogue.get("by_size"), "las_by_size_floor": real.get("by_size"),
            "ks_ratio": {k: (v if v is None or math.isfinite(v) else None)
                         for k, v in morph.get("ks_ratio", {}).items()},
            "failed_zero_floor": morph.get("failed_zero_floor", []),
            "worst": morph.get("worst", []),
            "within_1.5": morph.get("within_1.5"), "n_ratios": morph.get("n"),
            "class_fidelity": (m.get("class_fidelity") or {}).get("fidelity_ratio"),
            # the physical-units checks (background rms, noise histogram, flux ...), as
            # radiodiff evaluate's report gives them: value, floor, target, pass
            "physical_checks": (m.get("physical") or {}).get("checks")}


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def table(rows: list[dict]) -> str:
    head = ("| arm | val loss | real-vs-fake | x^0.25 | LAS within 20 % | LAS error | "
            "zero fraction | " + " | ".join(f"KS/floor {s}" for s in STATS)
            + " | KS ≤ 1.5x floor | LAS scatter (floor) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ks = [_fmt(r["ks_ratio"].get(f"all/{s}")) for s in STATS]  # per class: the JSON
        lines.append(f"| {r['arm']} | {_fmt(r.get('val_loss'))} | {_fmt(r['real_vs_fake'])} | "
                     f"{_fmt(r['real_vs_fake_faint'])} | {_fmt(r['las_within_20'])} | "
                     f"{_fmt(r['las_median_error'])} | {_fmt(r['zero_fraction'])} | "
                     + " | ".join(ks) + f" | {r['within_1.5']}/{r['n_ratios']} | "
                     f"{_fmt(r.get('las_iqr_log_ratio'))} "
                     f"({_fmt(r.get('las_iqr_log_ratio_floor'))}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arms", nargs="+", help="run names (folders under --ckpt-root) or releases")
    p.add_argument("--ckpt-root", default="outputs/checkpoints")
    p.add_argument("--reference", default=str(ROOT / "data" / "mirabest.h5"))
    p.add_argument("--split", default="valid")
    p.add_argument("--sampler", type=spec_arg, default=spec_arg("dpmpp_2m:10:guidance=1.5"),
                   help="sampler setting, solver:steps[:key=value ...]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / "outputs" / "ablation"))
    p.add_argument("--out", default=None)
    p.add_argument("--no-real-row", action="store_true", help="skip the real-vs-real row")
    a = p.parse_args(argv)
    spec = a.sampler.spec
    settings = EvalSettings(seed=a.seed, sourcefinder=False, tstr=False,
                            cache_dir=str(Path(a.work) / "cache"))
    n = len(reference_set(a.reference, a.split)[0].images)
    releases = []
    for arm in a.arms:
        path = Path(arm)
        if not (path / META_FILE).is_file():  # a run name: export its main EMA
            path = export_checkpoint(Path(a.ckpt_root) / arm / "last.ckpt",
                                     Path(a.work) / arm, overwrite=True)
        releases.append(path)
    # the mean at 4 decimals, as bench/val_loss.py prints it (the committed tables' column)
    losses = {r.name: round(float(np.mean(val_loss(r, a.reference))), 4) for r in releases}
    floor_split = "train" if a.split == "valid" else "valid"
    rows = []
    real_row = [] if a.no_real_row else [("real", Compared(real_split=floor_split))]
    for name, compared in real_row + [
            (r.name, Compared(model=str(r), n=n, spec=spec, seed=a.seed)) for r in releases]:
        result, _ = run_evaluation(a.reference, compared, Path(a.work) / f"report-{name}",
                                   a.split, settings, overwrite=True)
        rows.append({**row(name, result.to_dict()), "val_loss": losses.get(name)})
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if a.out:
        atomic_text(a.out, json.dumps({**result_header(a.reference, a.split, a.seed),
                                       "sampler": str(a.sampler), "n": n,
                                       "arms": [Path(arm).name for arm in a.arms],
                                       "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
