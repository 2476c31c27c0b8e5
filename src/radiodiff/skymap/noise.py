"""Beam-correlated Gaussian noise with a requested rms per beam.

White noise ``n`` (unit variance) convolved with a Gaussian kernel ``K`` has variance
``sum(K^2)`` and autocorrelation ``K * K``. Interferometric image noise is correlated on
the scale of the restoring beam, i.e. its autocorrelation is the beam, so ``K`` is the
beam with each FWHM divided by sqrt(2) (``K * K`` is then the beam). The field is
``rms * (K * n) / sqrt(sum K^2)``: its pixel rms is the requested rms per beam, exactly in
expectation (no realisation-dependent rescaling, so shards agree).

Determinism: the white noise is drawn in fixed blocks of ``BLOCK`` pixels, block (by, bx)
from its own seed (:func:`radiodiff.seeds.sky_noise_rng`), and convolved directly (not by
FFT), so a pixel's value depends only on the white noise around it: any tile of the map,
rendered with a margin of the kernel half-width, is bit-identical to the same pixels of the
whole map.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from radiodiff.seeds import sky_noise_rng
from radiodiff.skymap.sky import FWHM_PER_SIGMA, Beam, MapGrid

__all__ = ["BLOCK", "noise_kernel", "white_noise", "noise_tile"]

BLOCK = 256


def noise_kernel(beam: Beam, pixel_scale_arcsec: float) -> np.ndarray:
    """The kernel K (beam FWHMs / sqrt(2), axes along the beam PA), odd square array."""
    from astropy.convolution import Gaussian2DKernel

    s_maj = beam.bmaj / math.sqrt(2) / FWHM_PER_SIGMA / pixel_scale_arcsec
    s_min = beam.bmin / math.sqrt(2) / FWHM_PER_SIGMA / pixel_scale_arcsec
    # Gaussian2DKernel's theta: from +x towards +y; the major axis at PA east of north
    # points along pixel (-sin PA, cos PA).
    theta = math.radians(90.0 + beam.pa)
    size = 2 * int(math.ceil(4 * s_maj)) + 1
    return Gaussian2DKernel(s_maj, s_min, theta, x_size=size, y_size=size).array


def white_noise(seed: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Unit white noise on map pixels [y0, y1) x [x0, x1), from per-block seeds."""
    out = np.empty((y1 - y0, x1 - x0))
    for by in range(y0 // BLOCK, (y1 - 1) // BLOCK + 1):
        for bx in range(x0 // BLOCK, (x1 - 1) // BLOCK + 1):
            rng = sky_noise_rng(seed, by, bx)
            block = rng.standard_normal((BLOCK, BLOCK))
            ya, yb = max(y0, by * BLOCK), min(y1, (by + 1) * BLOCK)
            xa, xb = max(x0, bx * BLOCK), min(x1, (bx + 1) * BLOCK)
            out[ya - y0:yb - y0, xa - x0:xb - x0] = \
                block[ya - by * BLOCK:yb - by * BLOCK, xa - bx * BLOCK:xb - bx * BLOCK]
    return out


def noise_tile(grid: MapGrid, rows: tuple[int, int], rms: float, seed: int,
               rms_map: Optional[np.ndarray] = None) -> np.ndarray:
    """Noise (Jy/beam) of map rows [r0, r1): rms ``rms``, or ``rms_map`` (the tile's rows,
    Jy/beam) where given."""
    from scipy.ndimage import correlate

    if not (math.isfinite(rms) and rms > 0):
        raise ValueError(f"noise rms must be a positive number (Jy/beam), got {rms}")
    kernel = noise_kernel(grid.beam, grid.pixel_scale_arcsec)
    h = kernel.shape[0] // 2
    nx = grid.shape[1]
    white = white_noise(seed, rows[0] - h, rows[1] + h, -h, nx + h)
    # Direct sum over the kernel at each pixel; the margins hold the real neighbours.
    field = correlate(white, kernel[::-1, ::-1], mode="constant")[h:-h, h:-h]
    unit = field / math.sqrt(float((kernel ** 2).sum()))
    return unit * (rms if rms_map is None else rms_map)
