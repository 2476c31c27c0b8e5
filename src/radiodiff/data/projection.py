"""The output projection: the data's last preprocessing steps, which generated images go
through too (a release records them in ``meta.json`` ``projection``).

The quantum floor with its halo and the peak at 1 (:func:`project_like_data`), the floor
measured on the training images (:func:`largest_kept_floor`), the data's noise islands
laid under each image (:func:`apply_projection`, :mod:`radiodiff.data.islands`) and the
checks of the ``data.projection_*`` config keys.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from radiodiff.data.islands import IslandModel, add_islands

__all__ = ["DATA_FLOOR", "project_like_data", "apply_projection", "largest_kept_floor",
           "read_kept_floor", "check_projection_floor", "check_projection_config"]

DATA_FLOOR = "data"  # data.projection_floor: the floor measured on the training images


def project_like_data(images: np.ndarray, floor: float | None, halo_px: int = 2,
                      peak_one: bool = True) -> np.ndarray:
    """Generated (N, 1, H, W) images through the data's own last preprocessing steps.

    - ``floor`` (fraction of each image's peak; None = skip): the source images are
      quantised and thresholded (FIRST: 8-bit after a 3-rms cut), so a value below one
      quantum occurs in the data only in the resampling halo of brighter emission.
      Pixels below ``floor`` farther than ``halo_px`` pixels from any pixel at or above
      it are set to exactly 0. At :func:`largest_kept_floor` of the training images (FIRST,
      halo 2: 8.0e-4) the rule moves no real pixel; at the 8-bit quantum 1/255 it would
      move 0.5 % of them and delete 43 % of their faint islands.
    - ``peak_one``: per-image scaled data have their maximum at exactly 1.
    Negatives are already clipped by the decoding. Returns a new float32 array.
    """
    from scipy import ndimage

    x = np.array(images, dtype=np.float32, copy=True)
    peak = x.max(axis=(-2, -1), keepdims=True)
    if floor is not None:
        size = 2 * int(halo_px) + 1
        for img, p in zip(x.reshape(-1, *x.shape[-2:]), peak.reshape(-1)):
            if p <= 0:
                continue
            near = ndimage.binary_dilation(img >= floor * p, np.ones((size, size), bool))
            img[~near] = 0.0
    if peak_one:
        np.divide(x, peak, out=x, where=peak > 0)
    return x


def apply_projection(images: np.ndarray, projection: dict | None,
                     seeds: np.ndarray | None = None, islands: bool = True) -> np.ndarray:
    """A release's output projection (its meta ``projection``) applied to (N, 1, H, W)
    images: :func:`project_like_data`, then, when it records ``islands`` (and ``islands``
    is True), the data's noise islands under each image, drawn from its seed
    (:func:`radiodiff.data.islands.add_islands`), and the projection again, so that an
    island keeps its own halo but not the network's faint haze around it."""
    if not projection:
        return np.array(images, dtype=np.float32, copy=True)
    p = {k: v for k, v in projection.items() if k != "islands"}
    x = project_like_data(images, **p)
    if islands and projection.get("islands"):
        if seeds is None:
            raise ValueError("apply_projection: a projection with islands needs the seeds")
        x = project_like_data(add_islands(x, IslandModel.from_dict(projection["islands"]),
                                          seeds), **p)
    return x


def largest_kept_floor(images: np.ndarray, halo_px: int = 2) -> float | None:
    """The largest ``floor`` under which :func:`project_like_data` changes no pixel of
    ``images`` (N, [1,] H, W; non-negative), or None when no image has a nonzero pixel.

    A nonzero pixel survives the projection when some pixel within ``halo_px`` of it reaches
    ``floor`` times the image peak, so the answer is the smallest ratio, over all nonzero
    pixels, of the neighbourhood maximum to the peak (less a relative 1e-6 for rounding).
    Measured on the training images, it is the floor derived from the data: generated
    faint emission is removed only where no real image has any.
    """
    x = np.asarray(images, dtype=np.float64)
    x = x.reshape(-1, *x.shape[-2:])
    size = 2 * int(halo_px) + 1
    best = math.inf
    for img in x:
        peak = img.max()
        if peak > 0:
            near = ndimage.maximum_filter(img, size=size, mode="constant", cval=0.0)
            best = min(best, float(near[img > 0].min() / peak))
    return None if best == math.inf else best * (1.0 - 1e-6)


def read_kept_floor(path, rows: np.ndarray, halo_px: int = 2, chunk: int = 1024) -> float | None:
    """:func:`largest_kept_floor` over the images of ``rows`` of the prepared file ``path``,
    read ``chunk`` rows at a time."""
    import h5py

    rows = np.sort(np.asarray(rows, dtype=np.int64))
    floors = []
    with h5py.File(path, "r") as f:
        for i in range(0, len(rows), chunk):
            floors.append(largest_kept_floor(f["images"][rows[i:i + chunk]], halo_px))
    floors = [v for v in floors if v is not None]
    return min(floors) if floors else None


def check_projection_floor(value, where: str = "data.projection_floor") -> None:
    """``data.projection_floor`` must be null, ``"data"`` or a number in (0, 1)."""
    if value is None or value == DATA_FLOOR:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
    if not ok:
        raise ValueError(f"{where}={value!r} (must be a fraction of the peak in (0, 1), "
                         f"{DATA_FLOOR!r} or null)")


def check_projection_config(d) -> None:
    """The output-projection keys of a data config (``projection_floor``,
    ``projection_halo_px``, ``projection_islands``): one ValueError naming the bad ones."""
    problems = []
    try:
        check_projection_floor(d.get("projection_floor"))
    except ValueError as exc:
        problems.append(str(exc))
    halo = d.get("projection_halo_px", 2)
    if isinstance(halo, bool) or not isinstance(halo, int) or not 0 <= halo <= 64:
        problems.append(f"data.projection_halo_px={halo!r} (must be an int in 0..64)")
    islands = d.get("projection_islands")
    if islands is not None:
        from omegaconf import OmegaConf

        try:
            IslandModel.from_dict(OmegaConf.to_container(islands) if OmegaConf.is_config(
                islands) else islands, "data.projection_islands")
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
