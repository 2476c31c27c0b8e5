"""Ablation of the noise distribution and model space (issue 10), equal compute per arm.

    python bench/ablation_noise.py train --kimg 6                  # the four arms, warm
    python bench/ablation_noise.py train --kimg 6 --scratch stretch edm
    python bench/ablation_noise.py eval --n 200                    # validation split
    python bench/ablation_noise.py eval --n 200 --split test --arms stretch   # once, at the end

Arms are the ``conf/schedule/`` presets: ``edm`` (today: ln sigma ~ N(-1.2, 1.2^2), linear),
``relative`` (EDM's distribution moved to ln sigma_data), ``reference`` (images in [-1, 1],
sigma_data 0.5, N(-2.5, 1.8^2)) and ``stretch`` (power 0.25 stretch, relative noise).
Every warm arm starts from the shipped ``models/first`` EMA weights and sees the same
images (same seed, same data stream, ``--kimg`` thousand images); ``--scratch`` arms start
from random weights with the same budget. Each run checkpoints into ``--root`` (outside
the work tree) and is resumed by the same command, so a session can be cut anywhere.

``eval`` exports each finished run (every EMA length kept, ``train.ema_bank_kimg``), samples
``--n`` images per configuration and scores them with the evaluation suite against the
real ``--split`` images, including the faint-pixel view; the first row scores real
training images the same way (the real-vs-real floor). One JSON file per (arm, EMA) and a
Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = ("edm", "relative", "reference", "stretch")
EMA_MAIN, EMA_BANK = 2.0, (0.5, 5.0)  # kimg: short runs keep little of the warm start


def run_name(arm: str, scratch: bool) -> str:
    return f"abl-{arm}-{'scratch' if scratch else 'warm'}"


def train_arm(arm: str, scratch: bool, kimg: float, root: Path, minutes: float | None,
              batch: int, precision: str) -> int:
    """One arm's (resumable) training run; returns the exit code of train.py."""
    overrides = [
        "model=unet_small", "data=first", f"schedule={arm}", "logger=csv", "seed=0",
        f"train.run_name={run_name(arm, scratch)}", f"train.total_kimg={kimg}",
        f"paths.output_dir={root}/runs", f"paths.ckpt_root={root}/ckpt",
        "train.sample_every_steps=0", "train.ckpt_every_minutes=5",
        "train.ckpt_every_steps=250", "train.val_every_steps=250", "train.val_batches=8",
        "trainer.enable_progress_bar=false", f"trainer.precision={precision}",
        f"data.loader.batch_size={batch}", f"train.ema_halflife_kimg={EMA_MAIN}",
        f"train.ema_bank_kimg=[{','.join(str(h) for h in EMA_BANK)}]",
    ]
    if not scratch:  # the EMA starts at good weights: no ramp-up
        overrides += ["train.init_from=models/first", "train.ema_rampup_ratio=null"]
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
        name = run_name(arm, scratch)
        if finished(args.root, name, args.kimg):
            print(f"{name}: done", flush=True)
            continue
        left = None if args.minutes is None else args.minutes - (time.time() - t0) / 60
        if left is not None and left < 1:
            print(f"time box reached before {name}; rerun to continue", flush=True)
            return
        rc = train_arm(arm, scratch, args.kimg, args.root, left, args.batch, args.precision)
        if rc != 0:
            raise SystemExit(f"{name}: train.py exited with {rc}")
        if not finished(args.root, name, args.kimg):
            print(f"{name}: stopped by the time box; rerun to continue", flush=True)
            return


def cmd_eval(args) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from bench_quality import score_configs  # noqa: E402 (bench helper)

    from radiodiff.config import load_config
    from radiodiff.pipeline.checkpoint import export_checkpoint, output_projection

    # the output projection the committed ablation table was scored with (runs may predate
    # the setting): the 8-bit quantum as the floor, no noise islands
    projection = output_projection(load_config(["data=first"]).data, "per_image", "clip",
                                   floor=1 / 255, islands=None)

    rows = []
    names = [(run_name(a, False), a) for a in args.arms] + [
        (run_name(a, True), a) for a in args.scratch]
    models = []
    for name, arm in names:
        ckpt = args.root / "ckpt" / name / "last.ckpt"
        if not ckpt.is_file():
            print(f"{name}: no checkpoint yet, skipped", flush=True)
            continue
        for halflife in (args.ema or [EMA_MAIN, *EMA_BANK]):
            out = args.root / "releases" / f"{name}-ema{halflife:g}"
            export_checkpoint(ckpt, out, ema_halflife_kimg=halflife, projection=projection,
                              overwrite=True)
            models.append((f"{name} ema {halflife:g}k", out))
    real_row = not args.no_real_row
    for label, model in models:
        result = score_configs(str(model), args.reference, args.split, args.n, args.configs,
                               seed=args.seed, real_row=real_row)
        real_row = False  # the floor once
        for row in result:
            row["arm"] = label if row["sampler"] != "real" else "real (train)"
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"split": args.split, "n": args.n,
                                                  "rows": rows}, indent=1))
    from bench_quality import markdown_table
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
        p.add_argument("--scratch", nargs="*", default=[], choices=ARMS)
    t = sub.choices["train"]
    t.add_argument("--kimg", type=float, default=6.0, help="thousand images per arm")
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--precision", default="auto",
                   help="trainer.precision (auto: bf16 only where the CPU has bf16 "
                        "instructions; emulated it is 8x slower than fp32 here)")
    t.add_argument("--minutes", type=float, default=None, help="wall-clock box for this call")
    e = sub.choices["eval"]
    e.add_argument("--n", type=int, default=200)
    e.add_argument("--split", default="valid", choices=("valid", "test"))
    e.add_argument("--reference", default=str(REPO / "data" / "first.h5"))
    e.add_argument("--configs", nargs="+", default=["dpmpp_2m:10"])
    e.add_argument("--ema", nargs="*", type=float, default=None,
                   help="EMA half-lives (kimg) to score; default: all kept")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-real-row", action="store_true")
    e.add_argument("--out", default=None)
    args = ap.parse_args()
    {"train": cmd_train, "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
