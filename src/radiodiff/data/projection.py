"""The output projection: the data's last preprocessing steps, which generated images go
through too (a release records them in ``meta.json`` ``projection``).

The quantum floor with its halo and the peak at 1 (:func:`project_like_data`), the floor
measured on the training images (:func:`largest_kept_floor`), the data's noise islands
laid under each image (:func:`apply_projection`, :mod:`radiodiff.data.islands`).

One validation rule for every place a projection comes from: :func:`check_floor`,
:func:`check_halo` and :class:`~radiodiff.data.islands.IslandModel` for its parts,
:func:`projection_from` for a release's ``projection`` (a
:class:`radiodiff.config.ProjectionConfig`, whose defaults are the only ones) and
:func:`check_projection_config` for the ``data.projection_*`` config keys; each caller says
``where`` the value came from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any, Mapping, Optional

import numpy as np
from scipy import ndimage

from radiodiff.config import DATA_FLOOR, ProjectionConfig
from radiodiff.data.islands import IslandModel, add_islands

__all__ = ["DATA_FLOOR", "HALO", "project_like_data", "apply_projection", "largest_kept_floor",
           "read_kept_floor", "check_floor", "check_halo", "islands_from", "projection_from",
           "projection_dict", "check_projection_config"]

HALO = ProjectionConfig.halo_px  # the default halo (pixels), for every function here
MAX_HALO = 64                    # pixels: a wider halo keeps every pixel of an 80 px image


def project_like_data(images: np.ndarray, floor: float | None, halo_px: int = HALO,
                      peak_one: bool = ProjectionConfig.peak_one) -> np.ndarray:
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


def apply_projection(images: np.ndarray, projection: ProjectionConfig | Mapping | None,
                     seeds: np.ndarray | None = None, islands: bool = True) -> np.ndarray:
    """A release's output projection (a :class:`~radiodiff.config.ProjectionConfig`, or its
    meta ``projection`` dict, read by :func:`projection_from`) applied to (N, 1, H, W)
    images: :func:`project_like_data`, then, when it records ``islands`` (and ``islands``
    is True), the data's noise islands under each image, drawn from its seed
    (:func:`radiodiff.data.islands.add_islands`), and the projection again, so that an
    island keeps its own halo but not the network's faint haze around it."""
    p = projection_from(projection, "apply_projection")
    if p is None:
        return np.array(images, dtype=np.float32, copy=True)
    x = project_like_data(images, p.floor, p.halo_px, p.peak_one)
    if islands and p.islands is not None:
        if seeds is None:
            raise ValueError("apply_projection: a projection with islands needs the seeds")
        x = project_like_data(add_islands(x, p.islands, seeds), p.floor, p.halo_px,
                              p.peak_one)
    return x


def largest_kept_floor(images: np.ndarray, halo_px: int = HALO) -> float | None:
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


def read_kept_floor(path, rows: np.ndarray, halo_px: int = HALO,
                    chunk: int = 1024) -> float | None:
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


def check_floor(value: Any, where: str, data_ok: bool = False) -> float | str | None:
    """A projection floor: a fraction of the peak in (0, 1), None (no floor) or, in a data
    config (``data_ok``), ``"data"`` or the number as text (``data.projection_floor`` is a
    string field: OmegaConf 2.3 cannot compose a Union of float and str under Hydra).
    Returns it (a number as float); anything else is a ValueError naming ``where``."""
    if value is None or (data_ok and value == DATA_FLOOR):
        return value
    if data_ok and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    allowed = f", {DATA_FLOOR!r}" if data_ok else ""
    raise ValueError(f"{where}={value!r} (must be a fraction of the peak in (0, 1){allowed} "
                     "or null)")


def check_halo(value: Any, where: str) -> int:
    """A projection halo: an int of pixels in 0..``MAX_HALO``; else a ValueError naming
    ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HALO:
        raise ValueError(f"{where}={value!r} (must be an int of pixels in 0..{MAX_HALO})")
    return value


def islands_from(value: Any, where: str) -> Optional[IslandModel]:
    """The noise islands of a projection (IslandModel fields, a mapping or DictConfig), or
    None."""
    if value is None or isinstance(value, IslandModel):
        return value
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    elif not isinstance(value, Mapping) and hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    return IslandModel.from_dict(value, where)


def projection_from(p: Any, where: str = "projection") -> Optional[ProjectionConfig]:
    """The one reading of an output projection (a release's meta ``projection``: ``floor``,
    ``halo_px``, ``peak_one``, optionally ``islands``; or a ProjectionConfig), validated,
    as a :class:`~radiodiff.config.ProjectionConfig` with an
    :class:`~radiodiff.data.islands.IslandModel`; None stays None."""
    if p is None:
        return None
    if isinstance(p, ProjectionConfig):
        p = {f.name: getattr(p, f.name) for f in fields(p)}
    keys = {"floor", "halo_px", "peak_one"}
    if not isinstance(p, Mapping) or not keys <= set(p) <= keys | {"islands"}:
        raise ValueError(f"{where}: projection must have floor, halo_px, peak_one (and "
                         f"optionally islands); got {p!r}")
    if not isinstance(p["peak_one"], bool):
        raise ValueError(f"{where}: projection peak_one must be true or false, got "
                         f"{p['peak_one']!r}")
    return ProjectionConfig(floor=check_floor(p["floor"], f"{where}: projection floor"),
                            halo_px=check_halo(p["halo_px"], f"{where}: projection halo_px"),
                            peak_one=p["peak_one"],
                            islands=islands_from(p.get("islands"),
                                                 f"{where}: projection islands"))


def projection_dict(p: Optional[ProjectionConfig]) -> Optional[dict]:
    """A projection as a release's meta ``projection`` (``islands`` only when it has them)."""
    if p is None:
        return None
    out = {"floor": p.floor, "halo_px": p.halo_px, "peak_one": p.peak_one}
    if p.islands is not None:
        out["islands"] = asdict(p.islands)
    return out


def check_projection_config(d: Any, where: str = "data") -> None:
    """The output-projection keys of a data config (``projection_floor``,
    ``projection_halo_px``, ``projection_islands``): one ValueError naming the bad ones."""
    problems = []
    checks = ((check_floor, "projection_floor", dict(data_ok=True)),
              (check_halo, "projection_halo_px", {}), (islands_from, "projection_islands", {}))
    for check, key, kw in checks:
        default = getattr(ProjectionConfig, key.removeprefix("projection_"), None)
        try:
            check(d.get(key, default), f"{where}.{key}", **kw)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
