"""The sources of a map: read from a catalogue, or drawn from a source-count model.

Units inside the package: RA/Dec in deg, integrated flux density ``flux`` in Jy, ``peak``
in Jy/beam of the target survey (NaN: from :func:`peak_from_total`), largest angular size
``las`` in arcsec (0: a point source), axis ratio ``q`` = minor / major in (0, 1] (1:
round), ``pa`` in deg east of north (NaN: drawn uniformly).

Rules kept here, once:

* Gaussian source (intrinsic FWHMs LAS and q LAS, major axis at the PA, convolved with the
  beam: the observed covariance is the sum of the two, :func:`observed_covariance`): peak
  and integrated flux are related by ``S = P sqrt(det C_obs / det C_beam)``, which is
  ``P (bmaj_obs bmin_obs) / (bmaj bmin)`` for a round source (:func:`peak_from_total`,
  :func:`total_from_peak`).
* LAS-flux rule (Windhorst, Mathis & Neuschaefer 1990; Windhorst et al. 1993): median
  size ``psi_med = 2" (S_1.4GHz / 1 mJy)^0.3`` and integral size distribution
  ``h(>psi) = exp[-ln 2 (psi / psi_med)^0.62]``; other frequencies are scaled to 1.4 GHz
  with the spectral index (:func:`windhorst_las`).
* Source counts: ``dN/dS ~ S^-alpha`` between ``s_min`` and ``s_max`` (inverse CDF).
* One seed per source: :func:`radiodiff.seeds.sky_source_seed` ``(seed, id)``; nothing
  drawn for a source depends on the other sources, the tile or the batch.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np

from radiodiff.seeds import sky_draw_rng, sky_pa_rng
from radiodiff.skymap.sky import Beam, MapGrid, gaussian_covariance

log = logging.getLogger(__name__)

__all__ = ["Sources", "read_catalogue", "select_on_map", "draw_sources",
           "peak_from_total", "total_from_peak", "windhorst_las", "power_law_fluxes",
           "fill_position_angles", "observed_covariance", "COLUMN_ALIASES"]

# Our name -> recognised catalogue names (lower case): ours, T-RECS, PyBDSF/LoTSS, FIRST.
COLUMN_ALIASES = {
    "ra": ("ra", "ra_deg", "raj2000", "lon", "longitude"),
    "dec": ("dec", "dec_deg", "dej2000", "decj2000", "lat", "latitude"),
    "flux": ("flux", "flux_jy", "total_flux", "int_flux", "s_int", "fint"),
    "peak": ("peak", "peak_flux", "peak_flux_jyb", "fpeak"),
    # PyBDSF's deconvolved (intrinsic) DC_* before its beam-convolved Maj / Min / PA
    "las": ("las", "las_arcsec", "size", "dc_maj", "maj", "major"),
    "q": ("q", "axis_ratio", "axis ratio", "axratio", "b_a"),   # minor / major
    "minor": ("las_minor", "dc_min", "minor", "min"),           # minor-axis FWHM: q = min / las
    "cls": ("class", "cls", "morphology", "fr_class", "radioclass"),
    "pa": ("dc_pa", "pa", "pa_deg"),
}
# size columns PyBDSF names and writes in degrees: read without a unit, they are warned of
_PYBDSF_SIZES = ("dc_maj", "maj", "dc_min", "min")
REQUIRED = ("ra", "dec", "flux")
_TRECS_FLUX = re.compile(r"^i(\d+)$")   # T-RECS I<MHz> columns, in mJy


@dataclass
class Sources:
    """Column arrays, one row per source (units in the module docstring)."""
    id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray
    peak: np.ndarray
    las: np.ndarray
    cls: np.ndarray
    pa: np.ndarray
    q: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.id)

    def take(self, mask_or_index) -> "Sources":
        cols = {f.name: getattr(self, f.name)[mask_or_index]
                for f in fields(self) if f.name != "skipped"}
        return Sources(**cols, skipped=dict(self.skipped))

    @classmethod
    def build(cls, ra, dec, flux, peak=None, las=None, cls_=None, pa=None,
              ids=None, q=None) -> "Sources":
        n = len(ra)
        full = (lambda v, fill: np.full(n, fill, float) if v is None
                else np.asarray(v, float))
        return cls(id=np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64),
                   ra=np.asarray(ra, float), dec=np.asarray(dec, float),
                   flux=np.asarray(flux, float), peak=full(peak, np.nan),
                   las=full(las, 0.0), pa=full(pa, np.nan), q=full(q, 1.0),
                   cls=np.full(n, "", object) if cls_ is None
                   else np.array([_class_name(c) for c in cls_], dtype=object))


def _class_name(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip()


# --------------------------------------------------------------------------- rules

def observed_covariance(beam: Beam, las, q=1.0, pa=0.0) -> np.ndarray:
    """Covariance (..., 2, 2) [arcsec^2, map pixel axes] of a Gaussian source of intrinsic
    FWHMs ``las`` and ``q * las`` (arcsec; NaN: 0) at ``pa`` (deg on the pixel axes, see
    :func:`~radiodiff.skymap.sky.gaussian_covariance`) seen through ``beam``."""
    las = np.nan_to_num(np.asarray(las, float), nan=0.0)
    return beam.covariance() + gaussian_covariance(las, las * np.asarray(q, float), pa)


def _beams_per_source(beam: Beam, las, q, pa) -> np.ndarray:
    """``sqrt(det C_obs / det C_beam)``: integrated flux (Jy) per peak (Jy/beam)."""
    det = lambda c: c[..., 0, 0] * c[..., 1, 1] - c[..., 0, 1] ** 2
    return np.sqrt(det(observed_covariance(beam, las, q, pa)) / det(beam.covariance()))


def peak_from_total(flux, las, beam: Beam, q=1.0, pa=0.0) -> np.ndarray:
    """Peak (Jy/beam) of a Gaussian of FWHMs ``las``, ``q * las`` (arcsec) at ``pa`` and
    flux ``flux`` (Jy) seen through ``beam``; round: ``P = S bmaj bmin / (bmaj_obs bmin_obs)``."""
    return np.asarray(flux, float) / _beams_per_source(beam, las, q, pa)


def total_from_peak(peak, las, beam: Beam, q=1.0, pa=0.0) -> np.ndarray:
    """Inverse of :func:`peak_from_total` (Jy from Jy/beam)."""
    return np.asarray(peak, float) * _beams_per_source(beam, las, q, pa)


def windhorst_las(flux_jy, freq_hz: float, spectral_index: float,
                  rng: np.random.Generator) -> np.ndarray:
    """LAS (arcsec) drawn from the Windhorst et al. (1990, 1993) size distribution."""
    s14_mjy = 1e3 * np.asarray(flux_jy, float) * (1.4e9 / freq_hz) ** spectral_index
    psi_med = 2.0 * s14_mjy ** 0.3
    u = rng.uniform(np.finfo(float).tiny, 1.0, size=s14_mjy.shape)  # h(>psi) = u
    return psi_med * (-np.log(u) / math.log(2.0)) ** (1.0 / 0.62)


def power_law_fluxes(n: int, alpha: float, s_min: float, s_max: float,
                     rng: np.random.Generator) -> np.ndarray:
    """``n`` fluxes (Jy) from ``dN/dS ~ S^-alpha`` on [s_min, s_max] (inverse CDF)."""
    if not 0 < s_min < s_max:
        raise ValueError(f"need 0 < s_min_jy < s_max_jy, got {s_min}, {s_max}")
    u = rng.uniform(size=n)
    if math.isclose(alpha, 1.0):
        return s_min * (s_max / s_min) ** u
    a, b = s_min ** (1 - alpha), s_max ** (1 - alpha)
    return (a + u * (b - a)) ** (1.0 / (1 - alpha))


def fill_position_angles(sources: Sources, seed: int) -> Sources:
    """PA uniform in [0, 360) deg where not given, from each source's own seed."""
    pa = sources.pa.copy()
    for i in np.flatnonzero(~np.isfinite(pa)):
        pa[i] = sky_pa_rng(seed, sources.id[i]).uniform(0.0, 360.0)
    out = sources.take(slice(None))
    out.pa = pa
    return out


# --------------------------------------------------------------------------- catalogue

def _read_table(path: Path):
    from astropy.table import Table

    from radiodiff.io.text import read_csv_table

    if not path.is_file():
        raise FileNotFoundError(f"{path}: catalogue not found")
    name = path.name.lower()
    fmt = "ascii.csv" if name.endswith((".csv", ".csv.gz")) else None
    try:  # CSV: any encoding and line endings (one rule, radiodiff.io.text)
        return read_csv_table(path) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for a bad file
        raise ValueError(f"{path}: not a readable CSV or FITS table ({exc})") from exc


def _find_columns(names, columns: dict, freq_hz: float) -> dict[str, str]:
    """Our name -> table column: explicit ``columns`` first, then the aliases."""
    lower = {n.lower(): n for n in names}
    found = {}
    for ours, aliases in COLUMN_ALIASES.items():
        if ours in columns:
            if columns[ours] not in names:
                raise ValueError(f"column {columns[ours]!r} (for {ours}) is not in the "
                                 f"catalogue; it has: {', '.join(names)}")
            found[ours] = columns[ours]
            continue
        hit = next((lower[a] for a in aliases if a in lower), None)
        if hit is not None:
            found[ours] = hit
    if "flux" not in found:  # T-RECS: the I<MHz> column nearest the survey frequency
        trecs = {int(m.group(1)): n for n in names if (m := _TRECS_FLUX.match(n.lower()))}
        if trecs:
            found["flux"] = trecs[min(trecs, key=lambda mhz: abs(mhz * 1e6 - freq_hz))]
    return found


def _values(table, column: str, unit: str) -> np.ndarray:
    """A column as float in ``unit`` (its own unit when it has one); masked -> NaN."""
    from astropy import units as u

    col = table[column]
    data = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
    if col.unit is not None and unit:
        try:
            data = (data * u.Unit(col.unit)).to_value(unit)
        except u.UnitConversionError as exc:
            raise ValueError(f"column {column!r} has unit {col.unit}, not convertible to "
                             f"{unit}") from exc
    return data


def read_catalogue(path: str | Path, columns: Optional[dict] = None,
                   flux_unit: Optional[str] = None, freq_hz: float = 1.4e9) -> Sources:
    """Sources of a CSV or FITS table (rows keep their index as ``id``).

    Columns are recognised by name (:data:`COLUMN_ALIASES`, case-insensitive; T-RECS
    ``I<MHz>`` fluxes, the one nearest ``freq_hz``), or named in ``columns`` (our name ->
    column). Flux unit: the column's own unit, else ``flux_unit``, else mJy for T-RECS
    ``I<MHz>`` columns, else Jy. Sizes: the column unit, else arcsec. Shape of the Gaussian
    sources: the axis ratio ``q`` (minor / major), else ``minor / las`` from a minor-axis
    column, else round. (T-RECS ``e1, e2`` are not read: their ellipticity convention is
    not in the table; convert them to ``q`` and ``pa``.)

    Raises
    ------
    ValueError
        Unreadable table or a required column (ra, dec, flux) missing.
    """
    from astropy import units as u

    path = Path(path)
    table = _read_table(path)
    found = _find_columns(list(table.colnames), dict(columns or {}), freq_hz)
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise ValueError(f"{path}: catalogue has no {'/'.join(missing)} column (recognised: "
                         + "; ".join(f"{k}: {', '.join(v)}" for k, v in COLUMN_ALIASES.items()
                                     if k in missing)
                         + f"; it has: {', '.join(table.colnames)}); name them with "
                         "sources.columns.<name>=<column>")
    unit = flux_unit or ("mJy" if _TRECS_FLUX.match(found["flux"].lower()) else "Jy")
    u.Unit(unit)  # a bad unit name fails here, with astropy's message
    get = lambda name, un: _values(table, found[name], un) if name in found else None
    cls_ = list(table[found["cls"]]) if "cls" in found else None
    for name in ("las", "minor"):
        column = found.get(name)
        if column and column.lower() in _PYBDSF_SIZES and table[column].unit is None:
            log.warning("%s: column %r has no unit and is read in arcsec (PyBDSF writes "
                        "degrees: give it its unit, or sources.columns.%s=<column>)",
                        path, column, name)
    peak, las = get("peak", f"{unit}/beam"), get("las", "arcsec")
    q = get("q", "")
    if q is None and "minor" in found and las is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            q = get("minor", "arcsec") / las
    return Sources.build(get("ra", "deg"), get("dec", "deg"), get("flux", unit) * u.Unit(
        unit).to("Jy"), peak=None if peak is None else peak * u.Unit(unit).to("Jy"),
        las=las, cls_=cls_, pa=get("pa", "deg"), q=q)


def select_on_map(sources: Sources, grid: MapGrid, on_bad: str = "skip") -> Sources:
    """Sources with a finite position on the map and a positive finite flux.

    Others are dropped and counted in ``skipped`` (``bad_position``, ``bad_flux``,
    ``off_map``: centre pixel outside the map); ``on_bad="stop"`` raises on the first kind
    instead. A missing (NaN) or negative size is a point source (counted ``no_size``); an
    axis ratio outside (0, 1] of a source with a size makes it round (counted
    ``bad_axis_ratio``; a missing one is round, not counted).
    """
    if on_bad not in ("skip", "stop"):
        raise ValueError(f"sources.on_bad must be skip or stop, got {on_bad!r}")
    bad_pos = ~(np.isfinite(sources.ra) & np.isfinite(sources.dec)
                & (np.abs(sources.dec) <= 90))
    bad_flux = ~bad_pos & ~(np.isfinite(sources.flux) & (sources.flux > 0))
    x, y = grid.to_pixel(np.where(bad_pos, 0.0, sources.ra), np.where(bad_pos, 0.0,
                                                                      sources.dec))
    ny, nx = grid.shape
    inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    off = ~bad_pos & ~bad_flux & ~inside
    counts = {"bad_position": int(bad_pos.sum()), "bad_flux": int(bad_flux.sum()),
              "off_map": int(off.sum())}
    if on_bad == "stop":
        for reason, mask in (("bad_position", bad_pos), ("bad_flux", bad_flux),
                             ("off_map", off)):
            if mask.any():
                row = int(sources.id[np.flatnonzero(mask)[0]])
                raise ValueError(f"catalogue row {row}: {reason.replace('_', ' ')} "
                                 f"({counts[reason]} such rows; sources.on_bad=skip drops "
                                 "and counts them)")
    out = sources.take(~(bad_pos | bad_flux | off))
    no_size = ~(np.isfinite(out.las) & (out.las >= 0))
    out.las = np.where(no_size, 0.0, out.las)
    bad_q = (out.las > 0) & np.isfinite(out.q) & ~((out.q > 0) & (out.q <= 1))
    out.q = np.where(bad_q | ~np.isfinite(out.q) | (out.las <= 0), 1.0, out.q)
    out.skipped = {**sources.skipped, **counts, "no_size": int(no_size.sum()),
                   "bad_axis_ratio": int(bad_q.sum())}
    return out


# --------------------------------------------------------------------------- drawing

def _model_draws(release, n: int, beam: Beam, rng: np.random.Generator):
    """(flux, peak, las, classes or None) of ``n`` sources from the release's training set.

    With its training rows' conditions (``train_conditions.csv``): ``n`` rows drawn with
    replacement, so peak, LAS and class come jointly, as in the survey. Without (older
    releases): peak and LAS independent, from the log-normal (or Box-Cox-normal)
    marginals the transform records, and no class (drawn uniformly by the caller).
    """
    table = release.train_conditions
    if table is not None:
        rows = rng.integers(0, len(table), n)
        peak = table.columns["peak_flux"][rows]
        las = table.columns["las_arcsec"][rows]
        labels = table.columns["label"][rows] if "label" in table.columns else None
        cls_ = None if labels is None else [release.classes[k] for k in labels]
        return total_from_peak(peak, las, beam), peak, las, cls_
    z = rng.standard_normal((2, n))  # the transform standardises each condition
    peak = release.transform.decode("peak_flux", z[0])
    las = release.transform.decode("las_arcsec", z[1])
    return total_from_peak(peak, las, beam), peak, las, None


def draw_sources(grid: MapGrid, seed: int, density_per_deg2: float, alpha: float,
                 s_min: float, s_max: float, freq_hz: float, spectral_index: float,
                 release=None, draw: str = "auto") -> Sources:
    """Poisson(density x area) sources uniform over the map (in pixels: a small field).

    ``draw``: ``power_law`` (fluxes from the counts, LAS from :func:`windhorst_las`),
    ``model`` (peak flux, LAS and class from the release's training set, jointly when it
    records its training rows' conditions, else peak and LAS from their marginals,
    independent: :func:`_model_draws`), or ``auto`` (model when the release is
    conditioned on both, else power law). Classes not drawn with the rows: uniform over the
    release's classes, none without a release.
    """
    ny, nx = grid.shape
    if not density_per_deg2 >= 0:
        raise ValueError(f"density_per_deg2 must be >= 0, got {density_per_deg2}")
    scalars = set(release.scalar_conditions) if release is not None else set()
    has_marginals = {"peak_flux", "las_arcsec"} <= scalars
    if draw not in ("auto", "power_law", "model"):
        raise ValueError(f"sources.draw must be auto, power_law or model, got {draw!r}")
    if draw == "model" and not has_marginals:
        raise ValueError("sources.draw=model needs a release conditioned on peak_flux and "
                         "las_arcsec")
    rng = sky_draw_rng(seed)
    area = nx * ny * (grid.pixel_scale_arcsec / 3600.0) ** 2
    n = int(rng.poisson(density_per_deg2 * area))
    x, y = rng.uniform(-0.5, nx - 0.5, n), rng.uniform(-0.5, ny - 0.5, n)
    ra, dec = grid.wcs.pixel_to_world_values(x, y)
    cls_ = None
    if draw == "model" or (draw == "auto" and has_marginals):
        flux, peak, las, cls_ = _model_draws(release, n, grid.beam, rng)
    else:
        flux = power_law_fluxes(n, alpha, s_min, s_max, rng)
        peak, las = None, windhorst_las(flux, freq_hz, spectral_index, rng)
    classes = release.classes if release is not None else []
    if cls_ is None and classes:
        cls_ = [classes[k] for k in rng.integers(0, len(classes), n)]
    return Sources.build(np.asarray(ra) % 360.0, dec, flux, peak=peak, las=las, cls_=cls_)
