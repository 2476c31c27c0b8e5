"""Checkpoint -> release: a training checkpoint's EMA weights and what sampling needs.

Belongs to training (it knows the LightningModule's checkpoint layout); evaluation and the
CLI call it, and nothing else reads checkpoint internals.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.io.release import export_release

__all__ = ["export_checkpoint"]


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path) -> Path:
    """Release folder from a training checkpoint: the EMA weights plus what sampling needs.

    The checkpoint is read with ``torch.load(weights_only=True)``: nothing is unpickled.
    """
    from radiodiff.diffusion.unet import build_unet

    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{ckpt_path}: not a readable radiodiff checkpoint ({exc})") from exc
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hp or "cfg" not in hp or "state_dict" not in ckpt:
        raise ValueError(f"{ckpt_path}: not a radiodiff training checkpoint (no hyper-parameters)")
    cfg = OmegaConf.create(hp["cfg"])
    ds = hp.get("dataset") or {}
    net = build_unet(cfg.model, int(cfg.data.image_size), 1, int(hp["num_classes"]),
                     tuple(hp["scalar_conditions"]))
    denoiser = EDMDenoiser(net, float(hp["sigma_data"]))
    ema = {k[len("ema."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("ema.")}
    denoiser.load_state_dict(ema, strict=True)
    meta = {
        "classes": list(ds.get("classes") or []) if hp["num_classes"] else [],
        "scalar_conditions": list(hp["scalar_conditions"]),
        # the buffer restored with the weights is the value the network was trained with
        "condition_transform": hp["transform"], "sigma_data": float(denoiser.sigma_data),
        "image_size": int(cfg.data.image_size),
        "image_unit": ds.get("image_unit") or "arbitrary",
        "pixel_scale_arcsec": ds.get("pixel_scale_arcsec"),
        "beam_arcsec": ds.get("beam_arcsec"), "scaling": ds.get("scaling") or "per_image",
        "negatives": ds.get("negatives"), "data_sha256": ds.get("data_sha256"),
        "inputs_sha256": ds.get("inputs_sha256"), "seed": int(cfg.seed),
        "images_seen": ckpt.get("images_seen"), "step": ckpt.get("global_step"),
    }
    return export_release(out_dir, denoiser, cfg, meta)
