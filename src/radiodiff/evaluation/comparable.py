"""Whether two image sets can be compared at all: the same classes, unit and geometry.

Evaluation scores generated (or other real) images against a reference split in model
space [0, 1], class by class. That is only meaningful when both sets hold the same kind of
image: the same class names in the same order (class index 2 of a FIRST model is
``Compact``, of MiraBest ``hybrid``), the same image unit (``Jy/beam`` or ``arbitrary``: a
flux scale or none) and the same pixel scale and beam, to :data:`GEOMETRY_RTOL`. (The image
size is checked by :func:`radiodiff.evaluation.sets.check_reference_size`.) Unknown values
(older files) are not compared. :func:`check_comparable` refuses in one line; asked to
compare anyway (``--allow-mismatch``) classes are mapped by name (:func:`class_map`) and a
class the reference lacks counts as none (label -1).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

__all__ = ["GEOMETRY_RTOL", "mismatches", "check_comparable", "class_map", "relabel",
           "samples_meta"]

# Pixel scale and beam of two compared sets may differ by this fraction (a prepared file
# records the median of its rows, a release that of its training rows).
GEOMETRY_RTOL = 0.1
log = logging.getLogger(__name__)


def _size(value: Any) -> Optional[float]:
    """A pixel scale or a beam's major axis (arcsec) as a positive float, else None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        value = value[0] if len(value) else None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def mismatches(reference: Mapping[str, Any], other: Mapping[str, Any], ref_name: str,
               kind: str) -> list[str]:
    """How ``other`` (a release's or samples file's ``classes``, ``image_unit``,
    ``pixel_scale_arcsec``, ``beam_arcsec``) differs from ``reference`` (a prepared file's),
    one phrase each; empty when they can be compared."""
    out = []
    mine, theirs = list(other.get("classes") or []), list(reference.get("classes") or [])
    if mine and theirs and mine != theirs:
        out.append(f"{kind} classes {mine} differ from {ref_name}'s {theirs}")
    unit, ref_unit = other.get("image_unit"), reference.get("image_unit")
    if unit and ref_unit and unit != ref_unit:
        out.append(f"{kind} images are in {unit} units, {ref_name}'s in {ref_unit}")
    for key, what in (("pixel_scale_arcsec", "pixel scale"), ("beam_arcsec", "beam")):
        x, y = _size(other.get(key)), _size(reference.get(key))
        if x and y and not math.isclose(x, y, rel_tol=GEOMETRY_RTOL):
            out.append(f'{kind} {what} {x:g}" differs from {ref_name}\'s {y:g}" by more '
                       f"than {GEOMETRY_RTOL:.0%}")
    return out


def check_comparable(reference: Mapping[str, Any], other: Mapping[str, Any], ref_name: str,
                     kind: str, where: Any, allow: bool = False) -> bool:
    """Refuse (ValueError, one line naming ``where``) to compare sets that differ
    (:func:`mismatches`); with ``allow``, log one line instead. Returns whether the class
    labels must be mapped by name (:func:`class_map`)."""
    problems = mismatches(reference, other, ref_name, kind)
    if problems and not allow:
        raise ValueError(f"{where}: cannot be compared with {ref_name}: "
                         + "; ".join(problems)
                         + " (--allow-mismatch compares them anyway, classes mapped by name)")
    if problems:
        log.warning("%s: compared with %s anyway (--allow-mismatch): %s", where, ref_name,
                    "; ".join(problems))
    mine, theirs = list(other.get("classes") or []), list(reference.get("classes") or [])
    return bool(mine and theirs and mine != theirs)


def class_map(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """For each class index of ``source``, the index of the class of the same name in
    ``target``, or -1 where ``target`` has none."""
    target = list(target)
    return np.array([target.index(c) if c in target else -1 for c in source], np.int64)


def relabel(labels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``labels`` through ``table`` (:func:`class_map`); -1 (none) stays -1."""
    labels = np.asarray(labels, np.int64)
    ok = (labels >= 0) & (labels < len(table))
    out = np.full(labels.shape, -1, np.int64)
    out[ok] = table[labels[ok]]
    return out


def samples_meta(path: str | Path) -> dict[str, Any]:
    """``classes``, ``image_unit``, ``pixel_scale_arcsec`` and ``beam_arcsec`` of the
    release a ``samples.h5`` (or its folder) was drawn from, as ``radiodiff sample``
    recorded them (None where the file predates them)."""
    from radiodiff.io.integrity import open_h5

    path = Path(path)
    path = path / "samples.h5" if path.is_dir() else path
    with open_h5(path, "write it again with `radiodiff sample`") as f:
        attrs = dict(f.attrs)

    def parsed(key: str) -> Any:
        try:
            return json.loads(attrs[key])
        except (KeyError, TypeError, ValueError):
            return None
    return {"classes": parsed("classes") or [], "image_unit": attrs.get("image_unit") or None,
            "pixel_scale_arcsec": _size(attrs.get("pixel_scale_arcsec")),
            "beam_arcsec": parsed("beam_arcsec")}
