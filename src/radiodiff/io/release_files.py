"""Release folders as files: names, ``meta.json`` types, safetensors weights, hashes, where
the shipped releases are.

After diffusers' ``save_pretrained`` / ``from_pretrained`` and k-diffusion's safetensors
export. A release folder holds (``FORMAT_VERSION`` 1)::

    <release>/
        config.yaml          the resolved run config (``model`` rebuilds the network)
        model.safetensors    EDMDenoiser state_dict (EMA weights), string metadata:
                             radiodiff_format_version, model_name, format = "pt"
        meta.json            classes, scalar_conditions, condition_transform, sigma_data,
                             image_size, image_unit, pixel_scale_arcsec, beam_arcsec,
                             scaling, negatives, provenance (data_sha256, inputs_sha256,
                             git_commit, package_version, seed, images_seen, step,
                             created_utc), format_version, train_conditions (the
                             table's file name, rows and columns, or null)
        train_conditions.csv optional: the training rows' conditions (label index and the
                             scalar conditions in physical units, one row per training
                             image, :class:`~radiodiff.diffusion.condition_table.ConditionTable`),
                             the distribution :func:`~radiodiff.pipeline.generate.generate`
                             draws unset conditions from
        SHA256SUMS           SHA-256 of the files above (``sha256sum -c`` format),
                             checked by :func:`~radiodiff.pipeline.release.load_release`
        refiner/             optional: the faint-end refiner, a release folder itself
                             (:mod:`radiodiff.pipeline.refine`); ``meta.json``'s
                             ``refine`` holds its sigma, steps, sampler, the SHA-256 of
                             its weights (so the pair is checked as one) and the final
                             output projection (older pairs: in ``refiner/meta.json``;
                             :mod:`radiodiff.pipeline.spec`)

This module reads and writes those files and nothing more: it builds no network and knows
no diffusion or data rule (those checks of ``meta.json``, and the :class:`Release` object,
are :mod:`radiodiff.pipeline.release`'s). The weights are read with ``safetensors`` (never
``torch.load``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from radiodiff.io.artifacts import atomic_write, write_manifest
from radiodiff.io.integrity import IntegrityError
from radiodiff.io.provenance import LOCAL_PATH, is_local_path, release_config_yaml

__all__ = ["FORMAT_VERSION", "CONFIG_FILE", "WEIGHTS_FILE", "META_FILE", "TABLE_FILE",
           "REFINER_DIR", "FILES", "DEFAULT_MODEL", "LOCAL_PATH", "is_local_path",
           "REQUIRED_KEYS", "PROVENANCE_KEYS", "IMAGE_UNITS", "SCALINGS", "read_meta",
           "read_weights", "write_weights", "release_config_yaml", "seal_release",
           "models_dir", "resolve_model"]

FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
REFINER_DIR = "refiner"  # optional: the faint-end refiner (a release), see meta "refine"
TABLE_FILE = "train_conditions.csv"  # optional (releases before it, class-only models/first)
FILES = (CONFIG_FILE, WEIGHTS_FILE, META_FILE)  # hashed in SHA256SUMS, with TABLE_FILE

# Keys the loader needs to rebuild the model and to write science output.
REQUIRED_KEYS = ("classes", "scalar_conditions", "condition_transform", "image_size")
PROVENANCE_KEYS = ("data_sha256", "inputs_sha256", "git_commit", "package_version", "seed",
                   "images_seen", "step", "created_utc")
IMAGE_UNITS = ("Jy/beam", "arbitrary")
DEFAULT_MODEL = "first"  # the shipped default: models/first (radiodiff/models/first in a wheel)
SCALINGS = ("per_image", "dataset")


# --------------------------------------------------------------------------- meta.json

def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# meta.json key -> (test, what it must be); absent optional keys are not tested.
_META_TYPES = {
    "classes": (_is_strs, "a list of class names"),
    "scalar_conditions": (_is_strs, "a list of condition names"),
    "condition_transform": (lambda v: isinstance(v, dict), "an object"),
    "image_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096,
                   "an integer in [1, 4096]"),
    "sigma_data": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
    "model_args": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "image_unit": (lambda v: v in IMAGE_UNITS, f"one of {list(IMAGE_UNITS)}"),
    "scaling": (lambda v: v in SCALINGS, f"one of {list(SCALINGS)}"),
    "pixel_scale_arcsec": (lambda v: v is None or (_is_num(v) and v > 0),
                           "a number > 0 or null"),
    "beam_arcsec": (lambda v: v is None or (isinstance(v, list) and len(v) == 2
                                            and all(_is_num(x) and x > 0 for x in v)),
                    "[bmaj, bmin] in arcsec or null"),
    "train_conditions": (lambda v: v is None or (
        isinstance(v, dict) and v.get("file") == TABLE_FILE and _is_strs(v.get("columns"))
        and isinstance(v.get("rows"), int) and not isinstance(v.get("rows"), bool)),
        f"null or {{file: {TABLE_FILE}, rows, columns}}"),
}


def _meta_type_errors(meta: Mapping[str, Any]) -> list[str]:
    """``"key=value: must be ..."`` for each value of ``meta`` of the wrong type (the one
    type rule of release metadata; :func:`read_meta` refuses such a release)."""
    bad = []
    for key, (ok, what) in _META_TYPES.items():
        if key in meta and not ok(meta[key]):
            bad.append(f"{key}={str(meta[key])[:40]!s} must be {what}")
    return bad


def read_meta(path: Path) -> dict:
    """``meta.json`` of the release folder ``path``: JSON object, format version, required
    keys and value types checked (one ValueError naming the folder; a wrong type is an
    :class:`~radiodiff.io.integrity.IntegrityError`)."""
    file = path / META_FILE
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {META_FILE} is not readable JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: {META_FILE} must hold a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported release format_version {version!r} in "
                         f"{META_FILE} (this radiodiff reads {FORMAT_VERSION})")
    missing = [k for k in REQUIRED_KEYS + ("sigma_data",) if k not in meta]
    if missing:
        raise ValueError(f"{path}: {META_FILE} is missing {missing}")
    bad = _meta_type_errors(meta)
    if bad:
        raise IntegrityError(f"{path}: {META_FILE} has values of the wrong type or range: "
                             f"{'; '.join(bad)} (re-export the release)")
    return meta


# --------------------------------------------------------------------------- weights

def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict in ``model.safetensors`` and the file's SHA-256 (never unpickles)."""
    from safetensors import safe_open
    from safetensors.torch import load

    file = path / WEIGHTS_FILE
    data = file.read_bytes()
    try:
        state = load(data)
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # SafetensorError, OSError, ... : all mean "not usable"
        raise ValueError(f"{path}: {WEIGHTS_FILE} is corrupt or not a safetensors file "
                         f"({exc})") from exc
    version = metadata.get("radiodiff_format_version")
    if version != str(FORMAT_VERSION):
        raise ValueError(f"{path}: unsupported weights format version {version!r} in "
                         f"{WEIGHTS_FILE} (this radiodiff reads {FORMAT_VERSION})")
    return state, hashlib.sha256(data).hexdigest()


def write_weights(folder: Path, state: Mapping[str, torch.Tensor], model_name: str) -> Path:
    """Write ``folder/model.safetensors`` (string metadata ``format``,
    ``radiodiff_format_version``, ``model_name``) through
    :func:`~radiodiff.io.artifacts.atomic_write`: a full disk names the file (safetensors'
    error does not)."""
    from safetensors.torch import save_file

    metadata = {"format": "pt", "radiodiff_format_version": str(FORMAT_VERSION),
                "model_name": model_name}
    return atomic_write(folder / WEIGHTS_FILE,
                        lambda p: save_file(dict(state), str(p), metadata=metadata))


# --------------------------------------------------------------------------- hashes, places

def seal_release(path: str | Path) -> Path:
    """(Re)write the ``SHA256SUMS`` of a release folder from its files as they are now,
    e.g. for a release written before the manifest existed (``models/first``); the
    files themselves are not touched (``train_conditions.csv`` is listed when present).
    Returns the manifest's path."""
    path = Path(path)
    missing = [n for n in FILES if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a release folder, {missing} missing")
    return write_manifest(path, FILES + (((TABLE_FILE,) if (path / TABLE_FILE).is_file()
                                          else ())))


def models_dir() -> Path:
    """Folder of the shipped releases: ``$RADIODIFF_MODELS``, the wheel copy, or the repo's
    ``models/``."""
    env = os.environ.get("RADIODIFF_MODELS")
    here = Path(__file__).resolve()
    candidates = ([Path(env)] if env else []) + [here.parents[1] / "models",  # installed wheel
                                                 here.parents[3] / "models"]  # source tree
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def resolve_model(model: str | Path | None = None) -> Path:
    """Path of a release folder, a training checkpoint, or a shipped model's name.

    ``None`` gives the built-in default (:data:`DEFAULT_MODEL`); an existing path is
    returned as it is; otherwise a bare name (``first``) is looked up in :func:`models_dir`.

    Raises
    ------
    FileNotFoundError
        Neither a path nor a shipped model; the message lists the shipped ones.
    """
    if model is None:
        model = DEFAULT_MODEL
    path = Path(model)
    if path.exists():
        return path
    root = models_dir()
    if len(path.parts) == 1 and (root / path.name / WEIGHTS_FILE).is_file():
        return root / path.name
    shipped = sorted(p.name for p in root.glob("*") if (p / WEIGHTS_FILE).is_file()) \
        if root.is_dir() else []
    raise FileNotFoundError(f"{model}: no such release folder, checkpoint or shipped model "
                            f"(shipped in {root}: {', '.join(shipped) or 'none'})")
