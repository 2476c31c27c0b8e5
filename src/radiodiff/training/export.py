"""Checkpoint -> release: a training checkpoint's EMA weights and what sampling needs.

Belongs to training (it knows the LightningModule's checkpoint layout); evaluation and the
CLI call it, and nothing else reads checkpoint internals.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import OmegaConf

from radiodiff.diffusion.factory import build_denoiser, network_args
from radiodiff.io.release import export_release

__all__ = ["export_checkpoint"]


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path,
                      ema_halflife_kimg: float | None = None,
                      projection: dict | None = None, overwrite: bool = False) -> Path:
    """Release folder from a training checkpoint (read with ``weights_only=True``).

    ``ema_halflife_kimg`` picks one of the run's EMAs (None: the main one); ``projection``
    overrides the one taken from the run's data config (:func:`output_projection`);
    ``overwrite`` lets an existing release at ``out_dir`` be replaced
    (:func:`radiodiff.io.release.export_release`).
    """
    from radiodiff.io.artifacts import check_output
    check_output(out_dir, "release", overwrite)  # before reading a large checkpoint
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
    args = hp.get("model_args") or network_args(  # checkpoints before model_args
        cfg.model, int(cfg.data.image_size), int(hp["num_classes"]), hp["scalar_conditions"])
    denoiser = build_denoiser(args, float(hp["sigma_data"]))
    prefix, halflife = _ema_prefix(cfg, ema_halflife_kimg, ckpt_path)
    ema = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
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
        "intensity": hp.get("intensity"), "ema_halflife_kimg": halflife, "model_args": args,
    }
    meta["projection"] = projection or output_projection(cfg.data, meta["scaling"],
                                                         meta["negatives"])
    return export_release(out_dir, denoiser, cfg, meta, overwrite)


def _ema_prefix(cfg, halflife: float | None, ckpt_path: Path) -> tuple[str, float]:
    """State-dict prefix of the EMA with that half-life (kimg), and the half-life."""
    from radiodiff.training.module import ema_lengths
    main, *bank = ema_lengths(cfg.train)
    if halflife is None or math.isclose(float(halflife), main):
        return "ema.", main
    for k, h in enumerate(bank):
        if math.isclose(float(halflife), h):
            return f"ema_bank.{k}.", h
    raise ValueError(f"{ckpt_path}: no EMA with a half-life of {halflife:g} kimg (this run "
                     f"kept {', '.join(f'{h:g}' for h in [main, *bank])})")


def output_projection(data_cfg, scaling: str, negatives: str | None) -> dict:
    """The data's last preprocessing steps that generated images go through (release meta):
    the quantum floor and its halo (``data.projection_*``) and, for per-image scaling with
    clipped negatives, the peak at exactly 1."""
    return {"floor": data_cfg.get("projection_floor"),
            "halo_px": int(data_cfg.get("projection_halo_px", 2)),
            "peak_one": scaling == "per_image" and negatives != "keep"}
