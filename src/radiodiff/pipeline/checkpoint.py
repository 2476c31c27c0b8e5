"""Checkpoint -> release: a training checkpoint's EMA weights and what sampling needs.

The one reader of training checkpoints (the LightningModule's layout: hyper-parameters,
``ema.`` / ``ema_bank.<k>.`` weights, :func:`ema_lengths`) and their conversion to a
release. Below training and evaluation, so both open checkpoints through it (training to
resume, evaluation and the CLI to sample from one); nothing else reads checkpoint internals.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from radiodiff.config import DATA_FLOOR, ProjectionConfig
from radiodiff.data.projection import (HALO, check_floor, check_halo, islands_from,
                                       projection_dict)
from radiodiff.diffusion.factory import build_denoiser, network_args
from radiodiff.io.integrity import IntegrityError, check_finite, read_manifest, verify_file
from radiodiff.pipeline.release import export_release

__all__ = ["export_checkpoint", "read_checkpoint", "conditions_from_data", "training_rows",
           "output_projection", "ema_lengths", "FROM_RUN", "LAST", "PREV"]

FROM_RUN = "run"  # export_checkpoint(projection_floor=, projection_islands=): the run's data config
LAST, PREV = "last.ckpt", "prev.ckpt"  # the resume checkpoint and the one before it
# hyper-parameters a radiodiff checkpoint must carry, and their types
_HPARAMS = {"cfg": dict, "num_classes": int, "scalar_conditions": list, "transform": dict,
            "sigma_data": float}


def ema_lengths(train_cfg) -> list[float]:
    """Half-lives (kimg) of the run's EMAs: the main one, then ``ema_bank_kimg``."""
    return [float(train_cfg.ema_halflife_kimg),
            *(float(h) for h in train_cfg.get("ema_bank_kimg", []))]


def _alternative(path: Path, usage: str) -> str:
    """What to do instead of using a bad ``path``: its intact ``prev.ckpt`` if any."""
    prev = path.with_name(PREV)
    if path.name == PREV or not prev.is_file():
        return f"no earlier checkpoint beside it; {usage.format('<another .ckpt>')}"
    try:
        step = read_checkpoint(prev, alternative=False).get("global_step")
    except (ValueError, OSError):
        return f"{prev} is damaged too"
    return f"the previous one is intact (step {step}): {usage.format(prev)}"


def read_checkpoint(path: str | Path, alternative: bool = True,
                    usage: str = "use it with train.resume={}", check_hash: bool = True) -> dict:
    """The one validating reader of training checkpoints (``torch.load(weights_only=True)``).

    Checks, in this order: the SHA-256 against the ``SHA256SUMS`` of the checkpoint folder
    (written by :class:`radiodiff.training.fit.ResumeCheckpoint`; not checked without one),
    that the file unpickles (truncated, random bytes), the layout (``state_dict``,
    ``global_step`` and the hyper-parameters export needs, with their types), and that
    every tensor and ``sigma_data`` is finite. ``alternative``: a failure names the intact
    ``prev.ckpt`` beside it, put into ``usage`` (a format string with one ``{}``).
    ``check_hash`` False: a file just written, not yet in the manifest.

    Raises
    ------
    FileNotFoundError
        No such file.
    IntegrityError
        One line naming the file, the problem and the checkpoint to use instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")

    def fail(problem: str, cause: BaseException | None = None):
        fix = _alternative(path, usage) if alternative else "do not use it"
        raise IntegrityError(f"{path}: {problem}; {fix}") from cause

    if check_hash:
        read_manifest(path.parent)  # a damaged SHA256SUMS says so itself, the files are not blamed
    try:
        if check_hash:
            verify_file(path, "checkpoint", "", accept_any=True)
    except IntegrityError as exc:
        fail(f"does not match the SHA-256 recorded in {path.parent}/SHA256SUMS (corrupt or "
             "changed since it was written)", exc)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, foreign pickles
        fail(f"not a readable checkpoint (truncated or corrupt: "
             f"{' '.join(str(exc).split())[:160]})", exc)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or not isinstance(ckpt.get("state_dict"), dict):
        fail("not a radiodiff training checkpoint (no state_dict or hyper-parameters)")
    wrong = [f"{k} (want {t.__name__})" for k, t in _HPARAMS.items()
             if not isinstance(hp.get(k), t if t is not float else (int, float))
             or isinstance(hp.get(k), bool)]
    if not isinstance(ckpt.get("global_step", 0), int):
        wrong.append("global_step (want int)")
    if isinstance(hp.get("cfg"), dict):
        wrong += [f"cfg.{k} (want dict)" for k in ("model", "data", "train")
                  if not isinstance(hp["cfg"].get(k), dict)]
    if wrong:
        fail(f"malformed radiodiff checkpoint: missing or mistyped {', '.join(wrong)}")
    if not (math.isfinite(hp["sigma_data"]) and hp["sigma_data"] > 0):
        fail(f"sigma_data={hp['sigma_data']} is not a finite number > 0")
    try:
        check_finite(ckpt["state_dict"], "state_dict", "")
    except IntegrityError as exc:
        fail(str(exc).rstrip("; "), exc)
    return ckpt


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path,
                      ema_halflife_kimg: float | None = None,
                      projection: dict | None = None, overwrite: bool = False,
                      data: str | Path | None = None, projection_floor: Any = FROM_RUN,
                      projection_islands: Any = FROM_RUN, fresh: bool = False,
                      projection_halo: Any = FROM_RUN) -> Path:
    """Release folder from a training checkpoint (read with ``weights_only=True``).

    ``ema_halflife_kimg`` picks one of the run's EMAs (None: the main one); ``projection``
    overrides the one taken from the run's data config (:func:`output_projection`), and
    ``projection_floor`` (a number, ``"data"`` or None) only its floor and
    ``projection_islands`` (IslandModel fields or None) only its noise islands and
    ``projection_halo`` (pixels) only its halo, the data floor then measured with it
    (a run begun before its data config had the right halo); ``overwrite`` lets an existing
    release at ``out_dir`` be replaced
    (:func:`radiodiff.pipeline.release.export_release`). The release gets the training rows'
    conditions (``train_conditions.csv``) the checkpoint carries; for checkpoints made
    before they did, ``data`` (the prepared file the run trained on, checked by its
    ``data_sha256``) supplies them (:func:`conditions_from_data`), and the floor measured
    on its training images when the floor is ``"data"`` and the checkpoint predates
    recording it. An export onto a release keeps what the last export did not write (its
    model card, ``refiner/``...: :func:`radiodiff.pipeline.release.export_release`); ``fresh``
    replaces the whole folder (implies ``overwrite``).
    """
    from radiodiff.io.artifacts import check_output, unlock_output
    check_output(out_dir, "release", overwrite or fresh)  # before reading a large checkpoint
    try:  # the check took the output's lock (one writer at a time): given back on any exit
        return _export_checkpoint(Path(ckpt_path), out_dir, ema_halflife_kimg, projection,
                                  overwrite, data, projection_floor, projection_islands, fresh,
                                  projection_halo)
    finally:
        unlock_output(out_dir)


def _export_checkpoint(ckpt_path: Path, out_dir: str | Path, ema_halflife_kimg, projection,
                       overwrite, data, projection_floor, projection_islands,
                       fresh, projection_halo=FROM_RUN) -> Path:
    """:func:`export_checkpoint` once its output is checked and locked."""
    ckpt = read_checkpoint(ckpt_path, usage="export it instead: radiodiff export --ckpt {}")
    hp = ckpt["hyper_parameters"]
    try:
        cfg = OmegaConf.create(hp["cfg"])
        ds = hp.get("dataset") or {}
        if not (isinstance(projection_halo, str) and projection_halo == FROM_RUN):
            # the run's recorded data floor was measured with its own halo: measured anew
            cfg.data.projection_halo_px = _halo(projection_halo)
            ds = {k: v for k, v in ds.items() if k != "projection_floor_max"}
        args = hp.get("model_args") or network_args(  # checkpoints before model_args
            cfg.model, int(cfg.data.image_size), int(hp["num_classes"]),
            hp["scalar_conditions"])
        denoiser = build_denoiser(args, float(hp["sigma_data"]))
        prefix, halflife = _ema_prefix(cfg, ema_halflife_kimg, ckpt_path)
        ema = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items()
               if k.startswith(prefix)}
        denoiser.load_state_dict(ema, strict=True)
    except (TypeError, KeyError, AttributeError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "state_dict" not in str(exc):
            raise
        why = " ".join(str(exc).split())[:300]
        raise IntegrityError(f"{ckpt_path}: malformed radiodiff checkpoint, its config, "
                             f"model_args and EMA weights do not fit together ({why})") from exc
    except Exception as exc:  # omegaconf errors on a mangled config
        if type(exc).__module__.startswith("omegaconf"):
            raise IntegrityError(f"{ckpt_path}: malformed config in the checkpoint "
                                 f"({' '.join(str(exc).split())[:200]})") from exc
        raise
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
    if ckpt.get("warm_start"):  # what the run started from (training.fit.warm_start)
        meta["warm_start"] = dict(ckpt["warm_start"])
    if ckpt.get("training_code"):  # the code of each piece (training.module)
        meta["training_code"] = [dict(piece) for piece in ckpt["training_code"]]
    meta["projection"] = projection or output_projection(
        cfg.data, meta["scaling"], meta["negatives"],
        _floor_max(ds, cfg, hp, ckpt_path, data, projection_floor), projection_floor,
        projection_islands)
    table = _train_conditions(hp, cfg, ckpt_path, data)  # checks data is the training data
    rms = _noise_rms(ds, data)
    if rms is not None:  # the survey noise of the training cutouts: the FITS RMS card
        meta["rms_jy_beam"] = rms
    return export_release(out_dir, denoiser, cfg, meta, overwrite, train_conditions=table,
                          fresh=fresh)


def _noise_rms(ds: dict, data: str | Path | None) -> float | None:
    """Median noise rms (Jy/beam) of the training cutouts: recorded by the run, else
    measured on ``data`` (checkpoints made before runs recorded it); None without a flux
    scale."""
    if ds.get("image_unit") != "Jy/beam":
        return None
    if ds.get("rms_jy_beam") is not None:
        return float(ds["rms_jy_beam"])
    if data is None:
        return None
    from radiodiff.data.prepared import read_prepared
    return read_prepared(data, images=False).geometry()["rms_jy_beam"]


def _train_conditions(hp: dict, cfg, ckpt_path: Path, data: str | Path | None):
    """The checkpoint's training-condition table, else the one of ``data`` (always checked
    to be the training data when given), else None."""
    from radiodiff.diffusion.condition_table import ConditionTable

    from_file = conditions_from_data(data, cfg, hp, ckpt_path) if data is not None else None
    text = hp.get("train_conditions")
    if not text:
        return from_file
    try:
        return ConditionTable.from_csv(str(text), f"{ckpt_path}: train_conditions")
    except ValueError as exc:
        raise IntegrityError(f"malformed radiodiff checkpoint: {exc}") from exc


def conditions_from_data(path: str | Path, cfg, hp: dict, ckpt_path: str | Path):
    """The training rows' condition table from the prepared file ``path``: its train split
    by the run's own split rule (``cfg.data.loader``, seed), the run's conditions.

    Raises
    ------
    ValueError
        The checkpoint records no ``data_sha256``, or the file's differs from it (not the
        data the run was trained on): one line naming both.
    """
    from radiodiff.diffusion.condition_table import ConditionTable

    meta, rows = training_rows(path, cfg, hp, ckpt_path)
    return ConditionTable.from_rows(meta.columns, rows, bool(hp["num_classes"]),
                                    list(hp["scalar_conditions"]))


def training_rows(path: str | Path, cfg, hp: dict, ckpt_path: str | Path):
    """The prepared file ``path`` (metadata, :func:`radiodiff.data.prepared.read_prepared`)
    and the rows the run trained on: its train split by the run's own split rule
    (``cfg.data.loader``, seed).

    Raises
    ------
    ValueError
        The checkpoint records no ``data_sha256``, or the file's differs from it (not the
        data the run was trained on): one line naming both.
    """
    from radiodiff.data.datamodule import CutoutDataModule
    from radiodiff.data.prepared import read_prepared

    expected = (hp.get("dataset") or {}).get("data_sha256")
    if not expected:
        raise ValueError(f"{ckpt_path}: the checkpoint records no data_sha256, so {path} "
                         "cannot be checked to be its training data; refusing --data")
    meta = read_prepared(path, images=False, verify=True)
    found = meta.attrs.get("data_sha256")
    if found != expected:
        raise ValueError(f"{path}: data_sha256 {str(found)[:12]}... differs from the "
                         f"{str(expected)[:12]}... recorded in {ckpt_path}: not the data "
                         "this model was trained on; refusing to use it")
    data_cfg = OmegaConf.merge(cfg.data, {"out": str(path)})
    rows = CutoutDataModule.from_config(data_cfg, seed=int(cfg.seed)).select(
        meta.columns)["train"]
    return meta, rows


def _halo(value: Any) -> int:
    """``projection_halo``: an int of pixels (:func:`radiodiff.data.projection.check_halo`)."""
    return check_halo(value, "projection halo")


def _ema_prefix(cfg, halflife: float | None, ckpt_path: Path) -> tuple[str, float]:
    """State-dict prefix of the EMA with that half-life (kimg), and the half-life."""
    main, *bank = ema_lengths(cfg.train)
    if halflife is None or math.isclose(float(halflife), main):
        return "ema.", main
    for k, h in enumerate(bank):
        if math.isclose(float(halflife), h):
            return f"ema_bank.{k}.", h
    raise ValueError(f"{ckpt_path}: no EMA with a half-life of {halflife:g} kimg (this run "
                     f"kept {', '.join(f'{h:g}' for h in [main, *bank])})")


def output_projection(data_cfg, scaling: str, negatives: str | None,
                      floor_max: float | None = None, floor: Any = FROM_RUN,
                      islands: Any = FROM_RUN) -> dict:
    """The data's last preprocessing steps that generated images go through (release meta):
    the quantum floor and its halo (``data.projection_*``), for per-image scaling with
    clipped negatives the peak at exactly 1, and the data's noise islands
    (``data.projection_islands``, :mod:`radiodiff.data.islands`) when configured.

    ``floor``: the run's ``data.projection_floor`` unless given (a number, ``"data"`` or
    None); ``"data"`` takes ``floor_max``, the largest floor that changes no training image
    (:func:`radiodiff.data.projection.largest_kept_floor`). ``islands``: the run's
    ``data.projection_islands`` unless given (a mapping of
    :class:`radiodiff.data.islands.IslandModel` fields, or None).
    """
    from_run = isinstance(floor, str) and floor == FROM_RUN
    floor = check_floor(data_cfg.get("projection_floor") if from_run else floor,
                        "data.projection_floor" if from_run else "projection floor",
                        data_ok=True)
    if floor == DATA_FLOOR:
        if floor_max is None:
            raise ValueError("projection floor 'data': the checkpoint records no floor "
                             "measured on its training images (a run before it did); pass "
                             "the prepared file it trained on with --data")
        floor = float(floor_max)
    from_run = isinstance(islands, str) and islands == FROM_RUN
    return projection_dict(ProjectionConfig(
        floor=floor, halo_px=check_halo(data_cfg.get("projection_halo_px", HALO),
                                        "data.projection_halo_px"),
        peak_one=scaling == "per_image" and negatives != "keep",
        islands=islands_from(data_cfg.get("projection_islands") if from_run else islands,
                             "data.projection_islands" if from_run else "projection islands")))


def _floor_max(ds: dict, cfg, hp: dict, ckpt_path: Path, data, floor: Any) -> float | None:
    """The run's recorded ``projection_floor_max``, else (when the floor is ``"data"`` and
    ``data`` is given) measured on the training rows of ``data``."""
    wanted = cfg.data.get("projection_floor") if floor == FROM_RUN else floor
    if ds.get("projection_floor_max") is not None or wanted != DATA_FLOOR or data is None:
        return ds.get("projection_floor_max")
    from radiodiff.data.projection import read_kept_floor
    _, rows = training_rows(data, cfg, hp, ckpt_path)
    return read_kept_floor(data, rows, int(cfg.data.get("projection_halo_px", HALO)))
