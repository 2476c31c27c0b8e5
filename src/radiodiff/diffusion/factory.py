"""The one place a denoiser is built: from plain constructor arguments stored with it.

As nanoGPT rebuilds ``GPT(GPTConfig(**checkpoint["model_args"]))``: training records
:func:`network_args` in its checkpoint, export copies them into the release's
``meta.json``, and every reader (resume, export, sampling, warm start, benchmarks) calls
:func:`build_denoiser` on them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.diffusion.unet import build_unet

__all__ = ["network_args", "build_denoiser"]

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


def build_denoiser(args: Mapping[str, Any], sigma_data: float) -> EDMDenoiser:
    """``EDMDenoiser(F, sigma_data)`` with ``F`` built from :func:`network_args` output."""
    a = dict(args)
    net = build_unet(a, int(a.pop("image_size")), int(a.pop("in_channels", 1)),
                     int(a.pop("num_classes", 0)), tuple(a.pop("scalar_conditions", ())))
    return EDMDenoiser(net, sigma_data=float(sigma_data))
