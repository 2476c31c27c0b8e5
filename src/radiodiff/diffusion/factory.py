"""The one place a denoiser is built: from plain constructor arguments stored with it.

As nanoGPT rebuilds ``GPT(GPTConfig(**checkpoint["model_args"]))``: training records
:func:`network_args` in its checkpoint, export copies them into the release's
``meta.json``, and every reader (resume, export, sampling, warm start, benchmarks) calls
:func:`build_denoiser` on them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.diffusion.unet import build_unet

__all__ = ["network_args", "build_denoiser", "check_network_size"]

# Keys of a model config that are not network constructor arguments.
_NOT_ARGS = ("name", "label_dropout")


def network_args(model_cfg: Any, image_size: int, num_classes: int = 0,
                 scalar_conditions: Sequence[str] = (), in_channels: int = 1) -> dict:
    """Plain (JSON-able) constructor arguments of the network ``F`` of a run.

    Parameters
    ----------
    model_cfg : ModelConfig, DictConfig or mapping
        The ``model`` config group (``name`` and ``label_dropout`` are left out: they do
        not shape the network).
    image_size : int
        Image side, pixels.
    num_classes : int
        Classes of the label condition (0: none).
    scalar_conditions : sequence of str
        Continuous conditions, e.g. ``("peak_flux", "las_arcsec")``.
    in_channels : int
        Image channels.
    """
    from omegaconf import DictConfig, OmegaConf
    if isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    elif not isinstance(model_cfg, Mapping):
        from dataclasses import asdict
        model_cfg = asdict(model_cfg)
    args = {k: v for k, v in dict(model_cfg).items() if k not in _NOT_ARGS}
    args.update(image_size=int(image_size), num_classes=int(num_classes),
                scalar_conditions=list(scalar_conditions), in_channels=int(in_channels))
    return args


def _build_net(args: Mapping[str, Any]):
    a = dict(args)
    return build_unet(a, int(a.pop("image_size")), int(a.pop("in_channels", 1)),
                      int(a.pop("num_classes", 0)), tuple(a.pop("scalar_conditions", ())))


def _rough_upper_bound(args: Mapping[str, Any]) -> float:
    """Generous bound on the U-Net's parameters: 3x3 convolutions at the widest level,
    in every block of every level, down and up, plus attention (4 w^2 each)."""
    try:
        width = int(args.get("model_channels", 0)) * max(
            [int(m) for m in args.get("channel_mult", (1,))] or [1])
        blocks = (int(args.get("num_blocks", 1)) + 2) * len(args.get("channel_mult", (1,)))
    except (TypeError, ValueError):
        return math.inf
    return 2.0 * blocks * (2 * 9 + 4) * float(width) ** 2 + 1e6


def check_network_size(args: Mapping[str, Any], max_fraction: float = 0.5) -> int:
    """Parameters of the network of ``args``, counted on the ``meta`` device (nothing
    allocated); refused when its float32 weights alone would take more than
    ``max_fraction`` of this machine's RAM (training needs ~4x: weights, EMA, Adam).

    Returns the count, or -1 when a rough upper bound is already far below the limit.

    Raises
    ------
    ValueError
        Naming the parameter count, the memory it needs and the RAM there is.
    """
    from radiodiff.diffusion.sampling import _physical_memory
    import torch

    image_size = int(args.get("image_size", 0))
    if not 1 <= image_size <= 4096:
        raise ValueError(f"image_size={image_size}: must be in [1, 4096] pixels")
    ram = _physical_memory()
    if ram is not None and 4 * _rough_upper_bound(args) < max_fraction * ram / 8:
        return -1  # clearly small: skip the exact count (its first call costs seconds)
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in _build_net(args).parameters())
    except (RuntimeError, OverflowError) as exc:
        raise ValueError(f"cannot build the network from model_args ("
                         f"{' '.join(str(exc).split())[:200]})") from exc
    need = 4 * n
    if ram is not None and need > max_fraction * ram:
        raise ValueError(f"the network would have {n:.3g} parameters ({need / 2**30:.1f} GiB "
                         f"of float32 weights, ~4x that to train), more than "
                         f"{max_fraction:.0%} of this machine's {ram / 2**30:.1f} GiB: "
                         f"lower model.model_channels or channel_mult")
    return n


def build_denoiser(args: Mapping[str, Any], sigma_data: float) -> EDMDenoiser:
    """``EDMDenoiser(F, sigma_data)`` with ``F`` built from :func:`network_args` output
    (its size checked first, :func:`check_network_size`)."""
    check_network_size(args)
    return EDMDenoiser(_build_net(args), sigma_data=float(sigma_data))
