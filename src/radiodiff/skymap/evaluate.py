"""``radiodiff evaluate-map``: a source finder (PyBDSF) measured against a map's truth.

:func:`match_stats` is the pure part (tested on hand-made catalogues): each truth source
is matched to its nearest found source within ``radius`` (``match_coordinates_sky``) and
each found source to its nearest truth source. Reported, per bin of flux:

* completeness: matched truth / truth, binned by true integrated flux;
* reliability: found sources with a truth source within ``radius`` / found, binned by
  measured flux;
* flux ratio measured / true (true: ``flux_meas`` of the truth, what landed on the map);
* positional offsets (found - true, arcsec: RA cos Dec, Dec);
* split: resolved truth sources (kind ``model``) with >= 2 found sources within
  max(radius, LAS/2); blended: matched truth sources whose found match is also the match
  of another truth source.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from radiodiff.io.artifacts import artifact_dir, new_figure, save_figure, to_plain
from radiodiff.io.integrity import sha256_file

__all__ = ["match_stats", "find_map_sources", "evaluate_map"]


def _coords(ra, dec):
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    return SkyCoord(np.asarray(ra, float) * u.deg, np.asarray(dec, float) * u.deg)


def _nearest(a, b) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``a``: index of the nearest of ``b`` and the separation (arcsec)."""
    from astropy.coordinates import match_coordinates_sky
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), int), np.full(len(a), np.inf)
    if len(b) == 1:  # match_coordinates_sky needs two catalogue entries for its tree
        return np.zeros(len(a), int), a.separation(b[0]).arcsec
    idx, sep, _ = match_coordinates_sky(a, b)
    return np.asarray(idx), sep.arcsec


def _binned(values: np.ndarray, flags: np.ndarray, edges: np.ndarray) -> list[dict]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (values >= lo) & (values < hi)
        n = int(m.sum())
        out.append({"flux_lo": lo, "flux_hi": hi, "n": n,
                    "fraction": float(flags[m].mean()) if n else None})
    return out


def _ratio_bins(true: np.ndarray, ratio: np.ndarray, edges: np.ndarray) -> list[dict]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        r = ratio[(true >= lo) & (true < hi)]
        q = np.percentile(r, [16, 50, 84]) if len(r) else [None] * 3
        out.append({"flux_lo": lo, "flux_hi": hi, "n": int(len(r)), "p16": q[0],
                    "median": q[1], "p84": q[2]})
    return out


def match_stats(truth: Mapping[str, Any], found: Mapping[str, Any], radius_arcsec: float,
                edges: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """Completeness, reliability, flux ratio, offsets, split and blend fractions.

    Parameters
    ----------
    truth : mapping
        ``ra``, ``dec`` (deg), ``flux_meas`` (Jy), ``las`` (arcsec), ``kind``.
    found : mapping
        ``ra``, ``dec`` (deg), ``flux`` (Jy) of the found sources.
    radius_arcsec : float
        Match radius.
    edges : sequence of float, optional
        Flux bin edges (Jy); default 8 log bins over the truth and found fluxes.
    """
    t_flux = np.asarray(truth["flux_meas"], float)
    f_flux = np.asarray(found["flux"], float)
    tc, fc = _coords(truth["ra"], truth["dec"]), _coords(found["ra"], found["dec"])
    t_idx, t_sep = _nearest(tc, fc)
    f_idx, f_sep = _nearest(fc, tc)
    matched, real = t_sep <= radius_arcsec, f_sep <= radius_arcsec
    if edges is None:
        fluxes = np.concatenate([t_flux, f_flux[f_flux > 0]])
        lo, hi = (fluxes.min(), fluxes.max()) if len(fluxes) else (1e-3, 1.0)
        edges = np.geomspace(lo, hi * (1 + 1e-9), 9)
    edges = np.asarray(edges, float)
    m = np.flatnonzero(matched)
    ratio = f_flux[t_idx[m]] / t_flux[m]
    d_ra = (np.asarray(found["ra"], float)[t_idx[m]] - np.asarray(truth["ra"], float)[m])
    d_ra = (d_ra + 180.0) % 360.0 - 180.0
    d_ra *= 3600.0 * np.cos(np.radians(np.asarray(truth["dec"], float)[m]))
    d_dec = 3600.0 * (np.asarray(found["dec"], float)[t_idx[m]]
                      - np.asarray(truth["dec"], float)[m])
    hits = np.bincount(t_idx[m], minlength=len(f_flux))
    blended = hits[t_idx[m]] >= 2
    resolved = np.flatnonzero(np.asarray(truth["kind"]) == "model")
    split = []
    for i in resolved:
        r = max(radius_arcsec, 0.5 * float(truth["las"][i]))
        split.append(int(np.sum(fc.separation(tc[i]).arcsec <= r)) >= 2 if len(fc) else False)
    med = lambda v: float(np.median(v)) if len(v) else None
    return {
        "n_truth": int(len(t_flux)), "n_found": int(len(f_flux)),
        "n_matched": int(matched.sum()), "radius_arcsec": float(radius_arcsec),
        "completeness": float(matched.mean()) if len(t_flux) else None,
        "reliability": float(real.mean()) if len(f_flux) else None,
        "completeness_bins": _binned(t_flux, matched, edges),
        "reliability_bins": _binned(f_flux, real, edges),
        "flux_ratio_bins": _ratio_bins(t_flux[m], ratio, edges),
        "flux_ratio_median": med(ratio),
        "offset_arcsec": {"ra_median": med(d_ra), "dec_median": med(d_dec),
                          "ra_std": float(np.std(d_ra)) if len(m) else None,
                          "dec_std": float(np.std(d_dec)) if len(m) else None,
                          "radial_median": med(np.hypot(d_ra, d_dec))},
        "n_resolved": int(len(resolved)),
        "split_fraction": float(np.mean(split)) if split else None,
        "blended_fraction": float(blended.mean()) if len(m) else None,
        "_offsets": (d_ra, d_dec), "_ratio": (t_flux[m], ratio)}


def find_map_sources(path: str | Path, rms: Optional[float] = None, thresh_isl: float = 3.0,
                     thresh_pix: float = 5.0) -> dict[str, np.ndarray]:
    """PyBDSF sources of a map FITS (``ra``, ``dec`` deg, ``flux`` Jy); ``rms`` None: the
    RMS card, else PyBDSF's own rms map."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from radiodiff.evaluation.sourcefind import find_sources

    with fits.open(path) as hdul:
        data, header = hdul[0].data.astype(np.float32), hdul[0].header
    wcs = WCS(header).celestial
    scale = abs(float(header["CDELT2"])) * 3600.0
    beam = (float(header["BMAJ"]) * 3600.0, float(header["BMIN"]) * 3600.0)
    rms = rms if rms is not None else header.get("RMS")
    res = find_sources(data, scale, beam, float(header["FREQ"]), rms=rms,
                       thresh_isl=thresh_isl, thresh_pix=thresh_pix,
                       beam_pa_deg=float(header.get("BPA", 0.0)))
    pos = np.asarray(res.get("positions") or np.zeros((0, 2)), float).reshape(-1, 2)
    ra, dec = wcs.pixel_to_world_values(pos[:, 0], pos[:, 1])
    return {"ra": np.asarray(ra) % 360.0, "dec": np.asarray(dec),
            "flux": np.asarray(res.get("source_fluxes") or [], float)}


def _plot(stats: dict, noise_free: Optional[dict], path: Path) -> Path:
    fig = new_figure((9.0, 3.2), dpi=120)
    ax1, ax2, ax3 = (fig.add_subplot(1, 3, k) for k in (1, 2, 3))
    for s, label, ls in ((stats, "map", "-"), (noise_free, "noise-free", ":")):
        if s is None:
            continue
        for key, name in (("completeness_bins", "completeness"),
                          ("reliability_bins", "reliability")):
            b = s[key]
            x = [math.sqrt(r["flux_lo"] * r["flux_hi"]) * 1e3 for r in b]
            y = [np.nan if r["fraction"] is None else r["fraction"] for r in b]
            ax1.plot(x, y, ls, marker="o", ms=3, label=f"{name} ({label})")
    ax1.set(xscale="log", xlabel="flux [mJy]", ylim=(0, 1.05), title="completeness, reliability")
    ax1.legend(fontsize=5)
    true, ratio = stats["_ratio"]
    ax2.scatter(true * 1e3, ratio, s=4)
    ax2.axhline(1.0, color="k", lw=0.5)
    ax2.set(xscale="log", yscale="log", xlabel="true flux [mJy]", ylabel="measured / true",
            title="flux")
    d_ra, d_dec = stats["_offsets"]
    ax3.scatter(d_ra, d_dec, s=4)
    ax3.set(xlabel="dRA cos Dec [\"]", ylabel="dDec [\"]", title="position offsets")
    fig.tight_layout()
    return save_figure(fig, path, format="png")


def _has_noise(map_dir: Path) -> bool:
    """Whether the map was made with noise (its ``skymap_config.yaml``; without one, yes)."""
    from omegaconf import OmegaConf

    from radiodiff.skymap.build import CONFIG_FILE
    path = map_dir / CONFIG_FILE
    if not path.is_file():
        return True
    return bool(OmegaConf.select(OmegaConf.load(path), "noise.enabled", default=True))


def evaluate_map(map_dir: str | Path, out: str | Path, radius_beams: float = 1.0,
                 noise_free: bool = True, thresh_isl: float = 3.0,
                 thresh_pix: float = 5.0, overwrite: bool = False) -> dict[str, Path]:
    """Run PyBDSF on ``map_dir``'s map (and noise-free model map) and compare with the
    truth; writes ``evaluation.json`` (with the map's SHA-256: an evaluation kept beside a
    replaced map says which map it is of) and ``evaluation.png`` in the folder ``out``,
    together and atomically; an earlier report there is replaced only with ``overwrite``
    (refused before PyBDSF runs)."""
    from radiodiff.io.artifacts import check_output, unlock_output

    check_output(out, "map_evaluation", overwrite)
    try:
        return _evaluate_map(Path(map_dir), Path(out), radius_beams, noise_free, thresh_isl,
                             thresh_pix, overwrite)
    finally:
        unlock_output(out)


def _evaluate_map(map_dir: Path, out: Path, radius_beams: float, noise_free: bool,
                  thresh_isl: float, thresh_pix: float, overwrite: bool) -> dict[str, Path]:
    from astropy.io import fits
    from astropy.table import Table

    from radiodiff.skymap.output import MAP_FILE, MODEL_FILE, TRUTH_FILE

    for name in (MAP_FILE, TRUTH_FILE):
        if not (map_dir / name).is_file():
            raise FileNotFoundError(f"{map_dir}: no {name}; make it with `radiodiff skymap`")
    if not radius_beams > 0:
        raise ValueError(f"radius_beams must be > 0, got {radius_beams}")
    truth = Table.read(map_dir / TRUTH_FILE)
    header = fits.getheader(map_dir / MAP_FILE)
    rms = header.get("RMS")  # none: noise from an rms map, or no noise at all
    if rms is None and not _has_noise(map_dir):
        raise ValueError(f"{map_dir / MAP_FILE}: the map has no noise (noise.enabled=false); "
                         "a source finder's thresholds are multiples of the noise: make the "
                         "map with noise to evaluate it")
    radius = radius_beams * float(header["BMAJ"]) * 3600.0
    truth_cols = {c: np.asarray(truth[c]) for c in ("ra", "dec", "flux_meas", "las")}
    truth_cols["kind"] = np.asarray(truth["kind"]).astype(str)  # FITS strings are bytes
    stats = match_stats(truth_cols, find_map_sources(map_dir / MAP_FILE, None, thresh_isl,
                                                     thresh_pix), radius)
    clean, skipped = None, None
    if not noise_free:
        skipped = "not asked for (--no-noise-free)"
    elif not (map_dir / MODEL_FILE).is_file():
        skipped = f"the map folder has no {MODEL_FILE}"
    elif rms is None:
        skipped = ("the map's noise follows an rms map (no RMS card): the noise-free "
                   "pass needs one threshold")
    else:  # the same threshold as the map (its RMS card), so only noise differs
        clean = match_stats(truth_cols, find_map_sources(
            map_dir / MODEL_FILE, rms, thresh_isl, thresh_pix), radius)
    report = {"map": {k: v for k, v in stats.items() if not k.startswith("_")},
              "noise_free": None if clean is None else
              {k: v for k, v in clean.items() if not k.startswith("_")},
              "noise_free_skipped": skipped,
              "settings": {"radius_beams": radius_beams, "thresh_isl": thresh_isl,
                           "thresh_pix": thresh_pix, "rms_jyb": rms},
              "map_sha256": sha256_file(map_dir / MAP_FILE)}
    text = json.dumps(to_plain(report), indent=2, allow_nan=False) + "\n"
    with artifact_dir(out, "map_evaluation", overwrite) as tmp:
        (tmp / "evaluation.json").write_text(text, encoding="utf-8")
        _plot(stats, clean, tmp / "evaluation.png")
    return {"evaluation.json": out / "evaluation.json", "evaluation.png": out / "evaluation.png"}
