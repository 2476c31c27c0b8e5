"""Synthetic survey inputs with known truth, for tests.

Everything here is written with numpy and astropy only and is seeded
(``np.random.default_rng(seed)``), so the same arguments give the same bytes (the
tile-compressed writer uses a fixed dither seed derived from ``seed``).

Conventions used throughout
---------------------------
* Pixel coordinates are 0-based, ``x`` is the column (FITS axis 1) and ``y`` the row
  (FITS axis 2); arrays are indexed ``data[y, x]``.
* Source sizes (``major_arcsec``, ``minor_arcsec``) are *intrinsic* FWHMs. The image of a
  component is the intrinsic Gaussian convolved with the (round) restoring beam, so
  ``sigma_obs**2 = sigma_int**2 + sigma_beam**2`` on each axis, and its *peak* in the image
  is the requested ``peak`` in Jy/beam.
* Position angles are in degrees east of north (astronomical convention).
* Total flux density of one component: ``S = peak * 2*pi*sx*sy / (2*pi*sb**2)
  = peak * sx * sy / sb**2`` [Jy], with ``sx, sy`` the observed (convolved) sigmas and
  ``sb`` the beam sigma, all in the same unit. A double is the sum of its two lobes.
* Largest angular size (LAS) of a set of components:
  ``max over pairs (i, j) of |p_i - p_j| + (FWHM_i + FWHM_j) / 2`` where FWHM is the
  *observed* (beam-convolved) major-axis FWHM; for a single component this is its observed
  major FWHM, for a symmetric double it is ``separation + FWHM_lobe``.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.table import Table
from astropy.wcs import WCS

__all__ = [
    "FWHM_TO_SIGMA",
    "LOTSS_COLUMNS",
    "MIRABEST_COLUMNS",
    "gaussian_source",
    "component_total_flux",
    "observed_fwhm",
    "largest_angular_size",
    "lotss_header",
    "first_header",
    "write_lotss_mosaic",
    "write_lotss_catalog",
    "make_lotss_fixture",
    "write_first_field",
    "first_model",
    "write_mirabest_like",
    "write_truncated",
    "write_garbage",
    "write_no_wcs",
    "write_tab_header",
    "write_nan_field",
    "write_3d_nondegenerate",
    "source_truth",
    "copy_file",
]

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

LOTSS_COLUMNS = ("Source_Name", "RA", "DEC", "ID_RA", "ID_DEC", "LAS", "Mosaic_ID",
                 "Peak_flux", "Total_flux")
_LOTSS_UNITS = {"RA": "deg", "DEC": "deg", "ID_RA": "deg", "ID_DEC": "deg", "LAS": "arcsec",
                "Peak_flux": "mJy/beam", "Total_flux": "mJy"}

MIRABEST_COLUMNS = ("file", "mirabest_code", "fr_class", "confident", "morphology",
                    "ra_deg", "dec_deg", "redshift", "las_arcsec")

FIRST_BEAM_ARCSEC = 5.4
FIRST_PIXEL_ARCSEC = 1.8
FIRST_NOISE_JYB = 1.5e-4


# --------------------------------------------------------------------------------------
# Gaussian components
# --------------------------------------------------------------------------------------

def gaussian_source(shape, x0, y0, peak, sigma_major_px, sigma_minor_px, theta_rad):
    """An elliptical Gaussian sampled on a pixel grid.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the output array.
    x0, y0 : float
        Centre in 0-based pixel coordinates (``x`` = column, ``y`` = row).
    peak : float
        Value at the centre.
    sigma_major_px, sigma_minor_px : float
        Standard deviations along the major and minor axes, in pixels (> 0).
    theta_rad : float
        Angle of the major axis from the +x axis towards +y, in radians.

    Returns
    -------
    numpy.ndarray
        2-D float64 array of shape ``shape``.
    """
    ny, nx = shape
    y, x = np.ogrid[0:ny, 0:nx]
    dx = x - float(x0)
    dy = y - float(y0)
    c, s = np.cos(theta_rad), np.sin(theta_rad)
    u_ = dx * c + dy * s
    v_ = -dx * s + dy * c
    arg = (u_ / float(sigma_major_px)) ** 2 + (v_ / float(sigma_minor_px)) ** 2
    return float(peak) * np.exp(-0.5 * arg)


def observed_fwhm(intrinsic_fwhm_arcsec, beam_fwhm_arcsec):
    """Beam-convolved FWHM (arcsec) of a Gaussian axis of intrinsic FWHM ``intrinsic``.

    Parameters
    ----------
    intrinsic_fwhm_arcsec : float
        Intrinsic (deconvolved) FWHM; 0 for a point source.
    beam_fwhm_arcsec : float
        FWHM of the round restoring beam.

    Returns
    -------
    float
        ``sqrt(intrinsic**2 + beam**2)``.
    """
    return float(np.hypot(intrinsic_fwhm_arcsec, beam_fwhm_arcsec))


def component_total_flux(peak_jyb, major_arcsec, minor_arcsec, beam_arcsec):
    """Integrated flux density (Jy) of one beam-convolved Gaussian component.

    Parameters
    ----------
    peak_jyb : float
        Peak in the image, Jy/beam.
    major_arcsec, minor_arcsec : float
        Intrinsic FWHMs (0 for a point source).
    beam_arcsec : float
        FWHM of the round restoring beam.

    Returns
    -------
    float
        ``peak * sx * sy / sb**2`` with observed sigmas ``sx, sy`` and beam sigma ``sb``.
    """
    fx = observed_fwhm(major_arcsec, beam_arcsec)
    fy = observed_fwhm(minor_arcsec, beam_arcsec)
    return float(peak_jyb) * fx * fy / float(beam_arcsec) ** 2


def largest_angular_size(components, beam_arcsec):
    """LAS (arcsec) of components given as dicts with ``ra``, ``dec``, ``major_arcsec``.

    Parameters
    ----------
    components : sequence of dict
        Each with ``ra``, ``dec`` (deg) and ``major_arcsec`` (intrinsic FWHM).
    beam_arcsec : float
        Restoring-beam FWHM.

    Returns
    -------
    float
        ``max_ij |p_i - p_j| + (FWHM_i + FWHM_j) / 2`` with observed major FWHMs (see the
        module docstring); for one component its observed major FWHM.
    """
    coords = SkyCoord([c["ra"] for c in components], [c["dec"] for c in components],
                      unit="deg", frame="icrs")
    fwhm = np.array([observed_fwhm(c.get("major_arcsec", 0.0), beam_arcsec)
                     for c in components])
    best = float(fwhm.max())
    for i in range(len(components)):
        sep = coords[i].separation(coords).to_value(u.arcsec)
        best = max(best, float(np.max(sep + 0.5 * (fwhm[i] + fwhm))))
    return best


def _pixel_axis_angle(wcs, coord, pa_deg):
    """Angle (rad, from +x towards +y) of the on-sky direction ``pa_deg`` at ``coord``."""
    x0, y0 = wcs.world_to_pixel(coord)
    tip = coord.directional_offset_by(pa_deg * u.deg, 1.0 * u.arcsec)
    x1, y1 = wcs.world_to_pixel(tip)
    return float(np.arctan2(float(y1) - float(y0), float(x1) - float(x0)))


def _add_component(data, wcs, ra, dec, peak, major_arcsec, minor_arcsec, pa_deg,
                   beam_arcsec, pixel_arcsec):
    """Add one beam-convolved component in place; return its (x, y) pixel position."""
    coord = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    x, y = (float(v) for v in wcs.world_to_pixel(coord))
    theta = _pixel_axis_angle(wcs, coord, pa_deg)
    s_maj = observed_fwhm(major_arcsec, beam_arcsec) * FWHM_TO_SIGMA / pixel_arcsec
    s_min = observed_fwhm(minor_arcsec, beam_arcsec) * FWHM_TO_SIGMA / pixel_arcsec
    data += gaussian_source(data.shape, x, y, peak, s_maj, s_min, theta)
    return x, y


def _double_positions(ra, dec, sep_arcsec, pa_deg):
    """Sky positions (deg) of two lobes at +-sep/2 from (ra, dec) along ``pa_deg``."""
    centre = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    out = []
    for sign in (+1.0, -1.0):
        p = centre.directional_offset_by((pa_deg + (0.0 if sign > 0 else 180.0)) * u.deg,
                                         0.5 * sep_arcsec * u.arcsec)
        out.append((float(p.ra.deg), float(p.dec.deg)))
    return out


def _source_components(src):
    """Components (dicts) of a source spec: one for a single, two for a double."""
    major = float(src.get("major_arcsec", 0.0))
    minor = float(src.get("minor_arcsec", major))
    pa = float(src.get("pa_deg", 0.0))
    sep = float(src.get("double_sep_arcsec", 0.0) or 0.0)
    base = dict(peak=float(src["peak"]), major_arcsec=major, minor_arcsec=minor, pa_deg=pa)
    if sep > 0:
        return [dict(base, ra=r, dec=d) for r, d in _double_positions(src["ra"], src["dec"],
                                                                        sep, pa)]
    return [dict(base, ra=float(src["ra"]), dec=float(src["dec"]))]


def source_truth(src, beam_arcsec):
    """Peak, total flux and LAS of a source spec as :func:`write_lotss_mosaic` draws it.

    Parameters
    ----------
    src : dict
        Source spec (``ra``, ``dec``, ``peak`` and the optional size keys).
    beam_arcsec : float
        Restoring-beam FWHM.

    Returns
    -------
    dict
        ``peak_jyb`` (per lobe for a double), ``total_jy`` and ``las_arcsec``.
    """
    comps = _source_components(src)
    total = sum(component_total_flux(c["peak"], c["major_arcsec"], c["minor_arcsec"],
                                     beam_arcsec) for c in comps)
    return dict(peak_jyb=float(src["peak"]), total_jy=float(total),
                las_arcsec=largest_angular_size(comps, beam_arcsec))


# --------------------------------------------------------------------------------------
# LoTSS-DR2-like mosaics and catalogues
# --------------------------------------------------------------------------------------

def lotss_header(ra0, dec0, shape=(600, 600), pixel_arcsec=1.5, beam_arcsec=6.0,
                 freq_hz=144e6, four_d=False, mosaic_id=None):
    """Header of a LoTSS-DR2-like mosaic (SIN projection, reference pixel at the centre).

    Parameters
    ----------
    ra0, dec0 : float
        Field centre (deg, ICRS).
    shape : tuple of int
        ``(ny, nx)`` of the image plane.
    pixel_arcsec, beam_arcsec, freq_hz : float
        Pixel size, round restoring-beam FWHM and observing frequency.
    four_d : bool
        Add degenerate FREQ (axis 3) and STOKES (axis 4) axes.
    mosaic_id : str, optional
        Written as OBJECT.

    Returns
    -------
    astropy.io.fits.Header
    """
    ny, nx = shape
    h = fits.Header()
    h["BUNIT"] = ("JY/BEAM", "Units are in Jansky per beam")
    h["BTYPE"] = "Intensity"
    h["BMAJ"] = (beam_arcsec / 3600.0, "[deg] restoring beam major axis")
    h["BMIN"] = (beam_arcsec / 3600.0, "[deg] restoring beam minor axis")
    h["BPA"] = (0.0, "[deg] restoring beam position angle")
    h["CTYPE1"] = "RA---SIN"
    h["CRVAL1"] = float(ra0)
    h["CRPIX1"] = (nx + 1) / 2.0
    h["CDELT1"] = -pixel_arcsec / 3600.0
    h["CUNIT1"] = "deg"
    h["CTYPE2"] = "DEC--SIN"
    h["CRVAL2"] = float(dec0)
    h["CRPIX2"] = (ny + 1) / 2.0
    h["CDELT2"] = pixel_arcsec / 3600.0
    h["CUNIT2"] = "deg"
    if four_d:
        h["CTYPE3"] = "FREQ"
        h["CRVAL3"] = float(freq_hz)
        h["CRPIX3"] = 1.0
        h["CDELT3"] = 48e6
        h["CUNIT3"] = "Hz"
        h["CTYPE4"] = "STOKES"
        h["CRVAL4"] = 1.0
        h["CRPIX4"] = 1.0
        h["CDELT4"] = 1.0
        h["CUNIT4"] = ""
    h["RADESYS"] = "ICRS"
    h["EQUINOX"] = 2000.0
    h["RESTFRQ"] = (float(freq_hz), "[Hz]")
    h["FREQ"] = (float(freq_hz), "[Hz] central frequency")
    h["TELESCOP"] = "LOFAR"
    if mosaic_id is not None:
        h["OBJECT"] = str(mosaic_id)
    return h


def _celestial_wcs(header):
    """2-D celestial WCS of a (possibly 4-D) header."""
    return WCS(header, naxis=2).celestial


def write_lotss_mosaic(path, ra0, dec0, shape=(600, 600), pixel_arcsec=1.5, beam_arcsec=6.0,
                       noise_jyb=1e-4, sources=(), seed=0, nan_box=None, four_d=False,
                       freq_hz=144e6, mosaic_id=None):
    """Write a LoTSS-DR2-like mosaic (``mosaic-blanked.fits``) with injected sources.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created.
    ra0, dec0 : float
        Field centre (deg); CRPIX is the central pixel.
    shape : tuple of int
        ``(ny, nx)``.
    pixel_arcsec, beam_arcsec : float
        Pixel size and round restoring-beam FWHM (BMAJ = BMIN, BPA = 0).
    noise_jyb : float
        Standard deviation of the Gaussian noise, Jy/beam.
    sources : sequence of dict
        Each with ``ra``, ``dec`` (deg) and ``peak`` (Jy/beam), and optionally
        ``major_arcsec``, ``minor_arcsec`` (intrinsic FWHM, default 0 = point source),
        ``pa_deg`` (east of north) and ``double_sep_arcsec`` (two lobes, each with the given
        peak and size, at +-sep/2 along ``pa_deg``). Positions go through
        ``WCS.world_to_pixel``.
    seed : int
        Noise seed.
    nan_box : tuple of int, optional
        ``(x0, x1, y0, y1)``: ``data[y0:y1, x0:x1]`` is set to NaN after injection.
    four_d : bool
        Write data of shape ``(1, 1, ny, nx)`` with FREQ and STOKES axes.
    freq_hz : float
        Frequency (RESTFRQ, FREQ and CRVAL3).
    mosaic_id : str, optional
        Written as OBJECT.

    Returns
    -------
    astropy.io.fits.Header
        Header of the written primary HDU.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = lotss_header(ra0, dec0, shape, pixel_arcsec, beam_arcsec, freq_hz, four_d,
                          mosaic_id)
    wcs = _celestial_wcs(header)
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, noise_jyb, size=shape)
    for src in sources:
        for comp in _source_components(src):
            _add_component(data, wcs, comp["ra"], comp["dec"], comp["peak"],
                           comp["major_arcsec"], comp["minor_arcsec"], comp["pa_deg"],
                           beam_arcsec, pixel_arcsec)
    if nan_box is not None:
        x0, x1, y0, y1 = (int(v) for v in nan_box)
        data[y0:y1, x0:x1] = np.nan
    data = data.astype(np.float32)
    if four_d:
        data = data[np.newaxis, np.newaxis]
    hdu = fits.PrimaryHDU(data=data, header=header)
    hdu.writeto(path, overwrite=True)
    return hdu.header.copy()


def write_lotss_catalog(path, rows, fmt="fits", drop_columns=()):
    """Write a LoTSS-like value-added catalogue.

    Parameters
    ----------
    path : str or Path
        Output file.
    rows : sequence of dict
        Each with the keys of :data:`LOTSS_COLUMNS` (``Source_Name``, ``RA``, ``DEC``,
        ``ID_RA``, ``ID_DEC`` [deg, NaN if no optical ID], ``LAS`` [arcsec], ``Mosaic_ID``,
        ``Peak_flux`` [mJy/beam], ``Total_flux`` [mJy]). Other keys are appended as extra
        columns.
    fmt : {'fits', 'csv'}
        FITS binary table (with units) or plain CSV.
    drop_columns : sequence of str
        Columns to leave out (to make malformed catalogues).

    Returns
    -------
    astropy.table.Table
        The table as written.
    """
    if fmt not in ("fits", "csv"):
        raise ValueError(f"fmt must be 'fits' or 'csv', not {fmt!r}")
    rows = list(rows)
    names = list(LOTSS_COLUMNS)
    for row in rows:
        names += [k for k in row if k not in names]
    unknown = set(drop_columns) - set(names)
    if unknown:
        raise ValueError(f"cannot drop unknown columns {sorted(unknown)}")
    names = [n for n in names if n not in set(drop_columns)]
    cols = {}
    for name in names:
        values = [row[name] for row in rows]
        if name in ("Source_Name", "Mosaic_ID"):
            cols[name] = np.array([str(v) for v in values], dtype=str)
        else:
            cols[name] = np.array(values)
    table = Table(cols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "fits":
        for name, unit in _LOTSS_UNITS.items():
            if name in table.colnames:
                table[name].unit = unit
        table.write(path, format="fits", overwrite=True)
    else:
        table.write(path, format="ascii.csv", overwrite=True)
    return table


def _iau_name(prefix, ra, dec):
    """IAU-style name, e.g. ``ILTJ004000.00+300000.0``."""
    c = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    ra_s = c.ra.to_string(unit=u.hourangle, sep="", precision=2, pad=True)
    dec_s = c.dec.to_string(unit=u.deg, sep="", precision=1, pad=True, alwayssign=True)
    return f"{prefix}{ra_s}{dec_s}"


# Fixture layout: (Mosaic_ID, ra0, dec0, four_d, nan_box, written?)
_FIXTURE_MOSAICS = (
    ("P001+01", 10.0, 30.0, False, (430, 530, 430, 530), True),
    ("P002+02", 12.0, 31.0, True, None, True),
    ("P003+03", 14.0, 32.0, False, None, False),   # catalogued but never written
)

# (kind, mosaic, x, y, peak [x noise], major, minor, pa, double_sep, optical offset (E, N)")
# Pixel positions are on the 600x600 fixture mosaics; the missing mosaic uses its centre.
_FIXTURE_SOURCES = (
    ("ok", "P001+01", 200.0, 380.0, 200.0, 15.0, 8.0, 30.0, 0.0, (0.0, 0.0)),
    ("ok", "P001+01", 400.0, 220.0, 150.0, 8.0, 5.0, 60.0, 40.0, (2.0, -1.5)),
    ("no_optical", "P001+01", 150.0, 150.0, 100.0, 10.0, 6.0, 120.0, 0.0, None),
    ("faint", "P001+01", 300.0, 300.0, 3.0, 0.0, 0.0, 0.0, 0.0, (0.0, 0.0)),
    ("edge", "P001+01", 590.0, 250.0, 120.0, 10.0, 6.0, 0.0, 0.0, (0.0, 0.0)),
    ("nan", "P001+01", 480.0, 480.0, 100.0, 8.0, 8.0, 0.0, 0.0, (0.0, 0.0)),
    ("ok", "P002+02", 260.0, 330.0, 250.0, 10.0, 6.0, 135.0, 60.0, (-3.0, 2.0)),
    ("ok", "P002+02", 400.0, 200.0, 80.0, 20.0, 10.0, 75.0, 0.0, (1.0, 0.0)),
    ("ok", "P002+02", 180.0, 160.0, 300.0, 6.0, 4.0, 10.0, 30.0, (0.0, 0.0)),
    ("missing_mosaic", "P003+03", 299.5, 299.5, 100.0, 12.0, 6.0, 45.0, 0.0, (0.0, 0.0)),
)


def make_lotss_fixture(root, fmt="fits", seed=0):
    """Write two small LoTSS-like mosaics and a 10-source catalogue with known truth.

    Layout: ``root/mosaics/<Mosaic_ID>/mosaic-blanked.fits`` for ``P001+01`` (ra 10, dec 30,
    2-D, NaN-blanked box ``x, y in [430, 530)``) and ``P002+02`` (ra 12, dec 31, 4-D
    ``(1, 1, ny, nx)``); ``P003+03`` is in the catalogue but has no folder. Mosaics are
    600x600 pixels of 1.5", beam 6", noise 1e-4 Jy/beam. Catalogue: ``root/catalog.<fmt>``.

    Sources (``kind``): five ``ok`` (bright singles and doubles, S/N 80-300, optical
    position equal to or a few arcsec from the radio position, cutouts of side
    ``max(60", 1.5 LAS)`` fully inside valid data), one ``no_optical`` (ID_RA/ID_DEC NaN;
    ``opt_ra``/``opt_dec`` in the truth are the radio position a pipeline should fall back
    to), one ``faint`` (peak = 3 x noise), one ``edge`` (15" from the mosaic edge, so a 60"
    cutout crosses it), one ``nan`` (inside the blanked box) and one ``missing_mosaic``.

    Parameters
    ----------
    root : str or Path
        Output folder (created).
    fmt : {'fits', 'csv'}
        Catalogue format.
    seed : int
        Noise seed (each mosaic uses ``seed + index``).

    Returns
    -------
    dict
        ``mosaics_dir``, ``catalog`` (paths), ``truth`` (list of dicts with ``Source_Name``,
        ``ra``, ``dec``, ``opt_ra``, ``opt_dec``, ``peak_jyb`` (per lobe for doubles),
        ``total_jy``, ``las_arcsec``, ``mosaic``, ``kind`` plus ``x``, ``y`` (0-based pixel
        of the radio position, None for the missing mosaic), ``major_arcsec``,
        ``minor_arcsec``, ``pa_deg``, ``double_sep_arcsec``), ``noise_jyb``,
        ``beam_arcsec``, ``pixel_arcsec``, ``shape``, ``mosaics`` (Mosaic_ID -> path of the
        written files) and ``nan_box``.
    """
    root = Path(root)
    shape, pixel_arcsec, beam_arcsec, noise = (600, 600), 1.5, 6.0, 1e-4
    mosaics_dir = root / "mosaics"
    mosaics_dir.mkdir(parents=True, exist_ok=True)
    headers = {mid: lotss_header(ra0, dec0, shape, pixel_arcsec, beam_arcsec, four_d=fd)
               for mid, ra0, dec0, fd, _, _ in _FIXTURE_MOSAICS}
    truth, specs = [], {mid: [] for mid, *_ in _FIXTURE_MOSAICS}
    for kind, mid, x, y, snr, major, minor, pa, sep, opt in _FIXTURE_SOURCES:
        wcs = _celestial_wcs(headers[mid])
        pos = wcs.pixel_to_world(x, y)
        ra, dec = float(pos.ra.deg), float(pos.dec.deg)
        spec = dict(ra=ra, dec=dec, peak=snr * noise, major_arcsec=major, minor_arcsec=minor,
                    pa_deg=pa, double_sep_arcsec=sep)
        specs[mid].append(spec)
        if opt is None:
            id_ra = id_dec = float("nan")
            opt_ra, opt_dec = ra, dec
        else:
            o = pos.spherical_offsets_by(opt[0] * u.arcsec, opt[1] * u.arcsec)
            id_ra = opt_ra = float(o.ra.deg)
            id_dec = opt_dec = float(o.dec.deg)
        t = source_truth(spec, beam_arcsec)
        written = mid in {m for m, *_, w in _FIXTURE_MOSAICS if w}
        truth.append(dict(Source_Name=_iau_name("ILTJ", ra, dec), ra=ra, dec=dec,
                          opt_ra=opt_ra, opt_dec=opt_dec, id_ra=id_ra, id_dec=id_dec,
                          peak_jyb=t["peak_jyb"], total_jy=t["total_jy"],
                          las_arcsec=t["las_arcsec"], mosaic=mid, kind=kind,
                          x=x if written else None, y=y if written else None,
                          major_arcsec=major, minor_arcsec=minor, pa_deg=pa,
                          double_sep_arcsec=sep))
    mosaics, nan_boxes = {}, {}
    for i, (mid, ra0, dec0, fd, box, written) in enumerate(_FIXTURE_MOSAICS):
        if not written:
            continue
        path = mosaics_dir / mid / "mosaic-blanked.fits"
        write_lotss_mosaic(path, ra0, dec0, shape, pixel_arcsec, beam_arcsec, noise,
                           specs[mid], seed=seed + i, nan_box=box, four_d=fd,
                           mosaic_id=mid)
        mosaics[mid] = path
        if box is not None:
            nan_boxes[mid] = box
    rows = [dict(Source_Name=t["Source_Name"], RA=t["ra"], DEC=t["dec"], ID_RA=t["id_ra"],
                 ID_DEC=t["id_dec"], LAS=t["las_arcsec"], Mosaic_ID=t["mosaic"],
                 Peak_flux=1e3 * t["peak_jyb"], Total_flux=1e3 * t["total_jy"])
            for t in truth]
    catalog = root / f"catalog.{fmt}"
    write_lotss_catalog(catalog, rows, fmt)
    return dict(mosaics_dir=mosaics_dir, catalog=catalog, truth=truth, noise_jyb=noise,
                beam_arcsec=beam_arcsec, pixel_arcsec=pixel_arcsec, shape=shape,
                mosaics=mosaics, nan_box=nan_boxes)


# --------------------------------------------------------------------------------------
# FIRST-like fields and a MiraBest-like folder
# --------------------------------------------------------------------------------------

def first_header(ra0, dec0, shape=(300, 300), pixel_arcsec=FIRST_PIXEL_ARCSEC):
    """Header of a FIRST-like (SkyView) field: TAN projection, no beam keywords.

    Parameters
    ----------
    ra0, dec0 : float
        Field centre (deg).
    shape : tuple of int
        ``(ny, nx)``.
    pixel_arcsec : float
        Pixel size.

    Returns
    -------
    astropy.io.fits.Header
    """
    ny, nx = shape
    h = fits.Header()
    h["BUNIT"] = ("JY/BEAM", "Units of the image")
    h["CTYPE1"] = "RA---TAN"
    h["CRVAL1"] = float(ra0)
    h["CRPIX1"] = (nx + 1) / 2.0
    h["CDELT1"] = -pixel_arcsec / 3600.0
    h["CTYPE2"] = "DEC--TAN"
    h["CRVAL2"] = float(dec0)
    h["CRPIX2"] = (ny + 1) / 2.0
    h["CDELT2"] = pixel_arcsec / 3600.0
    h["RADESYS"] = "ICRS"   # explicit, so the host (ICRS) sits exactly on CRPIX
    h["EQUINOX"] = 2000.0
    h["SURVEY"] = "VLA FIRST (1.4 GHz)"
    return h


def _write_image(path, data, header, compressed, seed=0):
    """Write ``data`` as a plain primary image or as RICE_1-compressed HDU 1."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data, dtype=np.float32)
    if compressed:
        comp = fits.CompImageHDU(data=data, header=header, compression_type="RICE_1",
                                 dither_seed=1 + int(seed) % 10000)
        hdul = fits.HDUList([fits.PrimaryHDU(), comp])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(data=data, header=header)])
    hdul.writeto(path, overwrite=True)
    return path


def write_first_field(path, ra0, dec0, components=(), shape=(300, 300),
                      noise_jyb=FIRST_NOISE_JYB, seed=0, compressed=False,
                      beam_arcsec=FIRST_BEAM_ARCSEC, extra_cards=()):
    """Write a FIRST-like field (TAN, 1.8" pixels, Jy/beam, no BMAJ) with components.

    Parameters
    ----------
    path : str or Path
        Output file.
    ra0, dec0 : float
        Field centre (deg).
    components : sequence of dict
        ``ra``, ``dec``, ``peak`` [Jy/beam] and optional ``major_arcsec``, ``minor_arcsec``,
        ``pa_deg`` (intrinsic, convolved with the 5.4" beam).
    shape : tuple of int
        ``(ny, nx)``.
    noise_jyb : float
        Gaussian noise level.
    seed : int
        Noise seed.
    compressed : bool
        Tile-compressed (RICE_1) image in HDU 1 behind an empty primary, else plain.
    beam_arcsec : float
        Restoring beam used to draw the components (not written to the header).
    extra_cards : sequence of tuple
        ``(keyword, value)`` cards appended to the header (e.g. COMMENT cards).

    Returns
    -------
    astropy.io.fits.Header
        The image header as passed to astropy.
    """
    header = first_header(ra0, dec0, shape)
    for key, value in extra_cards:
        header.append((key, value), end=True)
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, noise_jyb, size=shape)
    data += first_model(ra0, dec0, components, shape, beam_arcsec)
    _write_image(path, data, header, compressed, seed)
    return header


def first_model(ra0, dec0, components=(), shape=(300, 300), beam_arcsec=FIRST_BEAM_ARCSEC):
    """Noise-free image (Jy/beam) of ``components`` on a FIRST-like grid centred on ra0, dec0.

    Parameters
    ----------
    ra0, dec0 : float
        Field centre (deg).
    components : sequence of dict
        As for :func:`write_first_field`.
    shape : tuple of int
        ``(ny, nx)``.
    beam_arcsec : float
        Restoring-beam FWHM.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``shape``.
    """
    wcs = WCS(first_header(ra0, dec0, shape))
    model = np.zeros(shape)
    for c in components:
        major = float(c.get("major_arcsec", 0.0))
        _add_component(model, wcs, float(c["ra"]), float(c["dec"]), float(c["peak"]), major,
                       float(c.get("minor_arcsec", major)), float(c.get("pa_deg", 0.0)),
                       beam_arcsec, FIRST_PIXEL_ARCSEC)
    return model


# (mirabest_code, fr_class, confident, morphology), cycled through by write_mirabest_like.
_MIRABEST_CLASSES = (
    (100, "FRI", True, "standard"),
    (200, "FRII", True, "standard"),
    (110, "FRI", False, "standard"),
    (210, "FRII", False, "standard"),
    (300, "hybrid", True, "standard"),
    (201, "FRII", True, "double-double"),
    (102, "FRI", True, "wide-angle tail"),
    (310, "hybrid", False, "standard"),
)


def _offset(ra, dec, pa_deg, r_arcsec, perp_arcsec=0.0):
    """Sky position r along PA and ``perp`` at PA+90 from (ra, dec)."""
    c = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    if r_arcsec:
        c = c.directional_offset_by(pa_deg * u.deg, r_arcsec * u.arcsec)
    if perp_arcsec:
        c = c.directional_offset_by((pa_deg + 90.0) * u.deg, perp_arcsec * u.arcsec)
    return float(c.ra.deg), float(c.dec.deg)


def _mirabest_components(fr_class, morphology, ra, dec, las, pa, peak, beam):
    """Components of a synthetic FR source of target LAS ``las`` centred on the host."""
    comps = [dict(ra=ra, dec=dec, peak=0.2 * peak, major_arcsec=0.0)]  # compact core
    lobe = dict(major_arcsec=8.0, minor_arcsec=5.0)
    f_lobe = observed_fwhm(lobe["major_arcsec"], beam)

    def frii_side(sign, scale=1.0):
        r = 0.5 * (las - f_lobe) * scale
        p = _offset(ra, dec, pa, sign * r)
        return [dict(lobe, ra=p[0], dec=p[1], peak=peak, pa_deg=pa)]

    def fri_side(sign, bend=0.0):
        knots = []
        fwhms = (4.0, 6.0, 9.0)
        r_out = 0.5 * (las - observed_fwhm(fwhms[-1], beam))
        for frac, amp, size in zip((0.3, 0.65, 1.0), (0.7, 0.45, 0.3), fwhms):
            r = frac * r_out
            p = _offset(ra, dec, pa, sign * r, bend * frac ** 2 * r_out)
            knots.append(dict(ra=p[0], dec=p[1], peak=amp * peak, major_arcsec=size,
                              minor_arcsec=0.7 * size, pa_deg=pa))
        return knots

    if fr_class == "FRII":
        comps += frii_side(+1) + frii_side(-1)
        if morphology == "double-double":
            inner = frii_side(+1, 0.45) + frii_side(-1, 0.45)
            comps += [dict(c, peak=0.5 * peak) for c in inner]
    elif fr_class == "FRI":
        comps[0]["peak"] = peak
        bend = 0.3 if morphology == "wide-angle tail" else 0.0
        comps += fri_side(+1, bend) + fri_side(-1, bend)
    else:  # hybrid: FRI-like on one side, FRII-like on the other
        comps[0]["peak"] = 0.6 * peak
        comps += fri_side(+1) + frii_side(-1)
    return comps


def write_mirabest_like(root, n=6, seed=0, compressed=True):
    """Write a MiraBest-like folder of FIRST-like fields and its ``catalog.csv``.

    Each field is 300x300 pixels of 1.8" (TAN), BUNIT ``JY/BEAM`` with no beam keywords,
    noise 1.5e-4 Jy/beam, centred on the optical host, drawn with a 5.4" beam. Classes cycle
    through FRI/FRII/hybrid (confident and uncertain, standard, double-double and
    wide-angle tail) with MiraBest codes (digit 1: 1 FRI, 2 FRII, 3 hybrid; digit 2:
    0 confident, 1 uncertain; digit 3: 0 standard, 1 double-double, 2 wide-angle tail).
    FRII: faint core plus two bright edge lobes; FRI: bright core plus fading knots; hybrid:
    one side of each. Target LAS uniform in 25-95", brightest component peak 5-50 mJy/beam
    (S/N > 30).

    Parameters
    ----------
    root : str or Path
        Output folder (created).
    n : int
        Number of fields.
    seed : int
        Seed for source parameters and noise.
    compressed : bool
        Write ``.fits.fz`` (RICE_1 CompImageHDU in HDU 1, empty primary) or plain ``.fits``.

    Returns
    -------
    dict
        ``root``, ``catalog`` (path of ``catalog.csv``) and ``truth``: list of dicts with the
        catalogue columns plus ``path``, ``peak_jyb`` (maximum of the noise-free image;
        overlapping components add up), ``total_jy``, ``pa_deg`` and ``components``.
        ``las_arcsec`` follows the module's LAS convention computed from the drawn
        components.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    beam = FIRST_BEAM_ARCSEC
    truth = []
    for i in range(n):
        code, fr_class, confident, morphology = _MIRABEST_CLASSES[i % len(_MIRABEST_CLASSES)]
        ra = float(rng.uniform(110.0, 250.0))
        dec = float(rng.uniform(0.0, 60.0))
        las_target = float(rng.uniform(25.0, 95.0))
        pa = float(rng.uniform(0.0, 180.0))
        peak = float(rng.uniform(5e-3, 50e-3))
        redshift = round(float(rng.uniform(0.03, 0.6)), 4)
        comps = _mirabest_components(fr_class, morphology, ra, dec, las_target, pa, peak,
                                     beam)
        name = f"mb{i:03d}.fits" + (".fz" if compressed else "")
        path = root / name
        write_first_field(path, ra, dec, comps, seed=seed * 1000 + i, compressed=compressed)
        total = sum(component_total_flux(c["peak"], c.get("major_arcsec", 0.0),
                                         c.get("minor_arcsec", c.get("major_arcsec", 0.0)),
                                         beam) for c in comps)
        truth.append(dict(file=name, mirabest_code=code, fr_class=fr_class,
                          confident=confident, morphology=morphology, ra_deg=ra, dec_deg=dec,
                          redshift=redshift, las_arcsec=largest_angular_size(comps, beam),
                          path=path, peak_jyb=float(first_model(ra, dec, comps).max()),
                          total_jy=float(total), pa_deg=pa, components=comps))
    table = Table({k: [t[k] for t in truth] for k in MIRABEST_COLUMNS})
    catalog = root / "catalog.csv"
    table.write(catalog, format="ascii.csv", overwrite=True)
    return dict(root=root, catalog=catalog, truth=truth)


# --------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------

def write_truncated(src, dst, keep_fraction=0.5):
    """Copy the first ``keep_fraction`` of the bytes of ``src`` to ``dst``.

    Parameters
    ----------
    src, dst : str or Path
        Source file and output file.
    keep_fraction : float
        Fraction in (0, 1) of the bytes to keep.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    if not 0.0 < keep_fraction < 1.0:
        raise ValueError("keep_fraction must be in (0, 1)")
    src, dst = Path(src), Path(dst)
    n = int(src.stat().st_size * keep_fraction)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(fin.read(n))
    return dst


def write_garbage(dst, nbytes=8640, seed=0):
    """Write ``nbytes`` random bytes (not FITS) to ``dst``.

    Parameters
    ----------
    dst : str or Path
        Output file.
    nbytes : int
        Size in bytes.
    seed : int
        Seed.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    rng = np.random.default_rng(seed)
    raw = bytearray(rng.integers(0, 256, size=nbytes, dtype=np.uint8).tobytes())
    if raw[:6] == b"SIMPLE":
        raw[0] = 0
    dst = Path(dst)
    dst.write_bytes(bytes(raw))
    return dst


def write_no_wcs(dst, shape=(64, 64), seed=0):
    """Write a valid 2-D FITS image with no WCS keywords (no CTYPE/CRVAL/CDELT/CRPIX).

    Parameters
    ----------
    dst : str or Path
        Output file.
    shape : tuple of int
        ``(ny, nx)``.
    seed : int
        Seed of the noise image.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, FIRST_NOISE_JYB, size=shape).astype(np.float32)
    hdu = fits.PrimaryHDU(data=data)
    hdu.header["BUNIT"] = "JY/BEAM"
    hdu.writeto(dst, overwrite=True)
    return Path(dst)


_SKYVIEW_COMMENTS = (
    "FIRST survey image generated by SkyView",
    "Data from the VLA FIRST survey at 1.4 GHz",
    "Image resampled with the Clip sampler",
)


def write_tab_header(dst, ra0=150.0, dec0=30.0, shape=(64, 64), seed=0, n_tabs=2):
    """Write a FIRST-like field whose COMMENT cards contain TAB characters.

    The file is written by astropy and then the raw header bytes are patched: in the
    first ``n_tabs`` COMMENT cards one space inside the comment text is replaced by
    ``'\\t'`` (as in real SkyView FIRST files). astropy reads the file but emits a
    ``VerifyWarning`` ("Unprintable string ...") when the header is stringified; this is
    checked before returning.

    Parameters
    ----------
    dst : str or Path
        Output file (plain FITS, image in the primary HDU).
    ra0, dec0 : float
        Field centre (deg).
    shape : tuple of int
        ``(ny, nx)``.
    seed : int
        Noise seed.
    n_tabs : int
        Number of COMMENT cards to patch (at most 3).

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    dst = Path(dst)
    cards = [("COMMENT", text) for text in _SKYVIEW_COMMENTS]
    comp = [dict(ra=ra0, dec=dec0, peak=0.01, major_arcsec=6.0, minor_arcsec=4.0)]
    write_first_field(dst, ra0, dec0, comp, shape=shape, seed=seed, extra_cards=cards)
    raw = bytearray(dst.read_bytes())
    end = raw.find(b"END" + b" " * 77)
    patched = 0
    for start in range(0, end, 80):
        card = raw[start:start + 80]
        if patched < n_tabs and card.startswith(b"COMMENT "):
            j = card.find(b" ", 9)   # a space inside the comment text, not the separator
            if 0 < j < 79 and card[j - 1:j] != b" ":
                raw[start + j] = 0x09
                patched += 1
    if patched == 0:
        raise RuntimeError("no COMMENT card could be patched")
    dst.write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fits.open(dst) as hdul:
            str(hdul[0].header)
    if not any(issubclass(w.category, VerifyWarning) and "Unprintable" in str(w.message)
               for w in caught):
        raise RuntimeError("astropy did not flag the TAB characters; fixture is wrong")
    return dst


def write_nan_field(dst, ra0=150.0, dec0=30.0, shape=(300, 300), stripe_px=10, seed=0,
                    compressed=False):
    """Write a valid FIRST-like field with a horizontal NaN stripe through the centre.

    A bright compact double (peak 20 mJy/beam, separation 30" along PA 0) sits at the
    field centre; rows ``ny//2 - stripe_px//2 : ny//2 - stripe_px//2 + stripe_px`` are
    NaN.

    Parameters
    ----------
    dst : str or Path
        Output file.
    ra0, dec0 : float
        Field centre (deg).
    shape : tuple of int
        ``(ny, nx)``.
    stripe_px : int
        Width of the NaN stripe in rows.
    seed : int
        Noise seed.
    compressed : bool
        Write a RICE_1-compressed image in HDU 1 instead of a plain primary image.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    ny, nx = shape
    header = first_header(ra0, dec0, shape)
    wcs = WCS(header)
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, FIRST_NOISE_JYB, size=shape)
    for ra, dec in _double_positions(ra0, dec0, 30.0, 0.0):
        _add_component(data, wcs, ra, dec, 0.02, 6.0, 4.0, 0.0, FIRST_BEAM_ARCSEC,
                       FIRST_PIXEL_ARCSEC)
    r0 = ny // 2 - stripe_px // 2
    data[r0:r0 + stripe_px, :] = np.nan
    return _write_image(dst, data, header, compressed, seed)


def write_3d_nondegenerate(dst, shape=(3, 50, 50), seed=0):
    """Write a real spectral cube (not 2-D): data shape ``(nfreq, ny, nx)``, FREQ axis 3.

    Parameters
    ----------
    dst : str or Path
        Output file.
    shape : tuple of int
        ``(nfreq, ny, nx)``, ``nfreq > 1``.
    seed : int
        Noise seed.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    nf, ny, nx = shape
    header = first_header(150.0, 30.0, (ny, nx))
    header["CTYPE3"] = "FREQ"
    header["CRVAL3"] = 1.4e9
    header["CRPIX3"] = 1.0
    header["CDELT3"] = 1e7
    header["CUNIT3"] = "Hz"
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, FIRST_NOISE_JYB, size=shape).astype(np.float32)
    fits.PrimaryHDU(data=data, header=header).writeto(dst, overwrite=True)
    return Path(dst)


def copy_file(src, dst):
    """Copy ``src`` to ``dst`` (creating parents) and return ``dst`` as a Path."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


# --------------------------------------------------------------------- prepared blob sets

def blob_images(rng, n, kind, size=16):
    """Model-space images (n, 1, size, size), peak 1. kind 0: compact Gaussian blob;
    kind 1: double source along a random axis."""
    y, x = np.mgrid[:size, :size]
    out = np.zeros((n, 1, size, size), np.float32)
    c0 = size / 2 - 2
    for i in range(n):
        cx, cy = rng.uniform(c0, c0 + 3, 2)
        if kind == 0:
            img = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rng.uniform(1.0, 1.6) ** 2))
        else:
            a = rng.uniform(0, np.pi)
            d = rng.uniform(3, 5)
            img = sum(np.exp(-((x - cx - s * d * np.cos(a)) ** 2 + (y - cy - s * d * np.sin(a))
                               ** 2) / 2.0) for s in (-1, 1))
        out[i, 0] = img / img.max()
    return out


def write_blob_set(path, n_per=(("train", 60), ("valid", 40), ("test", 40)), size=16, seed=0,
                   beam=None):
    """A prepared HDF5 file (radiodiff.data.prepared layout) of two classes, blob and double, with
    train/valid/test splits; pixel scale 1.8 arcsec, beam 5.4 arcsec (``beam``: (N, 2) rows)."""
    from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, write_prepared

    rng = np.random.default_rng(seed)
    images, labels, splits = [], [], []
    for split, n in dict(n_per).items():
        for k in (0, 1):
            images.append(blob_images(rng, n // 2, k, size))
            labels += [k] * (n // 2)
            splits += [split] * (n // 2)
    images = np.concatenate(images)
    n = len(images)
    cols = {c: np.full(n, 1.0) for c in FLOAT_COLUMNS}
    cols["pixel_scale_arcsec"][:] = 1.8
    cols.update(label=np.array(labels, np.int16), split=np.array(splits, dtype=object),
                source_id=np.array([f"s{i}" for i in range(n)], dtype=object),
                flags=np.zeros(n, np.uint8),
                beam_arcsec=np.full((n, 2), 5.4) if beam is None else np.asarray(beam, float))
    return write_prepared(path, images, cols, {"name": "blobs", "classes": ["blob", "double"],
                                               "data_sha256": data_sha256(images, cols)})


# ------------------------------------------------------------ physical (Jy/beam) cutouts

def beam_noise(rng, n, size, beam_px=3.0):
    """(n, size, size) Gaussian noise of unit std convolved with a round Gaussian beam of
    FWHM ``beam_px`` pixels (periodic, by FFT); ``beam_px`` 0: white noise."""
    white = rng.normal(size=(n, size, size))
    if beam_px <= 0:
        return white
    k = np.fft.fftfreq(size)
    s = beam_px * FWHM_TO_SIGMA
    transfer = np.exp(-2 * (np.pi * s) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    out = np.fft.ifft2(np.fft.fft2(white) * transfer).real
    return out / out.std(axis=(1, 2), keepdims=True)


def physical_cutouts(n, size=32, rms=1.5e-4, seed=0, beam_px=3.0, pixel_arcsec=1.8):
    """Cutouts as a prepared Jy/beam file holds them: a Gaussian source (peak 5-50 mJy/beam,
    sigma 1.5-3 pixels) plus beam-convolved noise of ``rms`` Jy/beam, negatives clipped to
    0, each image divided by its peak.

    Returns
    -------
    (numpy.ndarray, dict)
        (n, 1, size, size) float32 images, peak 1, and the conditions: ``peak_flux``
        [Jy/beam] (the peak before scaling, so ``image * peak_flux`` is the clipped cutout)
        and ``las_arcsec`` (the source's extent to 10 % of its peak, ``4.29 sigma``).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    peak = 10 ** rng.uniform(-2.3, -1.3, n)
    sigma = rng.uniform(1.5, 3.0, n)
    centre = size / 2 + rng.uniform(-1, 1, (n, 2))
    src = peak[:, None, None] * np.exp(-((x - centre[:, :1, None]) ** 2 + (
        y - centre[:, 1:, None]) ** 2) / (2 * sigma[:, None, None] ** 2))
    cut = np.clip(src + rms * beam_noise(rng, n, size, beam_px), 0.0, None)
    top = cut.max(axis=(1, 2))
    las = 2 * np.sqrt(2 * np.log(10)) * sigma * pixel_arcsec
    return ((cut / top[:, None, None])[:, None].astype(np.float32),
            {"peak_flux": top, "las_arcsec": las})
