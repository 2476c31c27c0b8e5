"""Training images/s of each model preset on this machine, for each speed option.

    python bench/throughput.py                                # unet_small, unet_deep, unet_base
    python bench/throughput.py --presets unet_small --steps 6 --compile

Run it alone (a second busy process slows torch several-fold). From a baseline (fp32,
batch 32, all cores, contiguous memory, eager) one option is changed at a time: batch 16
and 64, channels-last, 1 thread, bf16 autocast (only where the CPU has native bf16, or with
--bf16), torch.compile (with --compile: compiling takes minutes on 2 cores). Prints a
Markdown table, a JSON line per row and the fastest setting per preset.
Conditions as models/mirabest (3 classes, peak flux and LAS), 80x80.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform

import torch

from radiodiff.config import load_config
from radiodiff.training.fit import cpu_has_bf16
from radiodiff.training.throughput import ThroughputSetting, measure_training


def variants(preset: str, threads: int, bf16: bool, compile_: bool) -> list:
    base = ThroughputSetting(preset=preset, threads=threads)
    out = [base, dataclasses.replace(base, batch=16), dataclasses.replace(base, batch=64),
           dataclasses.replace(base, channels_last=True)]
    if threads > 1:
        out.append(dataclasses.replace(base, threads=1))
    if bf16:
        out.append(dataclasses.replace(base, precision="bf16"))
    if compile_:
        out.append(dataclasses.replace(base, compile=True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["unet_small", "unet_deep", "unet_base"])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per setting")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--bf16", action="store_true",
                    help="time bf16 autocast even without native bf16 (emulated: slow)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = ap.parse_args()
    native = cpu_has_bf16()
    print(f"# {platform.machine()} {os.cpu_count()} cpus, native bf16: {native}, "
          f"torch {torch.__version__}")
    rows = []
    for preset in args.presets:
        cfg = load_config([f"model={preset}"])
        for s in variants(preset, args.threads, native or args.bf16, args.compile):
            r = measure_training(s, cfg.model, scalar_conditions=("peak_flux", "las_arcsec"),
                                 steps=args.steps)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print("\n| preset | params (M) | batch | precision | threads | channels-last | compile "
          "| s/step | images/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['params_M']} | {r['batch']} | {r['precision']} | "
              f"{r['threads']} | {'yes' if r['channels_last'] else 'no'} | "
              f"{'yes' if r['compile'] else 'no'} | {r['s_per_step']} | {r['images_per_s']} |")
    for preset in args.presets:
        best = max((r for r in rows if r["preset"] == preset), key=lambda r: r["images_per_s"])
        print(f"fastest {preset}: {best['images_per_s']} images/s at batch {best['batch']}, "
              f"{best['precision']}, {best['threads']} threads, channels-last "
              f"{best['channels_last']}, compile {best['compile']}")


if __name__ == "__main__":
    main()
