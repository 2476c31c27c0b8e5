"""Background noise of cutouts whose negatives were clipped to 0: rms, pixels, autocorrelation.

A prepared cutout (``negatives: clip``) holds ``max(n, 0)`` of beam-correlated Gaussian
noise ``n`` around its source: about half of the background is exactly 0 and the rest is
the positive half of the Gaussian. Everything here therefore works on the positive half:

* **rms**: the median of the positive background values divided by
  ``Phi^-1(3/4) = 0.6745`` (:data:`HALFNORMAL_MEDIAN`), the median of ``|n| / sigma`` for a
  Gaussian. Chosen over ``sqrt(mean(x^2 | x > 0))`` because a median barely moves with the
  few source or artefact pixels that survive the mask, and over the fraction of zeros
  because that measures the mean of the noise, not its width.
* **background**: the pixels outside the source mask, the pixels above
  :data:`SOURCE_SIGMA` times a first rms estimate (of all positive pixels) grown by one beam
  FWHM (a disc), so the wings of the source below the threshold stay out.
* **autocorrelation**: of the background pixels minus their mean, over the pairs of
  background pixels ``k`` pixels apart along rows and columns, normalised to 1 at lag 0.
  White noise falls to ~0 at lag 1; noise convolved with a beam of FWHM ``b`` pixels stays
  correlated up to ~``b`` pixels.

Images are single images (H, W) or batches (N, 1, H, W) in any linear unit (Jy/beam in
the evaluation); the rms is in that unit, the autocorrelation is dimensionless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import norm
from skimage.morphology import disk

__all__ = ["HALFNORMAL_MEDIAN", "SOURCE_SIGMA", "MAX_LAG", "halfnormal_rms",
           "background_mask", "autocorrelation", "Background", "background_stats"]

#: Median of |n| / sigma for Gaussian n: the positive half's median in units of sigma.
HALFNORMAL_MEDIAN = float(norm.ppf(0.75))
#: Source seed threshold in units of the first rms estimate (3e-5 of noise pixels pass).
SOURCE_SIGMA = 4.0
#: Largest lag of the autocorrelation [pixels]: two FIRST beams (5.4" = 3 pixels of 1.8").
MAX_LAG = 6
_MIN_VALUES = 10  # fewer positive background values: no rms (NaN)


def halfnormal_rms(values: np.ndarray) -> float:
    """sigma of zero-mean Gaussian noise clipped at 0, from its positive values.

    Parameters
    ----------
    values : numpy.ndarray
        Pixel values of any shape (clipped noise: zeros and the positive half).

    Returns
    -------
    float
        ``median(values[values > 0]) / HALFNORMAL_MEDIAN``, in the unit of ``values``; NaN
        with fewer than 10 positive values.
    """
    pos = np.asarray(values, np.float64)
    pos = pos[pos > 0]
    return float(np.median(pos)) / HALFNORMAL_MEDIAN if pos.size >= _MIN_VALUES else math.nan


def background_mask(image: np.ndarray, beam_px: float) -> tuple[np.ndarray, float]:
    """The background pixels of one image and their rms.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) image, linear unit.
    beam_px : float
        Beam FWHM [pixels]: the source mask grows by a disc of ``ceil(beam_px)`` pixels.

    Returns
    -------
    (numpy.ndarray, float)
        Boolean (H, W) mask, True on background, and :func:`halfnormal_rms` of the
        background (NaN when too few positive background pixels remain).
    """
    x = np.asarray(image, np.float64)
    first = halfnormal_rms(x)
    if not math.isfinite(first):
        return np.ones(x.shape, bool), math.nan
    source = ndimage.binary_dilation(x > SOURCE_SIGMA * first,
                                     structure=disk(max(1, math.ceil(beam_px))))
    return ~source, halfnormal_rms(x[~source])


def autocorrelation(image: np.ndarray, mask: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """Autocorrelation of the masked background at lags 0..``max_lag`` pixels.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) image, linear unit.
    mask : numpy.ndarray
        (H, W) bool, True on the pixels to use.
    max_lag : int
        Largest lag [pixels]. Default :data:`MAX_LAG`.

    Returns
    -------
    numpy.ndarray
        (max_lag + 1,) float64: ``sum d(p) d(p + k) / (n_k var)`` over the ``n_k`` pairs of
        masked pixels ``k`` apart along a row or a column (``d`` = value minus the masked
        mean, ``var`` its mean square), so lag 0 is 1. NaN where no pair or no variance.
    """
    m = np.asarray(mask, bool)
    out = np.full(max_lag + 1, math.nan)
    if m.sum() < 2:
        return out
    x = np.asarray(image, np.float64)
    d = np.where(m, x - x[m].mean(), 0.0)  # 0 outside the mask: such pairs add nothing
    w = m.astype(np.float64)
    var = float((d * d).sum() / w.sum())
    if var <= 0:
        return out
    h, wd = d.shape
    for k in range(min(max_lag + 1, max(h, wd))):
        num = (d[:, :wd - k] * d[:, k:]).sum() + (d[:h - k] * d[k:]).sum()
        pairs = (w[:, :wd - k] * w[:, k:]).sum() + (w[:h - k] * w[k:]).sum()
        out[k] = num / pairs / var if pairs > 0 else math.nan
    return out


@dataclass
class Background:
    """Per-image background statistics of a set (:func:`background_stats`)."""
    rms: np.ndarray       # (N,) rms, image unit
    acf: np.ndarray       # (N, MAX_LAG + 1) autocorrelation at lags 0..MAX_LAG pixels
    acf_beam: np.ndarray  # (N,) autocorrelation interpolated at the image's beam FWHM
    beam_px: np.ndarray   # (N,) beam FWHM [pixels] of each image
    pixels: list          # N float32 arrays: the background values of each image

    def __len__(self) -> int:
        return len(self.rms)


def background_stats(images: np.ndarray, beam_px: np.ndarray,
                     max_lag: int = MAX_LAG) -> Background:
    """:func:`background_mask` and :func:`autocorrelation` of every image of a batch.

    Parameters
    ----------
    images : numpy.ndarray
        (N, 1, H, W) or (N, H, W), linear unit (e.g. Jy/beam).
    beam_px : numpy.ndarray
        (N,) beam FWHM of each image [pixels] (cutouts of several pixel scales differ).
    max_lag : int
        Largest autocorrelation lag [pixels].

    Returns
    -------
    Background
        ``acf_beam`` is each image's curve at its own ``beam_px`` (linear interpolation;
        NaN beyond ``max_lag``).
    """
    x = np.asarray(images).reshape(len(images), *np.shape(images)[-2:])
    beam_px = np.broadcast_to(np.asarray(beam_px, np.float64), (len(x),))
    rms, acf, pixels = np.empty(len(x)), np.empty((len(x), max_lag + 1)), []
    for i, image in enumerate(x):
        mask, rms[i] = background_mask(image, beam_px[i])
        acf[i] = autocorrelation(image, mask, max_lag)
        pixels.append(image[mask].astype(np.float32))
    lags = np.arange(max_lag + 1)
    at_beam = np.array([np.interp(b, lags, a, right=math.nan) if np.isfinite(a).all()
                        else math.nan for a, b in zip(acf, beam_px)])
    return Background(rms, acf, at_beam, np.array(beam_px), pixels)
