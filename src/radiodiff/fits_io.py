"""Reading FITS images: the one module that knows FITS layout.

Real survey files are messy: tile-compressed HDUs, degenerate frequency/Stokes axes,
commentary cards with tabs or non-ASCII bytes, truncated downloads, fields without a
celestial WCS. Each problem becomes an :class:`InputError` naming the file and the reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.wcs import WCS, FITSFixedWarning

__all__ = ["InputError", "FitsImage", "read_fits_image", "beam_from_header"]


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
    ``missing``, ``unreadable`` (corrupt or truncated), ``no_image``, ``bad_shape`` or
    ``no_wcs``.
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
                data = np.array(hdu.data, dtype=np.float32)  # copy out of the memmap
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


def beam_from_header(header: fits.Header) -> tuple[float, float] | None:
    """Restoring beam (BMAJ, BMIN) in arcsec, or None if the header has none."""
    if "BMAJ" in header and "BMIN" in header:
        return float(header["BMAJ"]) * 3600.0, float(header["BMIN"]) * 3600.0
    return None
