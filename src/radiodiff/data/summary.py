"""Look at a prepared-cutout file: a summary an astronomer can read, and example grids.

This is what ``make demo`` shows about a prepared set (``data/<name>.h5``, see
:mod:`radiodiff.data.prepared`): how many clean sources per class and split, which quality cuts
removed how many rows, the pixel and flux distributions, and a PNG grid of random clean
images per class. Nothing here modifies the prepared file, and nothing prints: the entry
point decides what to show.

Only clean rows (``flags == 0``) enter the counts per class x split, the statistics and the
grids; flagged rows are counted per cut. Images are read in blocks, so a large set is never
held in memory at once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from radiodiff.io.artifacts import (artifact_dir, atomic_text, relocated, save_image_grid,
                                    to_plain)
from radiodiff.io.provenance import portable_path
from radiodiff.data.prepared import FLAGS, PreparedSet, ordered_splits, read_prepared
from radiodiff.seeds import class_pick_rng

__all__ = [
    "summarize", "format_summary", "select_examples", "plot_class_grids", "inspect_prepared",
]

# Catalogue quantities summarised by percentiles, with their units.
QUANTITIES = {
    "peak_flux": "Jy/beam",
    "total_flux": "Jy",
    "las_arcsec": "arcsec",
    "snr": "",
    "pixel_scale_arcsec": "arcsec",
}
UNLABELLED = "unlabelled"
ALL = "all"
_BLOCK = 256  # rows per read: matches the chunking of ``images`` in write_prepared
_PIXEL_THRESHOLD = 0.1  # model-space value counted as "emission" in the pixel statistics


# --------------------------------------------------------------------------- helpers

def _row_classes(labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """Class name of every row: ``classes[label]``, ``unlabelled`` for -1 or no classes."""
    names = np.full(len(labels), UNLABELLED, dtype=object)
    if classes:
        for k, cls in enumerate(classes):
            names[labels == k] = cls
        bad = (labels >= len(classes)) | ((labels < 0) & (labels != -1))
        for k in np.unique(labels[bad]):  # a corrupt label should show, not vanish
            names[labels == k] = f"label {int(k)}"
    return names


def _grid_groups(labels: np.ndarray, clean: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Clean row indices per grid: one per class, or ``all`` for an unlabelled set."""
    if not classes:
        return {ALL: np.flatnonzero(clean)}
    return {cls: np.flatnonzero(clean & (labels == k)) for k, cls in enumerate(classes)}


def _safe_name(cls: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", cls).strip("_") or "class"


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _pixel_stats(path: Path, clean: np.ndarray) -> dict[str, Any] | None:
    """Statistics of the finite pixels of the clean images, read block by block."""
    if not clean.any():
        return None
    lo, hi, total, n_finite, n_above, n_nonfinite = np.inf, -np.inf, 0.0, 0, 0, 0
    image_means = []
    with h5py.File(path, "r") as f:
        ds = f["images"]
        for start in range(0, len(clean), _BLOCK):
            keep = clean[start:start + _BLOCK]
            if not keep.any():
                continue
            block = ds[start:start + _BLOCK][keep].astype(np.float64)  # (b, 1, H, W)
            flat = block.reshape(len(block), -1)
            finite = np.isfinite(flat)
            vals = np.where(finite, flat, 0.0)
            n_img = finite.sum(axis=1)
            n_nonfinite += int(flat.size - n_img.sum())
            if n_img.sum():
                lo = min(lo, float(flat[finite].min()))
                hi = max(hi, float(flat[finite].max()))
            total += float(vals.sum())
            n_finite += int(n_img.sum())
            n_above += int((vals > _PIXEL_THRESHOLD).sum())
            sums = vals.sum(axis=1)
            image_means.append(np.divide(sums, n_img, out=np.full(len(sums), np.nan),
                                         where=n_img > 0))
    means = np.concatenate(image_means)
    means = means[np.isfinite(means)]
    return {
        "min": lo if n_finite else None,
        "max": hi if n_finite else None,
        "mean": total / n_finite if n_finite else None,
        "median_image_mean": float(np.median(means)) if len(means) else None,
        "frac_above_0.1": n_above / n_finite if n_finite else None,
        "threshold": _PIXEL_THRESHOLD,
        "n_nonfinite_pixels": n_nonfinite,
    }


def _percentiles(values: np.ndarray) -> dict[str, Any] | None:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    p16, p50, p84 = np.percentile(finite, [16, 50, 84])
    return {"p16": float(p16), "median": float(p50), "p84": float(p84), "n": int(len(finite))}


# --------------------------------------------------------------------------- summary

def summarize(path: str | Path) -> dict[str, Any]:
    """Summarise a prepared file: provenance, counts, flags, pixel and flux statistics.

    Parameters
    ----------
    path : str or Path
        Prepared HDF5 file written by :func:`radiodiff.data.prepared.write_prepared`.

    Returns
    -------
    dict
        JSON-serialisable (plain types only; non-finite numbers are ``None``). Keys:
        ``name``, ``source``, ``path``, ``format_version``, ``package_version``,
        ``git_commit``, ``created_utc``, ``data_sha256``, ``inputs_sha256``,
        ``image_unit``, ``scaling``, ``negatives``, ``n_input_files``, ``n_rows``,
        ``n_clean``, ``n_flagged``, ``image_shape`` ([H, W], pixels), ``classes``,
        ``splits``, ``counts`` (clean rows, ``{class: {split: n}}``; rows with label -1
        count as ``unlabelled``), ``flagged`` (rows failing each cut of ``FLAGS``; a row
        can fail several, so these may sum to more than ``n_flagged``), ``pixels``
        (statistics of the finite pixels of clean model-space images: ``min``, ``max``,
        ``mean``, ``median_image_mean``, ``frac_above_0.1``; ``None`` without clean rows),
        ``quantities`` (for each of ``QUANTITIES``: ``unit`` and ``stats``, the 16th,
        50th and 84th percentiles over the finite values of clean rows, or ``None`` when
        there are none), ``prep_summary`` (attribute ``summary``, or ``None``) and
        ``config_yaml`` (or ``None``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a radiodiff prepared file.
    """
    path = Path(path)
    # validates the file (layout, every chunk, data_sha256) and names it in errors
    ps = read_prepared(path, images=False, verify=True)
    cols, attrs, classes = ps.columns, ps.attrs, ps.classes
    labels = np.asarray(cols["label"]).astype(np.int64)
    splits = np.asarray(cols["split"], dtype=str)
    flags = np.asarray(cols["flags"]).astype(np.int64)
    clean = flags == 0
    with h5py.File(path, "r") as f:
        image_shape = [int(s) for s in f["images"].shape[2:]]

    names = _row_classes(labels, classes)
    split_list = ordered_splits(splits)
    rows = list(classes) + [c for c in dict.fromkeys(names[clean]) if c not in classes]
    if not rows:
        rows = [UNLABELLED]
    counts = {cls: {s: int(np.sum(clean & (names == cls) & (splits == s)))
                    for s in split_list} for cls in rows}

    flagged = {flag: int(np.sum((flags & bit) != 0)) for flag, bit in FLAGS.items()}
    unknown = flags & ~sum(FLAGS.values())
    if unknown.any():
        flagged["unknown"] = int(np.sum(unknown != 0))

    quantities = {q: {"unit": unit, "stats": _percentiles(np.asarray(cols[q])[clean])}
                  for q, unit in QUANTITIES.items()}
    prep = attrs.get("summary")
    summary = {
        "name": attrs.get("name", path.stem),
        "source": attrs.get("source"),
        "path": portable_path(path),
        "format_version": attrs.get("format_version"),
        "package_version": attrs.get("package_version"),
        "git_commit": attrs.get("git_commit"),
        "created_utc": attrs.get("created_utc"),
        "data_sha256": attrs.get("data_sha256"),
        "inputs_sha256": attrs.get("inputs_sha256"),
        "image_unit": attrs.get("image_unit"),
        "scaling": attrs.get("scaling"),
        "negatives": attrs.get("negatives"),
        "n_input_files": len(ps.files),
        "n_rows": len(ps),
        "n_clean": int(clean.sum()),
        "n_flagged": int((~clean).sum()),
        "image_shape": image_shape,
        "classes": list(classes),
        "splits": split_list,
        "counts": counts,
        "flagged": flagged,
        "pixels": _pixel_stats(path, clean),
        "quantities": quantities,
        "prep_summary": prep,
        "config_yaml": attrs.get("config_yaml"),
    }
    return to_plain(summary)


def _num(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    return f"{x:.4g}"


def _table(header: list[str], body: list[list[str]], indent: str = "  ") -> list[str]:
    """Left-align the first column, right-align the others."""
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    out = []
    for r in [header] + body:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def _tree(obj: Any, indent: str) -> list[str]:
    """Nested dicts/lists as aligned ``key  value`` lines."""
    if not isinstance(obj, dict):
        return [f"{indent}{_num(obj)}"]
    width = max((len(str(k)) for k in obj), default=0)
    out = []
    for k, v in obj.items():
        if isinstance(v, dict) and v:
            out.append(f"{indent}{k}")
            out.extend(_tree(v, indent + "  "))
        elif isinstance(v, list) and any(isinstance(x, str) for x in v):
            out.append(f"{indent}{k}")  # e.g. error messages: one per line
            out.extend(f"{indent}  {_num(x)}" for x in v)
        elif isinstance(v, list):
            out.append(f"{indent}{str(k).ljust(width)}  {', '.join(_num(x) for x in v)}")
        else:
            unit = " s" if isinstance(v, (int, float)) and _is_time(str(k)) else ""
            out.append(f"{indent}{str(k).ljust(width)}  {_num(v)}{unit}")
    return out


def _is_time(key: str) -> bool:
    key = key.lower()
    return bool(re.search(r"time|elapsed|second|duration", key)) or key.endswith("_s")


def _is_removed(key: str) -> bool:
    return bool(re.search(r"remov|reject|drop|cut|reason|fail", key.lower()))


def format_summary(summary: dict[str, Any]) -> str:
    """Render a :func:`summarize` result (or its JSON round trip) as a plain-text report.

    Parameters
    ----------
    summary : dict
        Output of :func:`summarize`; missing keys are shown as ``n/a`` or left out.

    Returns
    -------
    str
        Multi-line report: provenance, clean images per class x split with totals, rows
        flagged per quality cut, pixel statistics, 16th/50th/84th percentiles of fluxes
        and sizes with units, the preparation summary (removed per reason, timing) and
        the preparation config.
    """
    sections = (_provenance_lines, _count_lines, _flagged_lines, _pixel_lines,
                _quantity_lines, _prep_lines, _config_lines)
    return "\n".join(line for section in sections for line in section(summary)) + "\n"


def _provenance_lines(s: dict[str, Any]) -> list[str]:
    """Title, then file, versions, hashes, row counts and image format."""
    lines = [f"Prepared set: {s.get('name')}  (source: {_num(s.get('source'))})"]
    shape = s.get("image_shape") or []
    info = [
        ("file", s.get("path")),
        ("format", f"{_num(s.get('format_version'))}   package {_num(s.get('package_version'))}"
                   f"   git {_num(s.get('git_commit'))}"),
        ("created (UTC)", s.get("created_utc")),
        ("data sha256", s.get("data_sha256")),
        ("inputs sha256", s.get("inputs_sha256")),
        ("rows", f"{_num(s.get('n_rows'))}  (clean {_num(s.get('n_clean'))}, "
                 f"flagged {_num(s.get('n_flagged'))})"),
        ("image", f"{' x '.join(map(str, shape))} pixels   unit {_num(s.get('image_unit'))}"
                  f"   scaling {_num(s.get('scaling'))}   negatives {_num(s.get('negatives'))}"),
    ]
    return lines + [f"  {k.ljust(14)}  {_num(v)}" for k, v in info]


def _count_lines(s: dict[str, Any]) -> list[str]:
    """Clean images per class x split, with row and column totals."""
    counts, splits = s.get("counts") or {}, list(s.get("splits") or [])
    body = [[cls] + [str(c.get(sp, 0)) for sp in splits] + [str(sum(c.values()))]
            for cls, c in counts.items()]
    totals = [sum(c.get(sp, 0) for c in counts.values()) for sp in splits]
    body.append(["total"] + [str(t) for t in totals] + [str(sum(totals))])
    header = ["class"] + splits + ["total"]
    return ["", "Clean images per class and split"] + _table(header, body)


def _flagged_lines(s: dict[str, Any]) -> list[str]:
    """Rows failing each quality cut."""
    flagged = s.get("flagged") or {}
    return (["", f"Flagged rows per quality cut ({_num(s.get('n_flagged'))} rows; "
                 "a row can fail several cuts)"]
            + _table(["cut", "rows"], [[k, str(v)] for k, v in flagged.items()]))


def _pixel_lines(s: dict[str, Any]) -> list[str]:
    """Model-space pixel statistics of the clean images."""
    pix = s.get("pixels")
    lines = ["", "Pixels of clean images (model space)"]
    if not pix:
        return lines + ["  n/a (no clean images)"]
    lines += _table(["min", "max", "mean", "median image mean",
                     f"fraction > {_num(pix.get('threshold'))}"],
                    [[_num(pix.get(k)) for k in ("min", "max", "mean",
                                                  "median_image_mean", "frac_above_0.1")]])
    if pix.get("n_nonfinite_pixels"):
        lines.append(f"  non-finite pixels ignored: {pix['n_nonfinite_pixels']}")
    return lines


def _quantity_lines(s: dict[str, Any]) -> list[str]:
    """16th / 50th / 84th percentiles of each catalogue quantity, with units."""
    body = []
    for q, entry in (s.get("quantities") or {}).items():
        st = (entry or {}).get("stats")
        unit = (entry or {}).get("unit") or "-"
        if st:
            body.append([q, unit, _num(st["p16"]), _num(st["median"]), _num(st["p84"]),
                         str(st["n"])])
        else:
            body.append([q, unit, "n/a", "n/a", "n/a", "0"])
    return (["", "Clean rows: 16th / 50th / 84th percentiles"]
            + _table(["quantity", "unit", "p16", "median", "p84", "n finite"], body))


def _prep_lines(s: dict[str, Any]) -> list[str]:
    """The stored preparation summary: removed per reason, timing, then the rest."""
    prep = s.get("prep_summary")
    lines = ["", "Preparation summary"]
    if isinstance(prep, dict) and prep:
        groups = [("removed per reason", [k for k in prep if _is_removed(k)])]
        groups.append(("timing", [k for k in prep if _is_time(k) and not _is_removed(k)]))
        used = {k for _, keys in groups for k in keys}
        groups.append(("other", [k for k in prep if k not in used]))
        for title, keys in groups:
            if keys:
                lines.append(f"  {title}")
                lines += _tree({k: prep[k] for k in keys}, "    ")
    elif prep:
        lines.append(f"  {prep}")
    else:
        lines.append("  n/a (no summary stored in the file)")
    return lines


def _config_lines(s: dict[str, Any]) -> list[str]:
    """The preparation config (YAML), indented."""
    config = s.get("config_yaml")
    body = ["  " + ln for ln in config.rstrip().splitlines()] if config else ["  n/a"]
    return ["", "Preparation config"] + body


# --------------------------------------------------------------------------- grids

def select_examples(path: str | Path, n_per_class: int = 16,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Choose up to ``n_per_class`` random clean rows of each class, from all splits.

    Each class draws from its own generator seeded with ``(seed, class index)``
    (:func:`radiodiff.seeds.class_pick_rng`), so the choice for one class does not depend
    on the others.

    Parameters
    ----------
    path : str or Path
        Prepared HDF5 file.
    n_per_class : int
        Most rows chosen per class (>= 1).
    seed : int
        Seed of the numpy generators.

    Returns
    -------
    dict of str to ndarray
        Class name (``all`` for a set without classes) to sorted row indices; a class
        without clean rows maps to an empty array.
    """
    _check_positive("n_per_class", n_per_class)
    groups = _groups_of(read_prepared(path, images=False))
    return _choose(groups, n_per_class, seed)


def _groups_of(ps: PreparedSet) -> dict[str, np.ndarray]:
    labels = np.asarray(ps.columns["label"]).astype(np.int64)
    clean = np.asarray(ps.columns["flags"]) == 0
    return _grid_groups(labels, clean, ps.classes)


def _choose(groups: dict[str, np.ndarray], n_per_class: int, seed: int) -> dict[str, Any]:
    chosen = {}
    for k, (cls, rows) in enumerate(groups.items()):
        rng = class_pick_rng(seed, k)
        pick = rng.choice(len(rows), size=min(n_per_class, len(rows)), replace=False)
        chosen[cls] = np.sort(rows[pick])
    return chosen


def plot_class_grids(path: str | Path, out_dir: str | Path, n_per_class: int = 16,
                     seed: int = 0, ncols: int = 8, cmap: str = "inferno") -> list[Path]:
    """Write one PNG grid of random clean images per class.

    Parameters
    ----------
    path : str or Path
        Prepared HDF5 file.
    out_dir : str or Path
        Folder for ``grid_<class>.png`` (``grid_all.png`` for a set without classes);
        created if needed. Characters other than letters, digits, ``_.+-`` in a class
        name become ``_``.
    n_per_class : int
        Most images per grid (>= 1), chosen by :func:`select_examples`.
    seed : int
        Seed of the selection.
    ncols : int
        Panels per row (>= 1).
    cmap : str
        Matplotlib colormap; model-space values are shown on a fixed 0..1 scale.

    Returns
    -------
    list of Path
        The PNGs written, in class order. A class without clean images gets none.
    """
    _check_positive("n_per_class", n_per_class)
    _check_positive("ncols", ncols)
    ps = read_prepared(path, images=False)
    groups = _groups_of(ps)
    chosen = _choose(groups, n_per_class, seed)
    totals = {cls: len(rows) for cls, rows in groups.items()}
    name = ps.attrs.get("name", Path(path).stem)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with h5py.File(path, "r") as f:
        for cls, rows in chosen.items():
            if not len(rows):
                continue
            images = f["images"][rows]  # rows sorted, as h5py requires; (k, 1, H, W)
            titles = [str(ps.columns["source_id"][r]) for r in rows]
            title = f"{name}: {cls} ({totals[cls]} images, showing {len(rows)})"
            dest = out_dir / f"grid_{_safe_name(cls)}.png"
            save_image_grid(dest, images, title, titles, ncols, cmap)
            written.append(dest)
    return written


def inspect_prepared(path: str | Path, out_dir: str | Path, n_per_class: int = 16,
                     seed: int = 0, overwrite: bool = False) -> dict[str, Path]:
    """Write ``summary.json``, ``summary.txt`` and the class grids of a prepared file.

    Parameters
    ----------
    path : str or Path
        Prepared HDF5 file.
    out_dir : str or Path
        Output folder, written whole and atomically
        (:func:`radiodiff.io.artifacts.artifact_dir`, kind ``inspect``: recognised by its
        ``summary.json``; its files listed in ``SHA256SUMS``; one writer at a time).
    n_per_class : int
        Most images per class grid (>= 1).
    seed : int
        Seed of the grid selection.
    overwrite : bool
        Replace an earlier inspect folder's own files (anything else there is kept); without
        it an existing one is refused, as is any other non-empty folder.

    Returns
    -------
    dict of str to Path
        File name to path of every file written.
    """
    _check_positive("n_per_class", n_per_class)
    out_dir = Path(out_dir)
    with artifact_dir(out_dir, "inspect", overwrite) as tmp:
        summary = summarize(path)
        written = {
            "summary.json": atomic_text(tmp / "summary.json",
                                         json.dumps(summary, indent=2, allow_nan=False) + "\n"),
            "summary.txt": atomic_text(tmp / "summary.txt", format_summary(summary)),
        }
        for png in plot_class_grids(path, tmp, n_per_class=n_per_class, seed=seed):
            written[png.name] = png
    return relocated(written, tmp, out_dir)
