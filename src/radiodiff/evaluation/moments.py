"""Per-image pixel and shape statistics of radio-galaxy images, vectorised over a batch.

The shape statistics follow the image-moment description of Vičánek Martínez et al. 2024
(A&A 691, A360): centre of emission, size, orientation and elongation of the
intensity-weighted pixel distribution.

Conventions
-----------
* Images are a batch of shape (N, 1, H, W) or (N, H, W), intensities on the [0, 1]
  model/display scale (any real dtype; everything is computed in float64).
* Pixel coordinates are 0-based; ``x`` is the column index and ``y`` the row index, so a
  pixel is ``image[..., y, x]``. The geometric image centre is ``((W-1)/2, (H-1)/2)``.
* Angles are in degrees in (-90, 90], measured from the +x axis towards +y (in array
  coordinates; counter-clockwise when displayed with ``origin="lower"``).
* Every function returns a dict of (N,) float64 tensors on the input's device; no Python
  loop over images.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "PIXEL_KEYS", "SHAPE_KEYS", "ALL_KEYS", "pixel_stats", "shape_stats", "all_stats",
]

#: Keys returned by :func:`pixel_stats`, in order.
PIXEL_KEYS: tuple[str, ...] = ("mean", "std", "max", "active_fraction")
#: Keys returned by :func:`shape_stats`, in order.
SHAPE_KEYS: tuple[str, ...] = (
    "cx", "cy", "radius", "size", "orientation", "elongation", "total",
)
#: Keys returned by :func:`all_stats`, in order.
ALL_KEYS: tuple[str, ...] = PIXEL_KEYS + SHAPE_KEYS


def _as_batch(images: Tensor) -> Tensor:
    """(N, 1, H, W) or (N, H, W) images as a float64 (N, H, W) tensor."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError("images must be single-channel (N, 1, H, W) or (N, H, W), "
                             f"got shape {tuple(images.shape)}")
        images = images[:, 0]
    elif images.ndim != 3:
        raise ValueError("images must have shape (N, 1, H, W) or (N, H, W), "
                         f"got shape {tuple(images.shape)}")
    if images.is_complex():
        raise TypeError("images must be real-valued")
    return images.detach().to(torch.float64)


def pixel_stats(images: Tensor, threshold: float = 0.1) -> dict[str, Tensor]:
    """Per-image pixel-intensity statistics.

    Parameters
    ----------
    images : torch.Tensor
        Batch of shape (N, 1, H, W) or (N, H, W); intensities on the [0, 1] scale. Values
        are used as given (negative pixels are not clipped here).
    threshold : float
        Absolute intensity on the same [0, 1] scale above which (strictly) a pixel counts
        as active. Default 0.1.

    Returns
    -------
    dict of str to torch.Tensor
        (N,) float64 tensors: ``mean``, ``std`` (population standard deviation, i.e. no
        Bessel correction) and ``max`` of the pixel values, in image-intensity units;
        ``active_fraction``, the fraction of pixels with value > ``threshold``
        (dimensionless, in [0, 1]).
    """
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    x = _as_batch(images).flatten(1)  # (N, H*W)
    return {
        "mean": x.mean(dim=1),
        "std": x.std(dim=1, correction=0),
        "max": x.amax(dim=1),
        "active_fraction": (x > threshold).to(torch.float64).mean(dim=1),
    }


def shape_stats(images: Tensor, max_elongation: float = 1e3) -> dict[str, Tensor]:
    """Per-image shape statistics from intensity-weighted image moments.

    Negative pixel values (e.g. small undershoots in generated samples) are clipped to
    zero before weighting, since a moment with negative weights has no geometric meaning.

    Parameters
    ----------
    images : torch.Tensor
        Batch of shape (N, 1, H, W) or (N, H, W); non-negative intensities.
    max_elongation : float
        Upper cap on ``elongation`` (>= 1), reached when the minor-axis variance vanishes
        (e.g. a one-pixel-wide line, where the ratio is infinite or dominated by rounding).
        Keeps histograms finite. Default 1e3.

    Returns
    -------
    dict of str to torch.Tensor
        (N,) float64 tensors, with ``I`` the clipped intensity, ``I_tot = sum I`` and
        ``mu_pq = sum I (x - cx)^p (y - cy)^q / I_tot`` the central second moments:

        ``cx``, ``cy``
            Intensity-weighted centroid ``sum I x / I_tot`` etc. [pixels, 0-based,
            x = column].
        ``radius``
            Distance of the centroid from the image centre ``((W-1)/2, (H-1)/2)`` [pixels].
        ``size``
            RMS radius ``sqrt(mu20 + mu02)`` [pixels]; for a Gaussian blob
            ``sqrt(sigma_x^2 + sigma_y^2)``.
        ``orientation``
            Major-axis angle ``0.5 atan2(2 mu11, mu20 - mu02)`` [degrees, in (-90, 90],
            from +x towards +y]. Ill-defined (noise-dominated) when elongation is ~1;
            0 for a single bright pixel.
        ``elongation``
            ``sqrt(lambda_max / lambda_min)`` of the covariance ``[[mu20, mu11],
            [mu11, mu02]]`` [dimensionless, in [1, max_elongation]]; the major/minor sigma
            ratio of a Gaussian blob. 1 for a single bright pixel (zero covariance).
        ``total``
            ``I_tot``, the summed clipped intensity [intensity x pixels].

        Images with zero total intensity give ``total = 0`` and NaN for all other keys
        (no exception is raised).
    """
    if not (math.isfinite(max_elongation) and max_elongation >= 1):
        raise ValueError(f"max_elongation must be a finite number >= 1, got {max_elongation}")
    w = _as_batch(images).clamp_min(0.0)  # (N, H, W)
    _, h, wd = w.shape
    xs = torch.arange(wd, dtype=torch.float64, device=w.device)  # (W,)
    ys = torch.arange(h, dtype=torch.float64, device=w.device)  # (H,)

    total = w.sum(dim=(1, 2))  # (N,)
    valid = total > 0
    # Divide by 1 where empty and mask afterwards, so no inf/NaN arithmetic happens.
    norm = torch.where(valid, total, torch.ones_like(total))
    col = w.sum(dim=1)  # (N, W) marginal over rows
    row = w.sum(dim=2)  # (N, H) marginal over columns
    cx = (col * xs).sum(dim=1) / norm
    cy = (row * ys).sum(dim=1) / norm

    # Central moments in a second pass (about the centroid) to avoid cancellation.
    dx = xs[None, :] - cx[:, None]  # (N, W)
    dy = ys[None, :] - cy[:, None]  # (N, H)
    mu20 = (col * dx**2).sum(dim=1) / norm
    mu02 = (row * dy**2).sum(dim=1) / norm
    mu11 = torch.einsum("nhw,nh,nw->n", w, dy, dx) / norm

    # Eigenvalues of the 2x2 covariance; lambda_min = det / lambda_max avoids the
    # cancellation of (trace/2 - r) for very elongated sources.
    half_diff = 0.5 * (mu20 - mu02)
    r = torch.sqrt(half_diff**2 + mu11**2)
    lam_max = 0.5 * (mu20 + mu02) + r
    det = (mu20 * mu02 - mu11**2).clamp_min(0.0)
    has_spread = lam_max > 0
    lam_max_safe = torch.where(has_spread, lam_max, torch.ones_like(lam_max))
    lam_min = det / lam_max_safe
    lam_floor = lam_max_safe / max_elongation**2  # caps the ratio at max_elongation
    ratio = lam_max_safe / torch.maximum(lam_min, lam_floor)
    elongation = torch.where(
        has_spread, torch.sqrt(ratio).clamp(1.0, max_elongation), torch.ones_like(ratio)
    )

    orientation = torch.rad2deg(0.5 * torch.atan2(2.0 * mu11, mu20 - mu02))
    # atan2 lies in [-pi, pi]; fold the closed end -90 onto +90 so the range is (-90, 90].
    orientation = torch.where(orientation <= -90.0, orientation + 180.0, orientation)

    radius = torch.hypot(cx - 0.5 * (wd - 1), cy - 0.5 * (h - 1))
    size = torch.sqrt((mu20 + mu02).clamp_min(0.0))

    nan = torch.full_like(total, math.nan)
    out = {
        "cx": cx, "cy": cy, "radius": radius, "size": size,
        "orientation": orientation, "elongation": elongation,
    }
    out = {k: torch.where(valid, v, nan) for k, v in out.items()}
    out["total"] = total
    return out


def all_stats(
    images: Tensor, threshold: float = 0.1, max_elongation: float = 1e3
) -> dict[str, Tensor]:
    """:func:`pixel_stats` and :func:`shape_stats` merged into one dict (keys ``ALL_KEYS``).

    Parameters
    ----------
    images : torch.Tensor
        Batch of shape (N, 1, H, W) or (N, H, W); intensities on the [0, 1] scale.
    threshold : float
        Active-pixel threshold passed to :func:`pixel_stats` [intensity, absolute].
    max_elongation : float
        Elongation cap passed to :func:`shape_stats`.

    Returns
    -------
    dict of str to torch.Tensor
        (N,) float64 tensors; see :func:`pixel_stats` and :func:`shape_stats` for units.
    """
    return {**pixel_stats(images, threshold=threshold),
            **shape_stats(images, max_elongation=max_elongation)}
