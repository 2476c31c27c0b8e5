"""Sources that two prepared sets share, split by split.

Catalogues of the same survey overlap: MiraBest (Miraghaei & Best 2017) and the FIRST set of
Griese et al. (2023, which draws on MiraBest among others) hold many of the same radio
galaxies. A model trained on one set and warm-started, fine-tuned or evaluated on the other
has seen those sources: where a source of the other set's validation or test split is in the
first set's training split, the evaluation is no longer on unseen sources. This module
counts them (``bench/source_overlap.py`` prints the table); the warm starts in this
repository are chosen so that none crosses an evaluation split (docs/data.md, "Shared
sources").

A row of ``a`` matches when the nearest row of ``b`` lies within ``radius_arcsec`` of it
(positions are catalogue or host positions, so a few arcseconds apart for one source).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from radiodiff.data.prepared import read_prepared

__all__ = ["shared_sources", "shared_counts"]


def shared_sources(ra_a: np.ndarray, dec_a: np.ndarray, ra_b: np.ndarray,
                   dec_b: np.ndarray, radius_arcsec: float = 30.0) -> np.ndarray:
    """For each position of ``a`` (degrees), the index of the nearest position of ``b``
    within ``radius_arcsec``, else -1. Non-finite positions match nothing."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise ValueError(f"radius_arcsec must be > 0, got {radius_arcsec}")
    ra_a, dec_a, ra_b, dec_b = (np.asarray(v, float) for v in (ra_a, dec_a, ra_b, dec_b))
    out = np.full(len(ra_a), -1, np.int64)
    ok_a = np.isfinite(ra_a) & np.isfinite(dec_a)
    ok_b = np.flatnonzero(np.isfinite(ra_b) & np.isfinite(dec_b))
    if not ok_a.any() or len(ok_b) == 0:
        return out
    a = SkyCoord(ra_a[ok_a] * u.deg, dec_a[ok_a] * u.deg)
    b = SkyCoord(ra_b[ok_b] * u.deg, dec_b[ok_b] * u.deg)
    idx, sep, _ = a.match_to_catalog_sky(b)
    out[ok_a] = np.where(sep.arcsec <= radius_arcsec, ok_b[idx], -1)
    return out


def _positions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ps = read_prepared(path, images=False)
    cols = ps.columns
    missing = [k for k in ("ra", "dec", "split") if k not in cols]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} column: positions unknown")
    split = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in cols["split"]])
    return np.asarray(cols["ra"], float), np.asarray(cols["dec"], float), split


def shared_counts(a: str | Path, b: str | Path, radius_arcsec: float = 30.0) -> dict[str, Any]:
    """Rows of prepared set ``a`` per split, and how many of them have a source of ``b``
    within ``radius_arcsec``, by the split of ``b`` it is in:
    ``{"a/<split>": {"rows": n, "b/<split>": k, ...}}``."""
    ra_a, dec_a, split_a = _positions(a)
    ra_b, dec_b, split_b = _positions(b)
    match = shared_sources(ra_a, dec_a, ra_b, dec_b, radius_arcsec)
    out: dict[str, Any] = {}
    for s in sorted(set(split_a)):
        rows = split_a == s
        hit = match[rows]
        entry = {"rows": int(rows.sum()), "shared": int((hit >= 0).sum())}
        for t in sorted(set(split_b)):
            entry[f"in {t}"] = int(np.sum(split_b[hit[hit >= 0]] == t))
        out[s] = entry
    return out
