"""Training throughput of a model preset under one set of speed options (images/s).

One function, :func:`measure_training`, times AdamW steps of the EDM loss (forward +
backward + step) on random 80x80 batches with the run's conditions, so the number is what
``train.py`` would reach on this machine alone (data loading aside: it is negligible for
prepared HDF5 held in memory). ``bench/throughput.py`` sweeps the options and prints a
table; :func:`ThroughputSetting` is one point of that sweep.

The options are those that keep training exact enough: precision (fp32, or bf16 autocast,
which only pays where the CPU has native bf16), memory format (channels-last), batch size,
thread count and ``torch.compile``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from radiodiff.diffusion.edm import edm_loss
from radiodiff.diffusion.factory import build_denoiser, network_args

__all__ = ["ThroughputSetting", "measure_training"]


@dataclass(frozen=True)
class ThroughputSetting:
    """One point of the speed sweep."""

    preset: str = "unet_small"
    batch: int = 32
    precision: str = "32"          # "32" or "bf16" (autocast)
    channels_last: bool = False
    compile: bool = False
    threads: int = 2

    def label(self) -> str:
        parts = [self.preset, f"b{self.batch}", self.precision, f"t{self.threads}"]
        parts += ["cl"] * self.channels_last + ["compile"] * self.compile
        return " ".join(parts)


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def measure_training(setting: ThroughputSetting, model_cfg: Any, image_size: int = 80,
                     num_classes: int = 3, scalar_conditions: tuple[str, ...] = (),
                     steps: int = 4, warmup: int = 1, device: str = "cpu",
                     seed: int = 0) -> dict[str, Any]:
    """Images/s of training steps of ``model_cfg`` under ``setting``.

    ``warmup`` steps (more with ``compile``: the first call compiles) are run and not
    timed; then ``steps`` steps are timed. The thread count is set for the call and
    restored after it.

    Returns
    -------
    dict
        The setting, parameters (M), seconds per step, images/s and the torch version.
    """
    dev = torch.device(device)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(setting.threads))
    try:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        D = build_denoiser(network_args(model_cfg, image_size, num_classes,
                                        scalar_conditions), sigma_data=0.2).to(dev)
        fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
        D = D.to(memory_format=fmt)
        loss_fn = torch.compile(edm_loss) if setting.compile else edm_loss
        x = torch.rand(setting.batch, 1, image_size, image_size, generator=gen)
        x = x.to(dev).contiguous(memory_format=fmt)
        cond = {"label": torch.randint(0, max(num_classes, 1), (setting.batch,),
                                       generator=gen).to(dev)} if num_classes else {}
        for name in scalar_conditions:
            cond[name] = torch.randn(setting.batch, generator=gen).to(dev)
        opt = torch.optim.AdamW(D.parameters(), lr=1e-4)

        def step() -> None:
            with _autocast(setting.precision, dev):
                loss = loss_fn(D, x, cond)[0].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(warmup + (2 if setting.compile else 0)):
            step()
        if dev.type == "cuda":  # the warm-up's queued kernels are not timed
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t_step = (time.perf_counter() - t0) / steps
        params = sum(p.numel() for p in D.parameters())
    finally:
        torch.set_num_threads(old_threads)
    return {**asdict(setting), "params_M": round(params / 1e6, 3),
            "s_per_step": round(t_step, 3), "images_per_s": round(setting.batch / t_step, 2),
            "torch": torch.__version__}
