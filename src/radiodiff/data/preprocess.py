"""Per-cutout measurements, quality cuts, resizing, negative policy and [0, 1] scaling.

Pure numpy / scikit-image: nothing here knows about FITS or catalogues.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from radiodiff.data.prepared import FLAGS

__all__ = ["project_like_data", "apply_projection", "largest_kept_floor", "read_kept_floor",
           "check_projection_floor", "check_projection_config", "DATA_FLOOR", "CUT_ORDER", "centre_on", "cutout_side_arcsec", "measure",
           "quality_flags", "fill_nan", "resize_image",
           "apply_negatives", "fit_scaling"]

DATA_FLOOR = "data"  # data.projection_floor: the floor measured on the training images

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
    if cuts.blank and (values.size == 0 or values.max() == values.min()):
        return flags | FLAGS["blank"]
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
        from radiodiff.data.islands import IslandModel, add_islands
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

        from radiodiff.data.islands import IslandModel
        try:
            IslandModel.from_dict(OmegaConf.to_container(islands) if OmegaConf.is_config(
                islands) else islands, "data.projection_islands")
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
