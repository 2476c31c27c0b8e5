"""Ablation of the noise distribution and model space (issue 10), equal compute per arm.

    python bench/ablation_noise.py train                           # the four arms, warm
    python bench/ablation_noise.py train --scratch stretch edm
    python bench/ablation_noise.py eval --n 200                    # validation split
    python bench/ablation_noise.py eval --n 200 --split test --arms stretch   # once, at the end

Arms are Hydra experiments, ``conf/experiment/ablation_noise_<arm>.yaml`` (one per
``conf/schedule/`` preset): ``edm`` (ln sigma ~ N(-1.2, 1.2^2), linear), ``relative``
(EDM's distribution moved to ln sigma_data), ``reference`` (images in [-1, 1], sigma_data
0.5, N(-2.5, 1.8^2)) and ``stretch`` (power 0.25 stretch, relative noise). Every warm arm
starts from the shipped ``models/first`` EMA weights and sees the same images (the recipe
``ablation_noise.yaml``: same seed, same data stream, 6 thousand images); a ``--scratch``
arm (``ablation_noise_<arm>_scratch.yaml``) starts from random weights with the same
budget. ``train`` runs ``train.py +experiment=<arm>`` for each arm (the same command trains
one arm by hand), checkpointing into ``--root`` (outside the work tree); rerun it to resume,
so a session can be cut anywhere.

``eval`` exports each finished run (every EMA length kept, ``train.ema_bank_kimg``), samples
``--n`` images per sampler setting and scores them with
:func:`radiodiff.evaluation.quality.score_settings` against the real ``--split`` images,
including the faint-pixel view; the first row scores real training images the same way
(the real-vs-real floor). One JSON file per (arm, EMA) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from radiodiff.config import conf_dir, load_config
from radiodiff.evaluation.quality import (markdown_table, result_header, score_settings,
                                          setting_arg)
from radiodiff.io.artifacts import atomic_text
from radiodiff.pipeline.checkpoint import export_checkpoint, output_projection

REPO = Path(__file__).resolve().parents[1]
ARMS = ("edm", "relative", "reference", "stretch")
SCRATCH = tuple(a for a in ARMS
                if (conf_dir() / "experiment" / f"ablation_noise_{a}_scratch.yaml").is_file())


def experiment(arm: str, scratch: bool) -> str:
    return f"ablation_noise_{arm}" + ("_scratch" if scratch else "")


def run_name(arm: str, scratch: bool) -> str:
    return str(load_config([f"+experiment={experiment(arm, scratch)}"]).train.run_name)


def total_kimg(arm: str, scratch: bool) -> float:
    return float(load_config([f"+experiment={experiment(arm, scratch)}"]).train.total_kimg)


def train_arm(arm: str, scratch: bool, root: Path, minutes: float | None,
              precision: str) -> int:
    """One arm's (resumable) training run; returns the exit code of train.py."""
    overrides = [f"+experiment={experiment(arm, scratch)}",  # the recipe; then where it runs
                 f"paths.output_dir={root}/runs", f"paths.ckpt_root={root}/ckpt",
                 f"trainer.precision={precision}"]
    if minutes:
        overrides.append(f"train.max_minutes={minutes}")
    cmd = [sys.executable, str(REPO / "train.py"), *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd, cwd=REPO)


def finished(root: Path, name: str, kimg: float) -> bool:
    import torch
    ckpt = root / "ckpt" / name / "last.ckpt"
    if not ckpt.is_file():
        return False
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return int(state.get("images_seen", 0)) >= kimg * 1000


def cmd_train(args) -> None:
    runs = [(a, False) for a in args.arms] + [(a, True) for a in args.scratch]
    t0 = time.time()
    for arm, scratch in runs:
        name, kimg = run_name(arm, scratch), total_kimg(arm, scratch)
        if finished(args.root, name, kimg):
            print(f"{name}: done", flush=True)
            continue
        left = None if args.minutes is None else args.minutes - (time.time() - t0) / 60
        if left is not None and left < 1:
            print(f"time box reached before {name}; rerun to continue", flush=True)
            return
        rc = train_arm(arm, scratch, args.root, left, args.precision)
        if rc != 0:
            raise SystemExit(f"{name}: train.py exited with {rc}")
        if not finished(args.root, name, kimg):
            print(f"{name}: stopped by the time box; rerun to continue", flush=True)
            return


def cmd_eval(args) -> None:
    # the output projection the committed ablation table was scored with (runs may predate
    # the setting): the 8-bit quantum as the floor, no noise islands
    projection = output_projection(load_config(["data=first"]).data, "per_image", "clip",
                                   floor=1 / 255, islands=None)

    rows = []
    models = []
    for arm, scratch in [(a, False) for a in args.arms] + [(a, True) for a in args.scratch]:
        run = load_config([f"+experiment={experiment(arm, scratch)}"]).train
        name = str(run.run_name)
        ckpt = args.root / "ckpt" / name / "last.ckpt"
        if not ckpt.is_file():
            print(f"{name}: no checkpoint yet, skipped", flush=True)
            continue
        for halflife in (args.ema or [run.ema_halflife_kimg, *run.ema_bank_kimg]):
            out = args.root / "releases" / f"{name}-ema{halflife:g}"
            export_checkpoint(ckpt, out, ema_halflife_kimg=halflife, projection=projection,
                              overwrite=True)
            models.append((f"{name} ema {halflife:g}k", out))
    real_row = not args.no_real_row
    for label, model in models:
        result = score_settings(str(model), args.reference, args.split, args.n,
                                args.configs, seed=args.seed, real_row=real_row)
        real_row = False  # the floor once
        for row in result:
            row["arm"] = label if row["sampler"] != "real" else "real (train)"
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            atomic_text(args.out, json.dumps({
                **result_header(args.reference, args.split, args.seed), "n": args.n,
                "rows": rows}, indent=1))
    print(markdown_table(rows, first_column="arm"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    default_root = Path(os.environ.get("RADIODIFF_ABLATION_DIR", REPO.parent / "ablation"))
    for name in ("train", "eval"):
        p = sub.add_parser(name)
        p.add_argument("--root", type=Path, default=default_root,
                       help="runs, checkpoints and releases (keep it outside the work tree)")
        p.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS)
        p.add_argument("--scratch", nargs="*", default=[], choices=SCRATCH,
                       help="arms from random weights (those with an "
                       "ablation_noise_<arm>_scratch experiment)")
    t = sub.choices["train"]
    t.add_argument("--precision", default="auto",
                   help="trainer.precision (auto: bf16 only where the CPU has bf16 "
                        "instructions; emulated it is 8x slower than fp32 here)")
    t.add_argument("--minutes", type=float, default=None, help="wall-clock box for this call")
    e = sub.choices["eval"]
    e.add_argument("--n", type=int, default=200)
    e.add_argument("--split", default="valid", choices=("valid", "test"))
    e.add_argument("--reference", default=str(REPO / "data" / "first.h5"))
    e.add_argument("--configs", nargs="+", type=setting_arg,
                   default=[setting_arg("dpmpp_2m:10")],
                   help="sampler settings, solver:steps[:key=value ...]")
    e.add_argument("--ema", nargs="*", type=float, default=None,
                   help="EMA half-lives (kimg) to score; default: all kept")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-real-row", action="store_true")
    e.add_argument("--out", default=None)
    args = ap.parse_args()
    {"train": cmd_train, "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
