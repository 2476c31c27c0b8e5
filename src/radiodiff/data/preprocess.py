"""Per-cutout measurements, quality cuts, resizing, negative policy and [0, 1] scaling.

Pure numpy / scikit-image: nothing here knows about FITS or catalogues. The data's last
steps that generated images go through too (the output projection) are
:mod:`radiodiff.data.projection`'s.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from radiodiff.data.prepared import FLAGS

__all__ = ["CUT_ORDER", "centre_on", "cutout_side_arcsec", "measure", "quality_flags",
           "fill_nan", "resize_image", "apply_negatives", "fit_scaling"]

# Order in which a source failing several cuts is counted (first reason wins).
CUT_ORDER = ("nan", "blank", "low_snr", "edge_emission")


def beam_area_arcsec2(bmaj: float, bmin: float) -> float:
    """Area of a Gaussian beam, pi * bmaj * bmin / (4 ln 2), arcsec^2 (FWHM in arcsec)."""
    return math.pi * bmaj * bmin / (4.0 * math.log(2.0))


def cutout_side_arcsec(las_arcsec, k_las: float, min_size_arcsec: float):
    """Side on the sky of a catalogue source's cutout, arcsec: ``max(k_las * LAS,
    min_size_arcsec)`` (``data.cutout``); a number or an array like ``las_arcsec``."""
    return np.maximum(k_las * np.asarray(las_arcsec, dtype=np.float64), min_size_arcsec)


def measure(image: np.ndarray, rms: float, pixel_scale_arcsec: float,
            beam_arcsec: tuple[float, float]) -> dict[str, float]:
    """Peak (Jy/beam), S/N and total flux (Jy) of the emission above 3 rms, in float64.

    A non-finite or non-positive ``rms`` gives a NaN S/N and total flux (no flux scale).
    """
    finite = image[np.isfinite(image)].astype(np.float64)  # float32 sums overflow at ~1e38
    peak = float(finite.max()) if finite.size else float("nan")
    snr = peak / rms if np.isfinite(rms) and rms > 0 else float("nan")
    total = float("nan")
    if np.isfinite(rms) and rms > 0 and all(np.isfinite(beam_arcsec)):
        beam_pix = beam_area_arcsec2(*beam_arcsec) / pixel_scale_arcsec**2
        total = float(finite[finite > 3.0 * rms].sum() / beam_pix)
    return {"peak_flux": peak, "snr": snr, "total_flux": total}


def quality_flags(image: np.ndarray, snr: float, cuts) -> int:
    """Bitmask (:data:`radiodiff.data.prepared.FLAGS`) of the cuts this cutout fails.

    ``cuts`` has ``nan`` (drop/fill), ``blank``, ``snr_min`` and ``edge_max_frac``; a cut set
    to ``None`` / ``False`` is off. The S/N cut is skipped where no noise was measured.
    """
    flags = 0
    finite = np.isfinite(image)
    if str(getattr(cuts.nan, "value", cuts.nan)) == "drop" and not finite.all():
        flags |= FLAGS["nan"]
    values = image[finite]
    if values.size == 0 or (cuts.blank and values.max() == values.min()):
        return flags | FLAGS["blank"]  # no finite pixel: blank whatever the blank cut says
    peak = values.max()
    if cuts.snr_min is not None and np.isfinite(snr) and snr < cuts.snr_min:
        flags |= FLAGS["low_snr"]
    if cuts.edge_max_frac is not None and peak > 0:
        edge = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
        edge = edge[np.isfinite(edge)]
        if edge.size and edge.max() > cuts.edge_max_frac * peak:
            flags |= FLAGS["edge_emission"]
    return flags


def first_reason(flags: int) -> str:
    return next(name for name in CUT_ORDER if flags & FLAGS[name])


def fill_nan(image: np.ndarray, value: float) -> np.ndarray:
    return np.where(np.isfinite(image), image, np.float32(value)).astype(np.float32)


def centre_on(image: np.ndarray, offset_px: tuple[float, float]) -> np.ndarray:
    """Shift by ``-offset_px`` (dy, dx; |offset| <= 0.5 px) with linear interpolation."""
    if not any(offset_px):
        return image
    return ndimage.shift(image, (-offset_px[0], -offset_px[1]), order=1, mode="nearest")


def resize_image(image: np.ndarray, n: int | tuple[int, int]) -> np.ndarray:
    """Resize to n x n (or an (h, w) shape), Gaussian anti-aliasing when shrinking (surface
    brightness kept)."""
    shape = (n, n) if isinstance(n, (int, np.integer)) else tuple(int(v) for v in n)
    if image.shape == shape:
        return image.astype(np.float32)
    shrink = image.shape[0] > shape[0] or image.shape[1] > shape[1]
    out = resize(image.astype(np.float64), shape, order=1, mode="reflect",
                 anti_aliasing=shrink, preserve_range=True)
    return out.astype(np.float32)


def apply_negatives(image: np.ndarray, mode: str) -> np.ndarray:
    if mode == "clip":
        return np.maximum(image, 0.0)
    if mode == "abs":
        return np.abs(image)
    if mode == "keep":
        return image
    raise ValueError(f"negatives must be clip, abs or keep, got {mode!r}")


def fit_scaling(images: np.ndarray, mode: str, negatives: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ``scale``, ``offset`` so that ``(x - offset) / scale`` lies in [0, 1].

    With clipped or absolute values the offset is 0 (zero stays zero); with ``keep`` it is
    the minimum. ``per_image`` uses each image's range, ``dataset`` one global range. A
    constant image gets scale 1 so it maps to 0 rather than NaN.
    """
    n = len(images)
    flat = images.reshape(n, -1)
    if mode == "per_image":
        lo = flat.min(axis=1) if negatives == "keep" else np.zeros(n)
        hi = flat.max(axis=1)
    elif mode == "dataset":
        lo = np.full(n, flat.min() if negatives == "keep" else 0.0)
        hi = np.full(n, flat.max())
    else:
        raise ValueError(f"scaling must be per_image or dataset, got {mode!r}")
    scale = (hi - lo).astype(np.float64)
    scale[~(scale > 0)] = 1.0
    return scale, lo.astype(np.float64)
