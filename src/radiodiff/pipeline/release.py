"""The release as a pipeline: a loaded release folder (:class:`Release`) and its checks.

A release folder (its files: :mod:`radiodiff.io.release_files`) describes how an image is
drawn: the base network, an optional faint-end refiner (``refiner/``,
:mod:`radiodiff.pipeline.refine`), the output projection (``meta.json`` ``projection``:
floor, halo, noise islands; :mod:`radiodiff.data.projection`), the restoration to
physical units and the recommended sampler; ``Release.pipeline``
(:class:`~radiodiff.pipeline.spec.PipelineSpec`) is that description, typed and checked
once. :func:`load_release` rebuilds the network by
:func:`radiodiff.diffusion.factory.build_denoiser` from ``model_args`` in ``meta.json``
and loads its safetensors weights (nothing is unpickled); :func:`export_release` writes
one; :func:`radiodiff.pipeline.generate.generate` runs it (:mod:`radiodiff.pipeline.run`).

The folder is written under a temporary name and renamed, so a reader never sees a
half-written release and a failed export leaves an older one untouched; a release is
recognised as one by ``meta.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from radiodiff.data.projection import projection_dict, projection_from
from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.diffusion.intensity import IntensityTransform
from radiodiff.io.artifacts import artifact_dir, hard_link, to_plain, write_manifest
from radiodiff.io.integrity import (MANIFEST, IntegrityError, check_finite, read_manifest,
                                    sha256_file, verify_file)
from radiodiff.io.provenance import git_commit
from radiodiff.io.release_files import (CONFIG_FILE, FILES, FORMAT_VERSION, IMAGE_UNITS,
                                        META_FILE, PROVENANCE_KEYS, REFINER_DIR,
                                        REQUIRED_KEYS, SCALINGS, TABLE_FILE, WEIGHTS_FILE,
                                        read_meta, read_weights, release_config_yaml,
                                        write_weights)
from radiodiff.io.trust import note_untrusted, verify_release
from radiodiff.pipeline.refine import RefineSpec
from radiodiff.pipeline.spec import SAMPLER_KEYS, PipelineSpec, recommended_spec, refine_entry

__all__ = ["Release", "attach_refiner", "export_release", "load_release",
           "recommend_sampler", "recommended_spec", "SAMPLER_KEYS"]


@dataclass
class Release:
    """A loaded release folder.

    Attributes
    ----------
    denoiser : EDMDenoiser
        The preconditioned denoiser ``D(x, sigma, cond)``, on the CPU, in eval mode.
    meta : dict
        Contents of ``meta.json`` (see :mod:`radiodiff.io.release_files`).
    config : omegaconf.DictConfig
        The resolved run config from ``config.yaml``.
    transform : ConditionTransform
        Physical condition values (Jy/beam, arcsec) <-> normalised network inputs.
    path : pathlib.Path
        The release folder.
    weights_sha256 : str
        SHA-256 of ``model.safetensors`` as loaded (provenance of generated samples).
    train_conditions : ConditionTable or None
        The training rows' conditions (``train_conditions.csv``); None when the release
        has none.
    refiner : Release or None
        The faint-end refiner in ``refiner/`` (:mod:`radiodiff.pipeline.refine`), when
        ``meta.json`` records one.
    pipeline : PipelineSpec
        How it draws an image (:mod:`radiodiff.pipeline.spec`): recommended sampler, base
        projection, refinement, final output projection, restoration; built and
        validated once from ``meta`` (and the refiner's, for releases that kept the final
        projection there) when the Release is made.
    """
    denoiser: EDMDenoiser
    meta: dict
    config: DictConfig
    transform: Any
    path: Path
    weights_sha256: str = field(default="")
    train_conditions: Any = None
    refiner: Any = None
    pipeline: PipelineSpec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pipeline = PipelineSpec.from_meta(
            self.meta, None if self.refiner is None else self.refiner.meta, self.path)

    @property
    def refine(self) -> RefineSpec | None:
        """The :class:`~radiodiff.pipeline.refine.RefineSpec` of the refiner, or None."""
        return self.pipeline.refine

    @property
    def sampler(self):
        """The release's recommended :class:`~radiodiff.diffusion.sampling.SamplerSpec`
        (meta ``sampler``: the setting its quoted numbers are for), or the package default
        for a release that records none."""
        return self.pipeline.sampler

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def scalar_conditions(self) -> list[str]:
        return list(self.meta["scalar_conditions"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def projection(self) -> dict | None:
        """The base network's output projection as ``meta.json`` records it (a dict) or
        None; the final one, after a refiner, is ``pipeline.projection``."""
        return self.meta.get("projection")

    @property
    def intensity(self) -> IntensityTransform:
        """Model space -> data space (releases before this field: identity)."""
        return IntensityTransform.from_dict(self.meta.get("intensity"))

    def pixel_scale(self, las_arcsec: float = math.nan) -> float | None:
        """Pixel scale (arcsec) of an image generated with the LAS condition ``las_arcsec``.

        Catalogue + field data (``data.source`` mirabest or lotss) were cut out with a side
        of ``max(k_las * LAS, min_size_arcsec)``
        (:func:`~radiodiff.data.preprocess.cutout_side_arcsec`) resized to ``image_size``
        pixels: an image of LAS ``L`` has pixels of that side / ``image_size`` (the
        training cutouts', to within the field pixel that ``Cutout2D`` rounds to).
        Otherwise (fixed-size cutouts such as FIRST's, a model without the LAS condition,
        or no LAS) the release's ``pixel_scale_arcsec`` (the training set's median; None
        when unknown).
        """
        from radiodiff.data.preprocess import cutout_side_arcsec
        from radiodiff.data.sources import LAS_CUTOUT_SOURCES

        base = self.meta.get("pixel_scale_arcsec")
        cfg = self.config if isinstance(self.config, DictConfig) else OmegaConf.create(
            self.config or {})
        source = OmegaConf.select(cfg, "data.source", default=None)
        cutout = OmegaConf.select(cfg, "data.cutout", default=None)
        las = float(las_arcsec)
        if not (math.isfinite(las) and las > 0 and "las_arcsec" in self.scalar_conditions
                and str(getattr(source, "value", source)) in LAS_CUTOUT_SOURCES
                and cutout is not None):
            return base
        side = cutout_side_arcsec(las, float(cutout.k_las), float(cutout.min_size_arcsec))
        return float(side) / self.image_size


# --------------------------------------------------------------------------- export

def _unwrap(denoiser: nn.Module) -> nn.Module:
    """The plain module behind ``torch.compile`` (its state_dict keys carry ``_orig_mod.``)."""
    return getattr(denoiser, "_orig_mod", denoiser)


def _release_meta(denoiser: nn.Module, config: DictConfig, meta: Mapping[str, Any]) -> dict:
    """``meta`` completed (sigma_data, provenance defaults) and validated."""
    m = dict(meta)
    if hasattr(m.get("condition_transform"), "to_dict"):
        m["condition_transform"] = m["condition_transform"].to_dict()
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise ValueError(f"export_release: meta is missing {missing}")
    sd = float(denoiser.sigma_data) if hasattr(denoiser, "sigma_data") else None
    if m.get("sigma_data") is None:
        if sd is None:
            raise ValueError("export_release: meta has no sigma_data and the denoiser none")
        m["sigma_data"] = sd
    elif sd is not None and not math.isclose(float(m["sigma_data"]), sd, rel_tol=1e-9):
        raise ValueError(f"export_release: meta sigma_data={m['sigma_data']} differs from the "
                         f"denoiser's sigma_data={sd}")
    m["intensity"] = IntensityTransform.from_dict(m.get("intensity")).to_dict()  # validates
    m["projection"] = _check_projection(m.get("projection"), "export_release")
    m.setdefault("image_unit", "arbitrary")
    m.setdefault("scaling", "per_image")
    m.setdefault("pixel_scale_arcsec", None)
    m.setdefault("beam_arcsec", None)
    if m["image_unit"] not in IMAGE_UNITS:
        raise ValueError(f"export_release: image_unit must be one of {list(IMAGE_UNITS)}, "
                         f"got {m['image_unit']!r}")
    scaling = to_plain(m["scaling"])
    if scaling not in SCALINGS:
        raise ValueError(f"export_release: scaling must be one of {list(SCALINGS)}, "
                         f"got {m['scaling']!r}")
    if m["beam_arcsec"] is not None and len(m["beam_arcsec"]) != 2:
        raise ValueError(f"export_release: beam_arcsec must be [bmaj, bmin], "
                         f"got {m['beam_arcsec']}")
    if not isinstance(m["image_size"], (int, np.integer)) or m["image_size"] < 1:
        raise ValueError(f"export_release: image_size must be a positive int, "
                         f"got {m['image_size']!r}")
    for key in PROVENANCE_KEYS:
        m.setdefault(key, None)
    if m["git_commit"] is None:
        m["git_commit"] = git_commit()
    if m["package_version"] is None:
        import radiodiff
        m["package_version"] = radiodiff.__version__
    if m["created_utc"] is None:
        m["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    m["model_name"] = str(OmegaConf.select(config, "model.name", default="unknown"))
    m["format_version"] = FORMAT_VERSION
    return to_plain(m)


def _table_entry(table: Any, classes: list, scalars: list, where: str) -> dict | None:
    """``meta.json``'s record of a condition table (None: no table), after checking that
    the table has exactly the release's conditions (the one rule, at export and load)."""
    if table is None:
        return None
    want = (["label"] if classes else []) + list(scalars)
    if sorted(table.names) != sorted(want):
        raise IntegrityError(f"{where}: the training-condition table has columns "
                             f"{list(table.names)}, the model takes {want}")
    if "label" in table.columns and int(table.columns["label"].max()) >= len(classes):
        raise IntegrityError(f"{where}: the training-condition table holds label "
                             f"{int(table.columns['label'].max())}, beyond the "
                             f"{len(classes)} classes {classes}")
    return {"file": TABLE_FILE, "rows": len(table), "columns": list(table.names)}


def export_release(out_dir: str | Path, denoiser: nn.Module, config: DictConfig | Mapping,
                   meta: Mapping[str, Any], overwrite: bool = False,
                   train_conditions: Any = None, fresh: bool = False) -> Path:
    """Write a release folder (``config.yaml``, ``model.safetensors``, ``meta.json``, and
    ``train_conditions.csv`` when given a table).

    The folder is written by :func:`radiodiff.io.artifacts.artifact_dir`: assembled as
    ``.rdtmp-<pid>@<host>-<name>`` beside ``out_dir`` and renamed into place; an existing release
    at ``out_dir`` is replaced (with ``overwrite`` only) once the new one is complete. A
    non-empty folder that is not a release, or a file, is never touched (``OutputError``).
    Replacing keeps what the last export did not write (its ``SHA256SUMS`` lists what it
    did): the model card, ``refiner/`` (still the release's refiner, ``meta.json``'s
    ``refine`` carried over, when it fits the new model; else refused), anything else.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        The release folder to create or replace.
    denoiser : torch.nn.Module
        The :class:`EDMDenoiser` to save, normally holding the EMA weights; a
        ``torch.compile`` wrapper is unwrapped.
    config : omegaconf.DictConfig or mapping
        The run config; saved resolved. ``config.model`` must rebuild the network.
    meta : mapping
        ``classes`` (list of str), ``scalar_conditions`` (list of str),
        ``condition_transform`` (``ConditionTransform`` or its ``to_dict()``),
        ``image_size`` (pixels); optional: ``sigma_data`` (default: the denoiser's),
        ``image_unit`` ("Jy/beam" or "arbitrary"), ``pixel_scale_arcsec``,
        ``beam_arcsec`` ([bmaj, bmin] arcsec), ``scaling`` ("per_image" or "dataset"),
        ``negatives``, and provenance ``data_sha256``, ``inputs_sha256``, ``git_commit``,
        ``package_version``, ``seed``, ``images_seen``, ``step``, ``created_utc`` (the last
        three filled in when absent). Any extra JSON-serialisable keys are kept.
    overwrite : bool
        Replace an existing release at ``out_dir`` (else :class:`OutputError`).
    fresh : bool
        Replace the whole folder at ``out_dir`` (implies ``overwrite``): its refiner, model
        card and anything else in it go too.
    train_conditions : ConditionTable, optional
        The training rows' conditions, written as ``train_conditions.csv`` (recorded in
        ``meta.json`` and ``SHA256SUMS``); its columns must be the model's conditions.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    module = _unwrap(denoiser)
    cfg = config if isinstance(config, DictConfig) else OmegaConf.create(to_plain(config))
    if OmegaConf.select(cfg, "model") is None:
        raise ValueError("export_release: config has no `model` section to rebuild the network")
    m = _release_meta(module, cfg, meta)
    m["train_conditions"] = _table_entry(train_conditions, m["classes"],
                                         m["scalar_conditions"], f"export_release {out_dir}")
    names = FILES + ((TABLE_FILE,) if train_conditions is not None else ())
    # Clones: safetensors refuses tensors sharing storage and non-contiguous views.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    check_finite(state, f"export_release {out_dir}", "nothing written: the weights are "
                 "broken (a diverged run or a corrupt checkpoint)")

    with artifact_dir(out_dir, "release", overwrite, fresh=fresh) as tmp:
        kept = _kept_refine(out_dir, m) if overwrite and not fresh else None
        if kept is not None:  # the refiner/ that stays is still this release's refiner
            m["refine"] = kept
        sampler = _kept_sampler(out_dir) if overwrite and not fresh else None
        if sampler is not None:  # the recommendation stays with the model card that quotes it
            m["sampler"] = sampler
        (tmp / CONFIG_FILE).write_text(release_config_yaml(cfg))
        write_weights(tmp, state, m["model_name"])
        (tmp / META_FILE).write_text(json.dumps(m, indent=2, allow_nan=False) + "\n")
        if train_conditions is not None:
            (tmp / TABLE_FILE).write_text(train_conditions.to_csv(), encoding="utf-8")
        write_manifest(tmp, names)
        for name in names:
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
    return out_dir


# --------------------------------------------------------------------------- load

def _read_meta(path: Path) -> dict:
    """``meta.json`` (:func:`radiodiff.io.release_files.read_meta`: format, keys, types) with
    its ``intensity`` checked (the pipeline entries: :class:`PipelineSpec`)."""
    meta = read_meta(path)
    try:
        IntensityTransform.from_dict(meta.get("intensity"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {META_FILE} has a bad `intensity` ({exc})") from exc
    return meta


def _check_projection(p: Any, where: str) -> dict | None:
    """A release's meta ``projection``, validated by the one rule
    (:func:`radiodiff.data.projection.projection_from`), in its meta form."""
    return projection_dict(projection_from(p, where))


def _read_table(path: Path, meta: Mapping[str, Any]):
    """The release's :class:`ConditionTable` when ``meta.json`` records one, else None;
    checked against ``SHA256SUMS`` (where there is one, it must list the table)."""
    from radiodiff.diffusion.condition_table import ConditionTable

    entry = meta.get("train_conditions")
    if not entry:
        return None
    file = path / TABLE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: {META_FILE} records {TABLE_FILE} but it is "
                                "missing; re-export or re-download the release")
    manifest = read_manifest(path)
    if manifest is not None and TABLE_FILE not in manifest:
        raise IntegrityError(f"{file}: not listed in {MANIFEST}; re-export the release")
    verify_file(file, f"release file {TABLE_FILE}", "re-export or re-download the release")
    try:
        table = ConditionTable.from_csv(file.read_text(encoding="utf-8"), str(file))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc})") from exc
    if len(table) != entry["rows"]:
        raise IntegrityError(f"{file}: {len(table)} rows, {META_FILE} records "
                             f"{entry['rows']}; re-export the release")
    _table_entry(table, list(meta["classes"]), list(meta["scalar_conditions"]), str(file))
    return table


def load_release(path: str | Path) -> Release:
    """Load a release folder written by :func:`export_release`.

    The denoiser is rebuilt by :func:`radiodiff.diffusion.factory.build_denoiser` from the
    meta's ``model_args`` (older releases: derived from ``config.model``) and its weights
    are loaded from safetensors with ``strict=True``. Nothing is unpickled. The global torch
    RNG is left as it was (the network's random initialisation runs on a forked RNG).

    Parameters
    ----------
    path : str or pathlib.Path
        The release folder.

    Returns
    -------
    Release
        With the denoiser on the CPU in eval mode.

    Raises
    ------
    FileNotFoundError
        The folder or one of its files is missing.
    ValueError
        A file is corrupt, the format version is unsupported, or the weights do not fit
        the network described by the config (the message names the folder). Among them
        :class:`~radiodiff.io.integrity.IntegrityError`: a file does not match its
        SHA-256 in ``SHA256SUMS``, or is not listed in it (releases without one are not
        checked), the weights
        hold NaN or inf, or a ``meta.json`` value has the wrong type, or
        ``train_conditions.csv`` (when ``meta.json`` records one) is unlisted, changed or
        does not hold the model's conditions.
    """
    from radiodiff.diffusion.conditions import ConditionTransform
    from radiodiff.diffusion.factory import build_denoiser, network_args

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: model release folder not found")
    for name in (CONFIG_FILE, WEIGHTS_FILE, META_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: not a release folder, {name} is missing")
    manifest = read_manifest(path)
    unlisted = [n for n in FILES if manifest is not None and n not in manifest]
    if unlisted:  # a manifest that leaves a file out would leave it unchecked
        raise IntegrityError(f"{path}: {', '.join(unlisted)} not listed in {MANIFEST} (edited "
                             "or of another folder); re-export or re-download the release")
    for name in FILES:
        verify_file(path / name, f"release file {name}",
                    f"re-export or re-download the release (or delete {MANIFEST} to skip "
                    "this check at your own risk)")
    meta = _read_meta(path)
    table = _read_table(path, meta)
    try:
        config = OmegaConf.load(path / CONFIG_FILE)
    except Exception as exc:
        raise ValueError(f"{path}: {CONFIG_FILE} is not readable YAML ({exc})") from exc
    if not isinstance(config, DictConfig) or OmegaConf.select(config, "model") is None:
        raise ValueError(f"{path}: {CONFIG_FILE} has no `model` section")
    state, sha = read_weights(path)
    if manifest is not None and sha != manifest[WEIGHTS_FILE]:  # changed since it was checked
        raise IntegrityError(f"{path}: {WEIGHTS_FILE} changed while it was being loaded (its "
                             f"SHA-256 no longer matches {MANIFEST}); load it again")
    check_finite(state, f"{path}: {WEIGHTS_FILE}", "the release is unusable: re-export it "
                 "from a good checkpoint")
    try:
        transform = ConditionTransform.from_dict(meta["condition_transform"])
        args = meta.get("model_args") or network_args(  # releases before model_args
            config.model, int(meta["image_size"]), len(meta["classes"]),
            meta["scalar_conditions"])
        with torch.random.fork_rng(devices=[]):
            denoiser = build_denoiser(args, float(meta["sigma_data"]))
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: cannot rebuild the model from {CONFIG_FILE} and "
                         f"{META_FILE} ({exc})") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: cannot rebuild the model ({exc})") from exc
    try:
        denoiser.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{path}: {WEIGHTS_FILE} does not match the network in "
                         f"{CONFIG_FILE} ({detail[:500]})") from exc
    denoiser.eval()
    refiner = None if meta.get("refine") is None else _load_refiner(path, meta)
    release = Release(denoiser=denoiser, meta=meta, config=config, transform=transform,
                      path=path, weights_sha256=sha, train_conditions=table,
                      refiner=refiner)  # and its pipeline, checked
    note_untrusted(path)  # one warning line when it is not a shipped release, unchanged
    return release


def _load_refiner(path: Path, meta: Mapping[str, Any]) -> Release:
    """The refiner in ``<path>/refiner/``: a release itself (checked as one), whose weights
    must be those ``meta["refine"]`` names and whose conditions must be the base's."""
    spec = RefineSpec.from_dict(meta["refine"], f"{path}: refine")
    folder = path / REFINER_DIR
    refiner = load_release(folder)
    if refiner.weights_sha256 != meta["refine"].get("weights_sha256"):
        raise IntegrityError(f"{folder}: {WEIGHTS_FILE} is not the refiner "
                             f"{path / META_FILE} records (SHA-256 differs); "
                             "re-attach it with radiodiff.pipeline.release.attach_refiner")
    _check_pair(meta, refiner, spec, path)
    return refiner


def _check_pair(base_meta: Mapping[str, Any], refiner: Release, spec: RefineSpec,
                where: Path) -> None:
    """The one rule for a base + refiner pair: same conditions and size, a refiner without
    a refiner, and the refine sigma within the refiner's sampling range."""
    if refiner.meta.get("refine") is not None:
        raise ValueError(f"{refiner.path}: a refiner cannot have a refiner of its own")
    for key in ("classes", "scalar_conditions", "image_size"):
        if refiner.meta[key] != base_meta[key]:
            raise ValueError(f"{refiner.path}: its {key} {refiner.meta[key]!r} differ from "
                             f"the base release's {base_meta[key]!r} ({where})")
    top = float(OmegaConf.select(refiner.config, "sampler.sigma_max", default=80.0))
    if spec.sigma > top:
        raise ValueError(f"{where}: refine sigma {spec.sigma} is above the refiner's "
                         f"sigma_max {top}")


def _kept_refine(out_dir: Path, meta: Mapping[str, Any]) -> dict | None:
    """``meta.json``'s ``refine`` of the release being replaced at ``out_dir``, whose
    ``refiner/`` stays (an export without ``fresh``); the pair must fit the new model."""
    if not (out_dir / REFINER_DIR / META_FILE).is_file():
        return None
    try:
        old = _read_meta(out_dir).get("refine")
    except ValueError:
        return None  # an unreadable old meta.json: the refiner stays, not attached
    if old is None:
        return None
    try:
        refiner = load_release(out_dir / REFINER_DIR)
        if not isinstance(old, dict) or refiner.weights_sha256 != old.get("weights_sha256"):
            raise ValueError("meta.json's refine entry does not name its weights")
        spec = RefineSpec.from_dict(old, f"{out_dir}: refine")
        _check_pair(meta, refiner, spec, out_dir)
    except ValueError as exc:
        raise ValueError(f"{out_dir}: its {REFINER_DIR}/ would stay but does not fit the new "
                         f"model ({' '.join(str(exc).split())[:200]}); give --fresh to "
                         "replace the whole release, or --out another folder") from exc
    if "projection" in old:
        return dict(old)
    final = refiner.pipeline.base_projection or projection_from(meta.get("projection"))
    return refine_entry(spec, old["weights_sha256"], final)  # the new form


def _kept_sampler(out_dir: Path) -> dict | None:
    """``meta.json``'s recommended ``sampler`` of the release being replaced at
    ``out_dir`` (an export without ``fresh``: its model card stays and quotes it); None
    when it has none or its meta.json is unreadable or the entry is bad."""
    if not (out_dir / META_FILE).is_file():
        return None
    try:
        old = _read_meta(out_dir)
        if old.get("sampler") is None:
            return None
        return asdict(recommended_spec(old, out_dir))
    except ValueError:
        return None


def attach_refiner(base_dir: str | Path, refiner_dir: str | Path, out_dir: str | Path,
                   sigma: float = RefineSpec.sigma, steps: int = RefineSpec.steps,
                   sampler: str = RefineSpec.sampler, rho: float = RefineSpec.rho,
                   overwrite: bool = False) -> Path:
    """Write ``out_dir``: the base release with ``refiner_dir`` as its faint-end refiner.

    The base folder is copied (its model card and any other files with it), its
    ``meta.json`` gains ``refine = {sigma, steps, sampler, rho, weights_sha256,
    projection}`` (:class:`~radiodiff.pipeline.refine.RefineSpec`, the refiner's weights and
    the final output projection: the refiner's own, else the base's;
    :func:`~radiodiff.pipeline.spec.refine_entry`), the refiner release is copied to
    ``refiner/``, and the manifest is rewritten.
    Both inputs are loaded (and so checked) first; the output is written atomically
    (``out_dir`` may be ``base_dir`` with ``overwrite``). Returns ``out_dir``.
    """
    import shutil

    base, refiner = load_release(base_dir), load_release(refiner_dir)
    spec = RefineSpec.from_dict(dict(sigma=sigma, steps=steps, sampler=sampler, rho=rho),
                                f"attach_refiner {out_dir}")
    _check_pair(base.meta, refiner, spec, Path(out_dir))
    final = refiner.pipeline.base_projection or base.pipeline.base_projection
    meta = dict(base.meta, refine=refine_entry(spec, refiner.weights_sha256, final))
    names = [n for n in FILES + (TABLE_FILE,) if (base.path / n).is_file()]
    with artifact_dir(out_dir, "release", overwrite) as tmp:
        for item in base.path.iterdir():  # the release files and anything beside them
            if item.name in (META_FILE, MANIFEST, REFINER_DIR) or item.name.startswith("."):
                continue
            copy = shutil.copytree if item.is_dir() else shutil.copy2
            copy(item, tmp / item.name)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
        (tmp / REFINER_DIR).mkdir()
        for name in [n for n in FILES + (TABLE_FILE, MANIFEST)
                     if (refiner.path / n).is_file()]:
            shutil.copy2(refiner.path / name, tmp / REFINER_DIR / name)
        write_manifest(tmp, names)
    load_release(out_dir)  # the pair as a reader will see it
    return Path(out_dir)


def recommend_sampler(release_dir: str | Path, spec, force: bool = False) -> Path:
    """Record ``spec`` (a SamplerSpec) as the release's recommended sampler: meta.json
    ``sampler`` (every field, so the release does not depend on the package's defaults).
    The release is loaded (and so checked) first, then rewritten as a whole folder
    (:func:`~radiodiff.io.artifacts.artifact_dir`: its other files hard-linked, meta.json
    and SHA256SUMS new, swapped in at once, so a crash never leaves them disagreeing),
    under its output lock; a release changed meanwhile (another export) is refused.
    ``sample``, ``demo``, ``evaluate``, ``skymap`` and ``generate()`` use it unless told
    otherwise. A ``refine`` entry is written in the current form (with the final
    projection: :func:`~radiodiff.pipeline.spec.refine_entry`). A shipped release as
    recorded (:func:`~radiodiff.io.trust.verify_release`), whose model card quotes numbers
    for its sampler, is changed only with ``force``."""
    import shutil

    release = load_release(release_dir)
    path = release.path.resolve()  # a linked release folder: the folder it names
    shipped = verify_release(path)
    if shipped.vouched and not force:
        raise ValueError(f"{release_dir}: the shipped release {shipped.name!r}, whose model "
                         "card quotes numbers for its recorded sampler; copy it (cp -r) and "
                         "recommend on the copy, or give --force")
    meta_sha = sha256_file(path / META_FILE)
    meta = dict(release.meta, sampler=asdict(spec))
    pipe = release.pipeline
    if pipe.refine is not None:  # an older pair gains its final projection here
        meta["refine"] = refine_entry(pipe.refine, pipe.refiner_sha256, pipe.projection)
    names = list(read_manifest(path) or [n for n in FILES + (TABLE_FILE,)
                                         if (path / n).is_file()])
    with artifact_dir(path, "release", overwrite=True) as tmp:
        if (sha256_file(path / WEIGHTS_FILE), sha256_file(path / META_FILE)) != (
                release.weights_sha256, meta_sha):
            raise ValueError(f"{path}: changed while its sampler was being recorded (another "
                             "export?); run the command again")
        for item in path.iterdir():  # the release files and anything beside them, linked
            if item.name in (META_FILE, MANIFEST) or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name, copy_function=hard_link)
            else:
                hard_link(item, tmp / item.name)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n",
                                     encoding="utf-8")
        write_manifest(tmp, [n for n in names if (tmp / n).is_file()])
    return path
