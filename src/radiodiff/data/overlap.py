"""Sources that two prepared sets share, split by split.

Catalogues of the same survey overlap: MiraBest (Miraghaei & Best 2017) and the FIRST set of
Griese et al. (2023, which draws on MiraBest among others) hold many of the same radio
galaxies. A model trained on one set and warm-started, fine-tuned or evaluated on the other
has seen those sources: where a source of the other set's validation or test split is in the
first set's training split, the evaluation is no longer on unseen sources. This module
counts them (``bench/source_overlap.py`` prints the table); the warm starts of today's
shipped models are chosen so that none crosses an evaluation split (docs/data.md, "Shared
sources"; the first MiraBest release did).

A row of ``a`` is shared when a clean row of ``b`` lies within ``radius_arcsec`` of it
(positions are catalogue or host positions, so a few arcseconds apart for one source).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from radiodiff.data.prepared import ordered_splits, read_prepared

__all__ = ["source_pairs", "shared_counts"]


def source_pairs(ra_a: np.ndarray, dec_a: np.ndarray, ra_b: np.ndarray, dec_b: np.ndarray,
                 radius_arcsec: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of a position of ``a`` and one of ``b`` (degrees) at most
    ``radius_arcsec`` apart.

    Returns
    -------
    (ia, ib) : two int arrays
        Row indices into ``a`` and ``b``, one entry per pair (a row may pair with several).
        Non-finite positions pair with nothing.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord, search_around_sky
    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise ValueError(f"radius_arcsec must be > 0, got {radius_arcsec}")
    ra_a, dec_a, ra_b, dec_b = (np.asarray(v, float) for v in (ra_a, dec_a, ra_b, dec_b))
    ok_a = np.flatnonzero(np.isfinite(ra_a) & np.isfinite(dec_a))
    ok_b = np.flatnonzero(np.isfinite(ra_b) & np.isfinite(dec_b))
    if len(ok_a) == 0 or len(ok_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = SkyCoord(ra_a[ok_a] * u.deg, dec_a[ok_a] * u.deg)
    b = SkyCoord(ra_b[ok_b] * u.deg, dec_b[ok_b] * u.deg)
    ia, ib, _, _ = search_around_sky(a, b, radius_arcsec * u.arcsec)
    return ok_a[ia].astype(np.int64), ok_b[ib].astype(np.int64)


def _positions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RA, Dec and split of the clean rows (``flags == 0``: what training and evaluation
    use) of a prepared file; a file none of whose clean rows has a sky position (NaN: the
    catalogue gave none) is refused, as its zero shared sources would mean nothing."""
    cols = read_prepared(path, images=False).columns
    clean = np.asarray(cols["flags"]) == 0
    ra, dec = np.asarray(cols["ra"], float)[clean], np.asarray(cols["dec"], float)[clean]
    if not np.any(np.isfinite(ra) & np.isfinite(dec)):
        raise ValueError(f"{path}: no clean row has a sky position (ra/dec): shared sources "
                         "cannot be counted")
    split = np.asarray(cols["split"], str)  # read_prepared gives str
    return ra, dec, split[clean]


def shared_counts(a: str | Path, b: str | Path, radius_arcsec: float = 30.0) -> dict[str, Any]:
    """Clean rows of prepared set ``a`` per split, how many have a source of ``b`` within
    ``radius_arcsec``, and how many of those have one in each split of ``b`` (a row with
    matches in two splits counts in both; a row without a position counts as not shared).

    Returns
    -------
    dict
        ``{<split of a>: {"rows": n, "shared": k, "in <split of b>": k_b, ...}}``, splits in
        train, valid, test order.
    """
    ra_a, dec_a, split_a = _positions(a)
    ra_b, dec_b, split_b = _positions(b)
    ia, ib = source_pairs(ra_a, dec_a, ra_b, dec_b, radius_arcsec)
    out: dict[str, Any] = {}
    for s in ordered_splits(split_a):
        mine = split_a[ia] == s
        entry = {"rows": int(np.sum(split_a == s)), "shared": len(np.unique(ia[mine]))}
        for t in ordered_splits(split_b):
            entry[f"in {t}"] = len(np.unique(ia[mine & (split_b[ib] == t)]))
        out[s] = entry
    return out
