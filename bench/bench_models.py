"""Cost of each model preset: parameters, GFLOP per image, training and sampling throughput.

    python bench/bench_models.py                       # all presets, 80x80, this machine
    python bench/bench_models.py --presets unet_small --batch 32 --precision bf16
    python bench/bench_models.py --device cuda --batch 128 --train-steps 30 --nfe 30  # GPU

Training: AdamW steps of the EDM loss (forward + backward) under autocast. Sampling: the
time of one denoiser evaluation on a batch, times 49 (Heun, 25 steps = 2*25-1 evaluations),
so the slow published-size network needs only a few evaluations to be measured. Prints a
Markdown table and a JSON line per preset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from radiodiff.config import load_config
from radiodiff.diffusion.edm import edm_loss
from radiodiff.diffusion.factory import build_denoiser, network_args

HEUN_NFE = 49  # 25 Heun steps


def _autocast(precision: str, device: str = "cpu"):
    kind = torch.device(device).type
    if precision == "bf16":
        return torch.autocast(kind, dtype=torch.bfloat16)
    return torch.autocast(kind, enabled=False)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _machine(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} {os.cpu_count()} cpus"


def bench(preset: str, size: int, batch: int, train_steps: int, nfe: int, precision: str,
          classes: int = 4, device: str = "cpu") -> dict:
    cfg = load_config([f"model={preset}"])
    torch.manual_seed(0)
    D = build_denoiser(network_args(cfg.model, size, classes), sigma_data=0.2)
    net = D.net
    params = sum(p.numel() for p in net.parameters())
    x1 = torch.rand(1, 1, size, size)
    cond1 = {"label": torch.zeros(1, dtype=torch.long)}
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        D(x1, torch.ones(1), cond1)
    gflop = fc.get_total_flops() / 1e9

    D.to(device)
    x = torch.rand(batch, 1, size, size, device=device)
    cond = {"label": torch.randint(0, classes, (batch,), device=device)}
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        with _autocast(precision, device):
            loss = edm_loss(D, x, cond)[0].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2 if torch.device(device).type == "cuda" else 1):
        step()  # warm-up (allocations, kernel selection)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(train_steps):
        step()
    _sync(device)
    t_step = (time.perf_counter() - t0) / train_steps

    sigma = torch.full((batch,), 1.0, device=device)
    with torch.no_grad(), _autocast(precision, device):
        D(x, sigma, cond)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(nfe):
            D(x, sigma, cond)
        _sync(device)
        t_nfe = (time.perf_counter() - t0) / nfe
    return {
        "preset": preset, "image_size": size, "params_M": round(params / 1e6, 3),
        "gflop_per_image_forward": round(gflop, 3), "batch": batch, "precision": precision,
        "train_s_per_step": round(t_step, 3), "train_images_per_s": round(batch / t_step, 2),
        "sample_s_per_nfe": round(t_nfe, 4),
        "sample_images_per_s_heun25": round(batch / (HEUN_NFE * t_nfe), 3),
        "threads": torch.get_num_threads(), "device": str(device),
        "machine": _machine(device), "torch": torch.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["unet_small", "unet_base", "unet_attn"])
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--nfe", type=int, default=3)
    ap.add_argument("--precision", choices=["auto", "bf16", "32"], default="auto",
                    help="auto: bf16 where the hardware has it (as trainer.precision=auto)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = ap.parse_args()
    if args.precision == "auto":
        from radiodiff.training.fit import resolve_precision
        kind = torch.device(args.device).type
        args.precision = "bf16" if resolve_precision("auto", kind).startswith("bf16") else "32"
    rows = [bench(p, args.size, args.batch, args.train_steps, args.nfe, args.precision,
                  device=args.device) for p in args.presets]
    where = (_machine(args.device) if args.device != "cpu"
             else f"{torch.get_num_threads()} threads")
    print(f"| preset | params (M) | GFLOP/image (fwd) | train img/s | Heun-25 img/s |"
          f"  ({args.size}x{args.size}, batch {args.batch}, {args.precision}, {where})")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['params_M']} | {r['gflop_per_image_forward']} | "
              f"{r['train_images_per_s']} | {r['sample_images_per_s_heun25']} |")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
