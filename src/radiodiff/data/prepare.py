"""Survey inputs -> one HDF5 file of model-ready cutouts with provenance.

cutout (physical units) -> quality cuts -> measurements -> NaN fill -> resize to N x N
-> negative policy -> scaling to [0, 1] (per image or per dataset) -> HDF5, written
atomically. Physical peak / total flux, LAS, beam and pixel scale are kept so later models
can condition on them and restore Jy/beam (``physical = image * scale + offset``).
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from omegaconf import DictConfig, OmegaConf

import radiodiff
from radiodiff.config import dotted_leaves
from radiodiff.io.artifacts import OutputError
from radiodiff.io.fits import InputError, parse_brightness_unit
from radiodiff.data.prepared import (FLAGS, FLOAT_COLUMNS, SPLITS, data_sha256, sha256_file,
                                     write_prepared)
from radiodiff.data.preprocess import (CUT_ORDER, apply_negatives, centre_on, fill_nan,
                                       first_reason, fit_scaling, measure, quality_flags,
                                       resize_image)
from radiodiff.data.projection import check_projection_config
from radiodiff.io.provenance import (LOCAL_PATH, git_commit, is_local_path, portable_path,
                                     release_config_yaml)
from radiodiff.data.sources import LAS_CUTOUT_SOURCES, CatalogError, Cutout, Source

__all__ = ["PrepareError", "PrepareSummary", "make_source", "prepare", "validate_data_config",
           "preparation_changes"]


class PrepareError(RuntimeError):
    """Preparation stopped; nothing was written."""


@dataclass
class PrepareSummary:
    name: str
    out: str
    n_in: int
    n_out: int
    removed: dict[str, int]   # reason -> sources not written
    flagged: dict[str, int]   # cut -> sources written with that flag (cuts.action=flag)
    splits: dict[str, int]
    seconds: float
    errors: list[str] = field(default_factory=list)  # first messages of skipped inputs
    duplicates: list[str] = field(default_factory=list)  # first duplicate rows found
    duplicates_policy: str = "drop"
    n_duplicates: int = 0

    def format(self) -> str:
        lines = [f"prepared {self.name}: {self.n_in} in, {self.n_out} out, "
                 f"{sum(self.removed.values())} removed, {self.seconds:.1f} s -> {self.out}"]
        lines.append("  splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items()))
        for title, counts in (("removed", self.removed), ("flagged", self.flagged)):
            for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {title} {reason}: {n}")
        if self.n_duplicates:
            done = "dropped" if self.duplicates_policy == "drop" else "kept"
            lines.append(f"  duplicate rows ({done}, data.duplicates={self.duplicates_policy}): "
                         f"{self.n_duplicates}")
            lines += [f"    {e}" for e in self.duplicates]
        if self.errors:
            lines.append("  first skipped inputs:")
            lines += [f"    {e}" for e in self.errors]
        return "\n".join(lines)


def _value(x) -> str:
    return str(getattr(x, "value", x))


MAX_LISTED = 20  # skipped inputs / duplicates named in the summary


def _describe(err: InputError) -> str:
    """One line: the file (and catalogue row), the problem and its counting key."""
    row = getattr(err, "row", None)
    at = f"row {row}, " if row is not None and f"row {row}" not in str(err) else ""
    return f"{err} [{at}{err.reason}]"


def _check_free_space(out: Path, n_rows: int, size: int) -> None:
    """Refuse to start when the output folder cannot hold n_rows x size^2 float32 images.

    h5py can crash outright (not raise) when the disk fills during a write, so the
    expected size is checked before any input is read.
    """
    need = n_rows * size * size * 4
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: the write itself still fails cleanly
    if free < need:
        raise PrepareError(f"{out}: not enough free disk space in {folder} "
                           f"({free / 2**20:.1f} MiB free, {need / 2**20:.1f} MiB needed for "
                           f"{n_rows} images of {size}x{size} float32); nothing written")


def _nonfinite(item: Cutout, meas: dict) -> str | None:
    """Why the noise or S/N of a cutout with a flux scale is unusable, else None."""
    if not (np.isfinite(item.rms) and item.rms > 0):
        return f"rms {item.rms!r} is not a positive finite number"
    if not np.isfinite(meas["snr"]):
        return f"S/N {meas['snr']!r} is not finite (peak {meas['peak_flux']!r})"
    return None


def validate_data_config(d: DictConfig) -> None:
    """Reject absurd options before any input is read."""
    problems = []
    if not 8 <= d.image_size <= 1024:
        problems.append(f"data.image_size={d.image_size} (must be 8..1024)")
    if d.cutout.k_las <= 0:
        problems.append(f"data.cutout.k_las={d.cutout.k_las} (must be > 0)")
    if d.cutout.min_size_arcsec < 0:
        problems.append(f"data.cutout.min_size_arcsec={d.cutout.min_size_arcsec} (must be >= 0)")
    if d.cutout.noise_box_factor < 1:
        problems.append(f"data.cutout.noise_box_factor={d.cutout.noise_box_factor} (must be >= 1)")
    if d.cuts.snr_min is not None and d.cuts.snr_min <= 0:
        problems.append(f"data.cuts.snr_min={d.cuts.snr_min} (must be > 0 or null)")
    if d.cuts.edge_max_frac is not None and not 0 < d.cuts.edge_max_frac <= 1:
        problems.append(f"data.cuts.edge_max_frac={d.cuts.edge_max_frac} (must be in (0, 1])")
    if d.limit is not None and d.limit < 1:
        problems.append(f"data.limit={d.limit} (must be >= 1 or null)")
    if d.beam_arcsec is not None and (len(d.beam_arcsec) != 2 or min(d.beam_arcsec) <= 0):
        problems.append(f"data.beam_arcsec={list(d.beam_arcsec)} (must be [bmaj, bmin] > 0)")
    try:
        check_projection_config(d)
    except ValueError as exc:
        problems.append(str(exc))
    assume = d.get("assume_bunit", None)
    try:
        if assume is not None:
            parse_brightness_unit(assume)
    except ValueError as exc:
        problems.append(f"data.assume_bunit={assume!r}: {str(exc).replace('BUNIT ', '', 1)}")
    if problems:
        raise ValueError("invalid data config: " + "; ".join(problems))


# Data options that do not change what `prepare` writes: the set's label, where it goes, how
# a run loads it, the release's output projection, the error policy, and the inputs' places
# (the file records their names and hashes).
_NOT_PREPARATION = ("name", "out", "loader", "on_error", "catalog", "fields_dir",
                    "projection_floor", "projection_halo_px", "projection_islands")


def preparation_changes(stored_yaml: str | None, d: DictConfig) -> list[str]:
    """The data options of ``d`` (dotted, as ``key=<prepared with> (now <value>)``) that
    differ from those a prepared file was made with (its ``config_yaml``), among the options
    that decide what `prepare` writes. An option one side lacks (an older file, a newer
    option) and a recorded ``<local path>`` are not compared."""
    if not stored_yaml:
        return []
    stored = OmegaConf.to_container(OmegaConf.create(stored_yaml)).get("data") or {}
    now = dotted_leaves(OmegaConf.to_container(d, resolve=True, enum_to_str=True))
    then = dotted_leaves(stored)
    return [f"data.{k}={then[k]} (now {now[k]})" for k in now
            if k in then and k.split(".")[0] not in _NOT_PREPARATION
            and LOCAL_PATH not in (then[k], now[k]) and then[k] != now[k]]


def make_source(data_cfg) -> Source:
    """The source named by ``data_cfg.source``."""
    kind = str(getattr(data_cfg.source, "value", data_cfg.source))
    if kind == "first":
        from radiodiff.data.first import FirstSource
        return FirstSource(data_cfg)
    if kind in LAS_CUTOUT_SOURCES:
        from radiodiff.data.catalog import CatalogSource
        return CatalogSource(data_cfg)
    raise ValueError(f"unknown data source {kind!r} (expected first, mirabest or lotss)")


def prepare(cfg: DictConfig, progress: Callable[[Iterable, int], Iterable] | None = None,
            out: str | Path | None = None) -> PrepareSummary:
    """Prepare ``cfg.data`` into ``cfg.data.out`` (or ``out``) and return the summary.

    ``progress(iterable, total)`` may wrap the loop over sources (a progress bar at the
    CLI edge). Raises :class:`PrepareError` (nothing written) when an input fails and
    ``data.on_error=stop``, or when no source survives.
    """
    t0 = time.perf_counter()
    d = cfg.data
    validate_data_config(d)
    out = Path(out or d.out)
    source = _open_source(d)
    _check_free_space(out, len(source), d.image_size)
    dropped = list(getattr(source, "dropped", []))
    dups = list(getattr(source, "duplicates", []))
    kept, removed, flagged, errors = _collect(source, d, progress, len(dropped))
    images, columns = _scaled(kept, d, physical=source.image_unit == "Jy/beam")
    roots = _input_roots(d)
    hashes = [(_named(f, roots), sha256_file(f)) for f in source.input_files()]
    summary = PrepareSummary(
        name=d.name, out=str(out), n_in=len(source) + len(dropped), n_out=len(kept),
        removed=dict(removed), flagged=dict(flagged), seconds=0.0, errors=errors,
        splits={s: int(np.sum(columns["split"] == s)) for s in SPLITS},
        duplicates=[str(x) for x in dups[:MAX_LISTED]], n_duplicates=len(dups),
        duplicates_policy=_value(d.duplicates))
    summary.seconds = round(time.perf_counter() - t0, 2)
    attrs = _attrs(cfg, source.image_unit, images, columns, hashes, summary, roots)
    _write(out, images, columns, attrs, hashes)
    summary.seconds = round(time.perf_counter() - t0, 2)
    return summary


def _open_source(d: DictConfig) -> Source:
    """:func:`make_source`, a missing or unreadable input raised as :class:`PrepareError`."""
    try:
        return make_source(d)
    except (CatalogError, FileNotFoundError, InputError) as exc:
        raise PrepareError(str(exc)) from exc


def _collect(source: Source, d: DictConfig,
             progress: Callable[[Iterable, int], Iterable] | None, n_dropped: int
             ) -> tuple[list[tuple[Cutout, np.ndarray, int, dict]], Counter, Counter, list[str]]:
    """Every source through :func:`_process`: the kept rows in catalogue order, the counts
    removed and flagged per reason, and the first skipped inputs.

    A failed input stops the run when ``data.on_error=stop``, else it is counted; so are
    the ``n_dropped`` duplicate rows the source left out.
    """
    physical = source.image_unit == "Jy/beam"
    stop = _value(d.on_error) in ("stop", "error")
    kept: list[tuple[Cutout, np.ndarray, int, dict]] = []
    removed, flagged, errors = Counter(), Counter(), []
    if n_dropped:
        removed["duplicate"] = n_dropped
    items = progress(source, len(source)) if progress else source
    for item in items:
        if not isinstance(item, InputError):
            item = _process(item, d, physical, removed, flagged, kept, errors)
        if isinstance(item, InputError):
            if stop:
                raise PrepareError(f"{_describe(item)} (data.on_error={_value(d.on_error)}: "
                                   "nothing written)") from item
            removed[item.reason] += 1
            if len(errors) < MAX_LISTED:
                errors.append(_describe(item))
    if not kept:
        raise PrepareError(f"data={d.name}: no source survived "
                           f"(removed: {dict(removed) or 'none'}); nothing written")
    kept.sort(key=lambda k: k[0].row)  # catalogue order whatever the reading order
    return kept, removed, flagged, errors


def _scaled(kept: list, d: DictConfig, physical: bool) -> tuple[np.ndarray, dict]:
    """The kept images scaled to [0, 1], shape (N, 1, n, n) float32, and their columns
    (``physical = image * scale + offset``)."""
    images = np.stack([k[1] for k in kept])[:, None]
    scale, offset = fit_scaling(images[:, 0], _value(d.scaling), _value(d.negatives))
    images = ((images - offset[:, None, None, None]) / scale[:, None, None, None])
    images = np.clip(images, 0.0, 1.0).astype(np.float32)  # float rounding only
    return images, _columns(kept, scale, offset, d.image_size, physical=physical)


def _input_roots(d: DictConfig) -> list[str]:
    """The absolute folders of the inputs (the fields folder, the catalogue's folder), as
    given and resolved, longest first: what the file records of them is relative."""
    roots = set()
    for value, is_folder in ((d.get("fields_dir"), True), (d.get("catalog"), False)):
        if value and is_local_path(str(value)):
            path = Path(str(value)).expanduser()
            path = path if is_folder else path.parent
            roots.update(str(p).rstrip("/") for p in (path, path.resolve()))
    return sorted((r for r in roots if len(r) > 1), key=len, reverse=True)


def _named(path: str | Path, roots: list[str]) -> str:
    """An input file as the prepared file names it: relative to the input folder holding it
    (``P003+03/mosaic-blanked.fits``), else :func:`portable_path` (a relative path as
    given, an absolute one by its name)."""
    text = str(path)
    for root in roots:
        if text.startswith(root + "/"):
            return text[len(root) + 1:]
    return portable_path(text)


def _scrubbed(text: str, roots: list[str]) -> str:
    """``text`` (a skipped input's message) with the input folders left out of its paths."""
    for root in roots:
        text = text.replace(root + "/", "")
    return text


def _attrs(cfg: DictConfig, image_unit: str, images: np.ndarray, columns: dict,
           hashes: list[tuple[str, str]], summary: PrepareSummary,
           roots: list[str] = ()) -> dict:
    """Provenance attributes of the prepared file: config, versions, hashes, summary (no
    folder of this machine: ``roots``, :func:`_input_roots`)."""
    d = cfg.data
    inputs_sha = hashlib.sha256("".join(h for _, h in hashes).encode()).hexdigest()
    return {
        "name": d.name, "source": _value(d.source), "classes": list(d.classes),
        "image_unit": image_unit, "negatives": _value(d.negatives),
        "scaling": _value(d.scaling), "config_yaml": release_config_yaml(cfg),
        "package_version": radiodiff.__version__, "git_commit": git_commit() or "",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs_sha256": inputs_sha, "data_sha256": data_sha256(images, columns),
        "seed": int(d.split.seed),
        "summary": {**asdict(summary), "out": portable_path(summary.out),
                    "errors": [_scrubbed(e, roots) for e in summary.errors]},
    }


def _write(out: Path, images: np.ndarray, columns: dict, attrs: dict,
           hashes: list[tuple[str, str]]) -> None:
    """:func:`write_prepared`, a failed write raised as :class:`PrepareError`."""
    try:
        write_prepared(out, images, columns, attrs, hashes)
    except (OSError, OutputError) as exc:  # ENOSPC, EDQUOT, EIO, a read-only folder...
        what = getattr(exc, "strerror", None) or errno.errorcode.get(
            getattr(exc, "errno", 0) or 0) or "no space left on device"
        raise PrepareError(f"{out}: cannot write the prepared file ({what}); nothing written, "
                           "any earlier file left as it was") from exc


def _process(item: Cutout, d: DictConfig, physical: bool, removed: Counter, flagged: Counter,
             kept: list, errors: list[str]) -> InputError | None:
    """Cuts, then the image pipeline, of one cutout: appends to ``kept`` or counts a cut.

    A failure of any kind is returned as that row's :class:`InputError`.
    """
    try:
        meas = measure(item.image, item.rms, item.pixel_scale_arcsec, item.beam_arcsec)
        flags = quality_flags(item.image, meas["snr"], d.cuts)
        if flags and _value(d.cuts.action) != "flag":
            removed[first_reason(flags)] += 1
            return None
        why = _nonfinite(item, meas) if physical and not flags else None
        if why:
            # Otherwise clean, yet no usable noise: a NaN S/N must not pass the S/N cut. A
            # cut, not a flag (FLAGS has no bit for it), even with cuts.action=flag; named
            # in the summary because it means a broken field.
            removed["nonfinite"] += 1
            if len(errors) < MAX_LISTED:
                where = item.extra.get("field") or item.source_id
                errors.append(f"{where}: {item.source_id}: {why} [row {item.row}, nonfinite]")
            return None
        for name in CUT_ORDER:
            if flags & FLAGS[name]:
                flagged[name] += 1
        img = centre_on(fill_nan(item.image, float(d.cuts.nan_fill)), item.offset_px)
        img = apply_negatives(resize_image(img, d.image_size), _value(d.negatives))
    except Exception as exc:  # MemoryError included: one source, not the run
        where = item.extra.get("field") or item.source_id
        err = InputError(where, "processing", f"{item.source_id}: {type(exc).__name__}: {exc}")
        err.row = item.row
        return err
    kept.append((item, img, flags, meas))
    return None


def _columns(kept, scale, offset, n, physical: bool) -> dict[str, np.ndarray]:
    cut = [k[0] for k in kept]
    meas = [k[3] for k in kept]
    cols = {name: np.full(len(kept), np.nan) for name in FLOAT_COLUMNS}
    for i, (c, m) in enumerate(zip(cut, meas)):
        size = c.image.shape[0] * c.pixel_scale_arcsec
        cols["ra"][i], cols["dec"][i], cols["las_arcsec"][i] = c.ra, c.dec, c.las_arcsec
        # the prepared image's own peak (after centring and resampling): with per-image
        # scaling and clipped negatives image * peak_flux restores Jy/beam exactly (in
        # general image * scale + offset) and a model conditioned on it returns images
        # whose peak is the requested value; the field-resolution peak is in snr
        cols["peak_flux"][i] = float(np.nanmax(kept[i][1])) if physical else np.nan
        cols["total_flux"][i], cols["snr"][i], cols["rms"][i] = m["total_flux"], m["snr"], c.rms
        cols["catalog_peak_flux"][i] = c.catalog_peak_flux
        cols["catalog_total_flux"][i] = c.catalog_total_flux
        cols["cutout_size_arcsec"][i] = size
        cols["pixel_scale_arcsec"][i] = size / n
    cols["scale"], cols["offset"] = scale, offset
    cols["label"] = np.array([c.label for c in cut], dtype=np.int16)
    cols["split"] = np.array([c.split or "train" for c in cut], dtype=object)
    cols["source_id"] = np.array([c.source_id for c in cut], dtype=object)
    cols["flags"] = np.array([k[2] for k in kept], dtype=np.uint8)
    cols["beam_arcsec"] = np.array([c.beam_arcsec for c in cut], dtype=np.float64)
    return cols
