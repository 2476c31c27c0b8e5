"""Reading and writing FITS images: the one module that knows FITS layout.

Real survey files are messy: tile-compressed HDUs, degenerate frequency/Stokes axes,
commentary cards with tabs or non-ASCII bytes, truncated downloads, fields without a
celestial WCS. Each problem becomes an :class:`InputError` naming the file and the reason.
"""

from __future__ import annotations

import math
import re
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.wcs import WCS, FITSFixedWarning

from radiodiff.io.artifacts import atomic_write

__all__ = ["InputError", "FitsImage", "read_fits_image", "beam_from_header",
           "write_fits_image", "image_hdu", "write_hdu", "NORMALISED_BUNIT",
           "parse_brightness_unit", "jy_per_beam_factor", "MAX_IMAGE_SPAN_DEG"]


class InputError(Exception):
    """A problem with one input file or row; ``reason`` is a short key used for counting."""

    def __init__(self, path: str | Path, reason: str, detail: str):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


@dataclass
class FitsImage:
    data: np.ndarray   # 2-D float32 (ny, nx), NaN where blanked
    header: fits.Header
    wcs: WCS           # celestial 2-D WCS
    path: str
    cards_fixed: int   # commentary cards whose unprintable characters were replaced


def _printable(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else " " for c in text)


def _sanitise(header: fits.Header) -> tuple[fits.Header, int]:
    """A copy of ``header`` with unprintable characters (tabs, non-ASCII) replaced by spaces.

    Cards are rebuilt rather than edited: astropy keeps the raw card image of an edited
    commentary card, which still fails verification.
    """
    cards, fixed = [], 0
    for card in header.cards:
        value, comment = card.value, card.comment
        if isinstance(value, str) and _printable(value) != value or (
                comment and _printable(comment) != comment):
            value = _printable(value) if isinstance(value, str) else value
            card = fits.Card(card.keyword, value, _printable(comment or ""))
            fixed += 1
        cards.append(card)
    return fits.Header(cards), fixed


def _image_hdu(hdul: fits.HDUList) -> fits.hdu.base.ExtensionHDU | fits.PrimaryHDU | None:
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and (
                hdu.header.get("NAXIS", 0) >= 2):
            return hdu
    return None


def read_fits_image(path: str | Path, memmap: bool = True) -> FitsImage:
    """Read the first image HDU of ``path`` as a 2-D array with its celestial WCS.

    Degenerate axes (frequency, Stokes) are dropped. Raises :class:`InputError` with reason
    ``missing``, ``unreadable`` (corrupt or truncated), ``no_image``, ``bad_shape``,
    ``no_data`` (no finite pixel), ``overflow`` (values beyond float32) or ``no_wcs``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "missing", "file not found")
    try:
        with warnings.catch_warnings():
            # Unprintable commentary cards are repaired below; truncation is an error.
            warnings.simplefilter("ignore", VerifyWarning)
            warnings.simplefilter("ignore", FITSFixedWarning)
            warnings.filterwarnings("error", message=".*[Tt]runcated.*")
            # Our own handle, so a file astropy fails to parse is still closed.
            with open(path, "rb") as fh, fits.open(fh, memmap=memmap,
                                                   lazy_load_hdus=False) as hdul:
                hdu = _image_hdu(hdul)
                if hdu is None:
                    raise InputError(path, "no_image", "no HDU holds a 2-D image")
                header = hdu.header.copy()
                raw = hdu.data
                with np.errstate(over="ignore", invalid="ignore"):
                    data = np.array(raw, dtype=np.float32)  # copy out of the memmap
                _check_overflow(path, raw, data)
    except InputError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, warnings...
        raise InputError(path, "unreadable", f"corrupt or truncated FITS ({exc})") from exc

    header, fixed = _sanitise(header)
    # Drop degenerate axes (e.g. LOFAR/VLA cubes with 1 frequency and 1 Stokes plane).
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2 or min(data.shape) < 2:
        raise InputError(path, "bad_shape", f"image has shape {data.shape}, expected 2-D")
    if not np.isfinite(data).any():
        raise InputError(path, "no_data", f"no finite pixel in the {data.shape} image "
                         "(all NaN / blank)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2) if header.get("NAXIS", 0) > 2 else WCS(header)
            wcs = wcs.celestial
    except Exception as exc:
        raise InputError(path, "no_wcs", f"invalid WCS ({exc})") from exc
    if not wcs.has_celestial or wcs.naxis != 2:
        raise InputError(path, "no_wcs", "no celestial WCS (CTYPE/CRVAL/CDELT) in header")
    return FitsImage(data=data, header=header, wcs=wcs, path=str(path), cards_fixed=fixed)


def _check_overflow(path: Path, raw, data: np.ndarray) -> None:
    """Finite values that became +-inf in float32 (|x| > 3.4e38): a corrupt scale."""
    if raw is None or np.asarray(raw).dtype.itemsize <= 4 and np.asarray(raw).dtype.kind == "f":
        return
    inf = np.isinf(data)
    if inf.any():
        lost = np.asarray(raw)[inf]
        lost = lost[np.isfinite(lost)]
        if lost.size:
            raise InputError(path, "overflow",
                             f"{lost.size} pixel value(s) up to {np.abs(lost).max():.3g} "
                             "overflow float32 (corrupt BSCALE or units?)")


def beam_from_header(header: fits.Header) -> tuple[float, float] | None:
    """Restoring beam (BMAJ, BMIN) in arcsec, or None if the header has none."""
    if "BMAJ" in header and "BMIN" in header:
        return float(header["BMAJ"]) * 3600.0, float(header["BMIN"]) * 3600.0
    return None


_UNIT_NAMES = {"jy": "Jy", "beam": "beam"}


def parse_brightness_unit(text: str) -> float:
    """The factor taking pixel values in the unit ``text`` (a BUNIT) to Jy/beam.

    Parsed by astropy units (FITS, then generic syntax), so ``mJy/beam`` gives 1e-3 and
    ``uJy/beam`` 1e-6. The names ``Jy`` and ``beam`` are also read in any case
    (``JY/BEAM``, AIPS and SkyView style) but then only without a prefix: an upper-case
    ``MJY/BEAM`` could be mJy or MJy and is refused.

    Raises
    ------
    ValueError
        Not a unit astropy knows, an ambiguous upper-case prefix, or not a surface
        brightness (``K``, ``Jy``, ``Jy/pixel``, a dimensionless ``''``); the message names
        the unit.
    """
    import astropy.units as u

    text = str(text).strip()
    unit, folded = _unit_or_none(text), False
    if unit is None:
        folded = True
        unit = _unit_or_none(re.sub(r"(?i)jy|beam", lambda m: _UNIT_NAMES[m[0].lower()],
                                    text))
    if unit is None:
        raise ValueError(f"BUNIT {text!r} is not a unit astropy knows")
    try:
        factor = float(unit.to(u.Jy / u.beam))
    except u.UnitConversionError:
        kind = "dimensionless" if unit == u.dimensionless_unscaled else str(unit.physical_type)
        kind = "" if kind == "unknown" else f" ({kind})"
        raise ValueError(f"BUNIT {text!r}{kind} is not a surface brightness: it cannot be "
                         "converted to Jy/beam") from None
    if folded and factor != 1.0 and text.upper() == text:
        raise ValueError(f"BUNIT {text!r} is ambiguous in upper case (milli or mega?); "
                         "write it as e.g. mJy/beam")
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"BUNIT {text!r} gives the factor {factor} to Jy/beam")
    return factor


def _unit_or_none(text: str):
    import astropy.units as u

    for fmt in ("fits", "generic"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # astropy's "did you mean" warnings
                return u.Unit(text, format=fmt, parse_strict="raise")
        except (ValueError, TypeError):
            continue
    return None


def jy_per_beam_factor(image: FitsImage, assume: str | None) -> float:
    """The factor taking ``image``'s pixels to Jy/beam, from its ``BUNIT`` card
    (:func:`parse_brightness_unit`); a header without one, or with a blank one (``BUNIT =
    ''`` or no value: survey headers that leave the unit unsaid), is taken to be in
    ``assume`` (``data.assume_bunit``), or refused when ``assume`` is None.

    Raises
    ------
    InputError
        Reason ``bad_unit``, naming the file and the unit.
    """
    raw = image.header.get("BUNIT")
    blank = isinstance(raw, str) and not raw.strip()  # (astropy: no value reads as None)
    if blank:
        raw = None
    missing = "a blank BUNIT card" if blank else "no BUNIT card"
    if raw is None and assume is None:
        raise InputError(image.path, "bad_unit", f"{missing} and data.assume_bunit is "
                         "null: the pixel unit is unknown (set data.assume_bunit, e.g. "
                         "Jy/beam, to assume one)")
    try:
        return parse_brightness_unit(assume if raw is None else raw)
    except ValueError as exc:
        where = f" (data.assume_bunit: the header has {missing})" if raw is None else ""
        raise InputError(image.path, "bad_unit", f"{exc}{where}") from None


# FITS keywords: <= 8 characters from A-Z, 0-9, '-' and '_' (FITS standard 4.0, Sect. 4.1.2.1).
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
_MAX_STR = 68    # longest string value that fits one 80-character card
_HISTORY = 70    # characters of text per HISTORY card


def _card_value(key: str, value: Any) -> Any:
    """A header-safe value: printable ASCII strings, finite numbers (NaN / inf refused)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"FITS card {key} = {float(value)} is not finite; nothing written")
        return float(value)
    if isinstance(value, str):
        return _printable(value)
    raise ValueError(f"FITS card {key}: value must be a string or a number, "
                     f"got {type(value).__name__}")


def _fit_comment(value: Any, comment: str) -> str:
    """``comment`` cut to the room left on an 80-character card (astropy warns otherwise)."""
    width = len(value) + value.count("'") + 2 if isinstance(value, str) else 20
    room = 80 - 10 - max(width, 20) - 3  # "KEYWORD = ", value field, " / "
    return comment[:max(room, 0)]


# BUNIT of images without a flux scale: a peak-normalised image is a ratio of intensities,
# dimensionless; astropy reads the empty FITS unit string as dimensionless, and a COMMENT
# card says how the image was normalised ("adu" would claim detector counts).
NORMALISED_BUNIT = ""
_COMMENT = 72    # characters of text per COMMENT card


def _finite(name: str, value: Any, positive: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or (positive and not v > 0):
        raise ValueError(f"{name} must be a {'positive' if positive else 'finite'} number, "
                         f"got {value}")
    return v


def write_fits_image(path: str | Path, image: np.ndarray, pixel_scale_arcsec: float,
                     beam_arcsec: tuple[float, float] | None = None, bunit: str | None = None,
                     cards: Mapping[str, Any] | None = None, ra: float | None = None,
                     dec: float | None = None, **kw: Any) -> Path:
    """Write one image as a float32 primary HDU with a celestial WCS, atomically:
    :func:`write_hdu` of :func:`image_hdu` (same arguments, which document the cards).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return write_hdu(path, image_hdu(image, pixel_scale_arcsec, beam_arcsec, bunit, cards,
                                     ra, dec, **kw))


def write_hdu(path: str | Path, hdu: fits.PrimaryHDU) -> Path:
    """Write a primary HDU as it is (e.g. from :func:`image_hdu`) to a temporary name in
    the same folder and rename it, so an interrupted write never leaves a partial file."""
    return atomic_write(path, lambda tmp: hdu.writeto(tmp, output_verify="exception"))


def image_hdu(image: np.ndarray, pixel_scale_arcsec: float,
              beam_arcsec: tuple[float, float] | None = None, bunit: str | None = None,
              cards: Mapping[str, Any] | None = None, ra: float | None = None,
              dec: float | None = None, *, beam_pa_deg: float | None = None,
              telescope: str | None = None, freq_hz: float | None = None,
              rms: float | None = None, comments: Sequence[str] = ()) -> fits.PrimaryHDU:
    """One image as a float32 primary HDU with a celestial WCS, in memory: the one rule for
    the header of every image radiodiff writes.

    The WCS is an orthographic (SIN) projection centred on (``ra``, ``dec``) at the image
    centre (CRPIX = (n + 1) / 2, 1-based), with CDELT1 = -pixel scale (RA grows to the left,
    as on the sky) and CDELT2 = +pixel scale. The header's cards are those a FITS file
    written from the HDU holds (SIMPLE, BITPIX, NAXIS... first).

    Besides the WCS the header always holds BUNIT and either an RMS card or a COMMENT that
    the noise level is unknown; TELESCOP, FREQ and BMAJ/BMIN/BPA when known; a COMMENT when
    the sky position is a placeholder; then ``comments`` as COMMENT cards and ``cards``.

    Parameters
    ----------
    image : numpy.ndarray
        Shape (H, W), or (1, H, W) with a leading channel axis; written as float32.
    pixel_scale_arcsec : float
        Side of one pixel on the sky, arcsec (> 0; the image at most
        :data:`MAX_IMAGE_SPAN_DEG` wide).
    beam_arcsec : (float, float), optional
        Restoring beam (bmaj, bmin) FWHM, arcsec; written as BMAJ/BMIN in degrees, with BPA.
        A COMMENT says the beam is unknown when None.
    bunit : str, optional
        Brightness unit, e.g. ``"Jy/beam"``. None means the pixels have no flux scale
        (normalised images): BUNIT is then :data:`NORMALISED_BUNIT` (``""``, dimensionless); say how
        they were normalised in ``comments``.
    cards : mapping, optional
        Extra provenance cards ``{KEYWORD: value}`` or ``{KEYWORD: (value, comment)}``.
        Keywords are at most 8 characters (A-Z, 0-9, ``-``, ``_``); values are strings or
        finite numbers (NaN / inf is a ValueError: nothing is written); None values are
        skipped; strings longer than 68 characters go into HISTORY
        cards as ``KEYWORD= value``.
    ra, dec : float, optional
        Sky position of the image centre, degrees (ICRS); give both or neither. Neither
        writes the placeholder (0, 0) with a COMMENT saying it is not a real position.
    beam_pa_deg : float, optional
        Beam position angle, degrees east of north (BPA); 0 when None (unknown).
    telescope : str, optional
        TELESCOP card, e.g. ``"VLA"``; no card when None.
    freq_hz : float, optional
        Observing frequency, Hz (> 0), as a FREQ card; no card when None.
    rms : float, optional
        Noise rms in the unit of BUNIT (> 0), as an RMS card; None writes a COMMENT that
        the noise level is unknown.
    comments : sequence of str
        Free text, one or more COMMENT cards per item (word-wrapped at 72 characters).

    Returns
    -------
    astropy.io.fits.PrimaryHDU
    """
    data = _as_2d(image)
    ra, dec, placeholder = _sky_position(ra, dec)
    header = _wcs_header(data.shape, _finite("pixel_scale_arcsec", pixel_scale_arcsec,
                                             positive=True), ra, dec, placeholder)
    _instrument_cards(header, bunit, telescope, freq_hz, beam_arcsec, beam_pa_deg, rms)
    notes = [] if beam_arcsec is not None else ["Restoring beam unknown: no BMAJ/BMIN/BPA."]
    if rms is None:
        notes.append("Noise rms unknown: no RMS card.")
    if placeholder:
        notes.append("Sky position CRVAL1/CRVAL2 = (0, 0) is a placeholder, not a real "
                     "position on the sky.")
    for item in [*notes, *comments]:
        for line in textwrap.wrap(_printable(str(item)), _COMMENT) or [""]:
            header.add_comment(line)
    _provenance_cards(header, cards or {})
    return fits.PrimaryHDU(data=data, header=header)


def _as_2d(image: np.ndarray) -> np.ndarray:
    data = np.asarray(image, dtype=np.float32)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W) or (1, H, W), got shape {np.shape(image)}")
    return data


def _sky_position(ra: float | None, dec: float | None) -> tuple[float, float, bool]:
    """(ra, dec, placeholder): neither given is the placeholder (0, 0)."""
    if (ra is None) != (dec is None):
        raise ValueError(f"give both ra and dec (deg) or neither, got ra={ra}, dec={dec}")
    placeholder = ra is None
    ra, dec = (0.0, 0.0) if placeholder else (float(ra), float(dec))
    if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise ValueError(f"need finite ra and -90 <= dec <= 90 (deg), got ra={ra}, dec={dec}")
    return ra, dec, placeholder


# The SIN projection covers one hemisphere: an image wider than this has an absurd CDELT
# (e.g. a pixel scale from an absurd LAS condition).
MAX_IMAGE_SPAN_DEG = 180.0


def _wcs_header(shape: tuple[int, int], scale: float, ra: float, dec: float,
                placeholder: bool) -> fits.Header:
    """SIN projection centred on (ra, dec) at the image centre, RA growing to the left."""
    ny, nx = shape
    span = max(nx, ny) * scale / 3600.0
    if not span <= MAX_IMAGE_SPAN_DEG:
        raise ValueError(f"pixel_scale_arcsec={scale:g} makes the {nx}x{ny} image {span:.3g} "
                         f"deg wide, more than {MAX_IMAGE_SPAN_DEG:g} deg (CDELT would be "
                         "absurd); nothing written")
    where = " (placeholder)" if placeholder else ""
    header = fits.Header()
    for key, value, comment in (
        ("CTYPE1", "RA---SIN", "RA, orthographic projection"),
        ("CTYPE2", "DEC--SIN", "Dec, orthographic projection"),
        ("CRVAL1", ra, "[deg] RA at the reference pixel" + where),
        ("CRVAL2", dec, "[deg] Dec at the reference pixel" + where),
        ("CRPIX1", (nx + 1) / 2.0, "image centre (1-based)"),
        ("CRPIX2", (ny + 1) / 2.0, "image centre (1-based)"),
        ("CDELT1", -scale / 3600.0, "[deg] pixel size, RA grows to the left"),
        ("CDELT2", scale / 3600.0, "[deg] pixel size"),
        ("CUNIT1", "deg", ""),
        ("CUNIT2", "deg", ""),
        ("RADESYS", "ICRS", ""),
    ):
        header[key] = (value, comment)
    return header


def _instrument_cards(header: fits.Header, bunit, telescope, freq_hz, beam_arcsec,
                      beam_pa_deg, rms) -> None:
    """BUNIT always; TELESCOP, FREQ, BMAJ/BMIN/BPA and RMS when known."""
    if bunit is not None:
        header["BUNIT"] = (_printable(str(bunit)), "brightness unit")
    else:
        header["BUNIT"] = (NORMALISED_BUNIT, "arbitrary units: no flux scale")
    if telescope is not None:
        header["TELESCOP"] = (_printable(str(telescope)), "telescope of the training survey")
    if freq_hz is not None:
        header["FREQ"] = (_finite("freq_hz", freq_hz, positive=True),
                          "[Hz] observing frequency")
    if beam_arcsec is not None:
        bmaj, bmin = (float(b) for b in beam_arcsec)
        if not (bmaj > 0 and bmin > 0 and math.isfinite(bmaj) and math.isfinite(bmin)):
            raise ValueError(f"beam_arcsec must be two positive numbers, got {beam_arcsec}")
        header["BMAJ"] = (bmaj / 3600.0, "[deg] beam major axis (FWHM)")
        header["BMIN"] = (bmin / 3600.0, "[deg] beam minor axis (FWHM)")
        header["BPA"] = ((0.0, "[deg] beam position angle (unknown: 0)") if beam_pa_deg is None
                         else (_finite("beam_pa_deg", beam_pa_deg), "[deg] beam position angle"))
    if rms is not None:
        header["RMS"] = (_finite("rms", rms, positive=True), f"[{header['BUNIT']}] noise rms")


_RESERVED = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "COMMENT", "HISTORY")


def _provenance_cards(header: fits.Header, cards: Mapping[str, Any]) -> None:
    """Extra cards; strings too long for a card go into HISTORY as ``KEY= value``."""
    history = []
    for key, item in cards.items():
        value, comment = item if isinstance(item, tuple) else (item, "")
        if not isinstance(key, str) or not _KEYWORD.match(key):
            raise ValueError(f"FITS card keyword {key!r} must be 1-8 characters of A-Z, 0-9, "
                             "'-' or '_'")
        if key in header or key in _RESERVED:
            raise ValueError(f"FITS card {key} is reserved by the image/WCS header")
        if value is None:
            continue
        value = _card_value(key, value)
        if isinstance(value, str) and len(value) + value.count("'") > _MAX_STR:
            text = f"{key}= {value}"
            history += [text[i:i + _HISTORY] for i in range(0, len(text), _HISTORY)]
            continue
        header[key] = (value, _fit_comment(value, _printable(str(comment))))
    for text in history:
        header.add_history(text)
