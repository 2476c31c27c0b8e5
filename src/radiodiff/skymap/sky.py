"""The map grid: celestial WCS, restoring beam, tiles and the WCS of a source cutout.

Conventions: pixel coordinates are 0-based, ``x`` the column (FITS axis 1) and ``y`` the
row; arrays are indexed ``data[y, x]``. RA grows to the left (CDELT1 < 0). Position angles
are degrees east of north (astronomical: from north through east, i.e. from +y towards -x
at the reference pixel); :func:`gaussian_covariance` holds that rule for Gaussians on the
pixel axes, :func:`cutout_wcs` for rotated cutouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

__all__ = ["FWHM_PER_SIGMA", "Beam", "MapGrid", "make_grid", "tile_rows", "cutout_wcs",
           "gaussian_covariance"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
PROJECTIONS = ("SIN", "TAN")


@dataclass(frozen=True)
class Beam:
    """Elliptical Gaussian restoring beam: FWHMs in arcsec, PA in degrees east of north."""
    bmaj: float
    bmin: float
    pa: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bmaj) and math.isfinite(self.bmin)
                and self.bmaj >= self.bmin > 0):
            raise ValueError(f"beam needs bmaj >= bmin > 0 (arcsec), got {self.bmaj}, "
                             f"{self.bmin}")
        if not math.isfinite(self.pa):
            raise ValueError(f"beam position angle must be finite (deg), got {self.pa}")

    @property
    def area_arcsec2(self) -> float:
        """Solid angle of the beam, pi bmaj bmin / (4 ln 2) [arcsec^2]."""
        return math.pi * self.bmaj * self.bmin / (4.0 * math.log(2.0))

    def area_px(self, pixel_scale_arcsec: float) -> float:
        """Beam solid angle in pixels: Jy/beam -> Jy is ``sum(pixels) / area_px``."""
        return self.area_arcsec2 / pixel_scale_arcsec**2

    def covariance(self) -> np.ndarray:
        """(2, 2) covariance of the beam on the map's pixel axes (x, y) [arcsec^2]."""
        return gaussian_covariance(self.bmaj, self.bmin, self.pa)


def gaussian_covariance(fwhm_maj, fwhm_min, pa_deg) -> np.ndarray:
    """Covariance (..., 2, 2) [arcsec^2] on the pixel axes (x, y) of a Gaussian of FWHMs
    ``fwhm_maj``, ``fwhm_min`` (arcsec) whose major axis lies at ``pa_deg`` east of north.

    With north up and RA growing to the left, the major axis points along
    ``(-sin PA, cos PA)`` in (x, y): PA 0 is +y, PA 90 is -x (east). A Gaussian convolved
    with another has the sum of their covariances.
    """
    maj, mn, pa = np.broadcast_arrays(*(np.asarray(v, float) for v in (fwhm_maj, fwhm_min,
                                                                         pa_deg)))
    a, b = (maj / FWHM_PER_SIGMA) ** 2, (mn / FWHM_PER_SIGMA) ** 2
    s, c = np.sin(np.radians(pa)), np.cos(np.radians(pa))
    u, v = np.stack([-s, c], -1), np.stack([c, s], -1)    # major, minor axis directions
    return (a[..., None, None] * u[..., :, None] * u[..., None, :]
            + b[..., None, None] * v[..., :, None] * v[..., None, :])


@dataclass(frozen=True)
class MapGrid:
    """A map of ``shape`` = (ny, nx) pixels of ``pixel_scale_arcsec`` on ``wcs``."""
    wcs: WCS
    shape: tuple[int, int]
    pixel_scale_arcsec: float
    beam: Beam

    def to_pixel(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) 0-based pixel coordinates of RA/Dec (deg)."""
        x, y = self.wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
        return np.asarray(x, float), np.asarray(y, float)

    def north_deg(self, x: float, y: float) -> float:
        """Angle (deg) of local north at pixel (x, y) from the +y axis, counted towards -x:
        0 on the reference meridian; add it to a sky PA to get the PA on the pixel axes."""
        ra, dec = self.wcs.pixel_to_world_values(x, y)
        step = -1.0 if dec > 89.0 else 1.0                     # 1 arcsec, away from the pole
        x1, y1 = self.wcs.world_to_pixel_values(ra, dec + step / 3600.0)
        return math.degrees(math.atan2(-step * (x1 - x), step * (y1 - y)))

    def sub_wcs(self, y0: int, x0: int) -> WCS:
        """The WCS of the pixels from (y0, x0) on (may start outside the map)."""
        w = self.wcs.deepcopy()
        w.wcs.crpix = [w.wcs.crpix[0] - x0, w.wcs.crpix[1] - y0]
        return w


def make_grid(ra_deg: float, dec_deg: float, size_deg, pixel_scale_arcsec: float,
              beam: Beam, projection: str = "SIN") -> MapGrid:
    """A ``size_deg`` = (width, height) map centred on (ra, dec) at CRPIX = (n + 1) / 2."""
    projection = str(projection).upper()
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {list(PROJECTIONS)}, got {projection!r}")
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90 <= dec_deg <= 90):
        raise ValueError(f"need a finite RA and -90 <= Dec <= 90 (deg), got {ra_deg}, {dec_deg}")
    if not pixel_scale_arcsec > 0:
        raise ValueError(f"pixel_scale_arcsec must be > 0, got {pixel_scale_arcsec}")
    if len(size_deg) != 2 or not all(math.isfinite(float(s)) and float(s) > 0
                                     for s in size_deg):
        raise ValueError(f"size_deg must be [width, height] > 0 (deg), got {list(size_deg)}")
    width, height = (float(s) for s in size_deg)
    nx, ny = (int(round(s * 3600.0 / pixel_scale_arcsec)) for s in (width, height))
    if nx < 8 or ny < 8:
        raise ValueError(f"map of {size_deg} deg at {pixel_scale_arcsec}\" is {nx} x {ny} px; "
                         f"need at least 8 x 8")
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = [float(ra_deg) % 360.0, float(dec_deg)]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cdelt = [-pixel_scale_arcsec / 3600.0, pixel_scale_arcsec / 3600.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    return MapGrid(wcs=w, shape=(ny, nx), pixel_scale_arcsec=float(pixel_scale_arcsec),
                   beam=beam)


def tile_rows(ny: int, k: int, n: int) -> tuple[int, int]:
    """Rows [r0, r1) of tile ``k`` of ``n`` horizontal strips (shard k of n, 0-based)."""
    if not (isinstance(n, int) and isinstance(k, int) and n >= 1 and 0 <= k < n):
        raise ValueError(f"shard must be K/N with 0 <= K < N, got {k}/{n}")
    if n > ny:
        raise ValueError(f"{n} shards for a map of {ny} rows: at most one shard per row")
    return k * ny // n, (k + 1) * ny // n


def cutout_wcs(ra: float, dec: float, pixel_scale_arcsec: float, pa_deg: float,
               size: int, projection: str = "SIN") -> WCS:
    """WCS of a ``size`` x ``size`` cutout centred on (ra, dec) whose +y axis points to
    ``pa_deg`` east of north (the cutout's "up" rotated by its position angle)."""
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = [float(ra), float(dec)]
    w.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]
    w.wcs.cdelt = [-pixel_scale_arcsec / 3600.0, pixel_scale_arcsec / 3600.0]
    c, s = math.cos(math.radians(pa_deg)), math.sin(math.radians(pa_deg))
    w.wcs.pc = [[c, -s], [s, c]]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    return w
