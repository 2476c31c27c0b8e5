"""Noise islands of a thresholded, quantised survey image: the last preprocessing steps of
the FIRST set (Griese et al. 2023) that a network does not draw.

The FIRST images were cut at about 3 rms (pixels below set to 0), rescaled to the peak and
stored as 8-bit, on the survey's 1.8" grid; ``radiodiff prepare`` then resampled them to
3.6". Noise peaks just above the cut survive as small isolated islands of one or two
quanta: in the training split 5.9 islands of at most 5 pixels per image (median 4, 10 %
of images none, 10 % at least 15). :func:`island_layer` draws them the way they arose:
beam-correlated Gaussian noise on the native grid at a per-image rms ``r`` (a fraction of
the peak; log-normal, at most ``r_max``), cut at ``k`` rms (normal), rescaled like the
data ((x - t) / (1 - t)), quantised to ``levels`` and resampled like ``prepare``.
:func:`add_islands` lays such a layer under each generated image (pixel-wise maximum),
seeded per image. :func:`island_table` is the one island count (of data, of a model's
layers, of generated images). The parameters come from ``radiodiff fit-islands``
(:mod:`radiodiff.data.island_fit`), which matches the model's island statistics to the
training split's on the native grid.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from radiodiff.config import IslandConfig
from radiodiff.data.preprocess import resize_image
from radiodiff.seeds import island_rng

__all__ = ["IslandModel", "IslandTable", "island_table", "small_islands", "island_layer",
           "native_levels", "add_islands"]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass
class IslandModel(IslandConfig):
    """Noise islands of a cut, rescaled, quantised image (see the module docstring), the
    validated :class:`radiodiff.config.IslandConfig` (its fields, defaults and meaning).

    ``k_mean``, ``k_std``: the cut in rms units; ``ln_r_mean``, ``ln_r_std``, ``r_max``:
    the per-image rms as a fraction of the peak; ``beam_fwhm_px``: the beam on the native
    grid; ``factor``: native pixels per output pixel; ``levels``: quantisation levels
    above 0 (255 for 8 bit).
    """

    def __post_init__(self):
        problems = []
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                problems.append(f"{f.name}={v!r} (must be a finite number)")
        if not problems:
            if self.k_mean <= 0 or self.k_std < 0 or self.ln_r_std < 0:
                problems.append("k_mean must be > 0, k_std and ln_r_std >= 0")
            if not 0 < self.r_max < 1 / max(self.k_mean, 1e-9):
                problems.append(f"r_max={self.r_max} (must be in (0, 1/k_mean): the cut "
                                "stays below the peak)")
            if self.beam_fwhm_px <= 0:
                problems.append(f"beam_fwhm_px={self.beam_fwhm_px} (must be > 0)")
            if not (isinstance(self.factor, int) and 1 <= self.factor <= 16):
                problems.append(f"factor={self.factor!r} (must be an int in 1..16)")
            if not (isinstance(self.levels, int) and 1 <= self.levels <= 65535):
                problems.append(f"levels={self.levels!r} (must be an int in 1..65535)")
        if problems:
            raise ValueError("island model: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "islands") -> "IslandModel":
        names = {f.name for f in fields(cls)}
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: must be a mapping of {sorted(names)}, got "
                             f"{type(d).__name__}")
        missing, extra = sorted(names - {"levels"} - set(d)), sorted(set(d) - names)
        if missing or extra:
            raise ValueError(f"{where}: must have {sorted(names)}"
                             + (f"; missing {missing}" if missing else "")
                             + (f"; unknown {extra[:5]}" if extra else ""))
        try:
            return cls(**{k: d[k] for k in d})
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def to_dict(self) -> dict:
        return asdict(self)


def beam_noise(model: IslandModel, shape: tuple[int, int],
               rng: np.random.Generator) -> np.ndarray:
    """Unit-rms Gaussian noise of ``shape`` on the native grid, correlated by the beam."""
    w = ndimage.gaussian_filter(rng.standard_normal(shape),
                                model.beam_fwhm_px * FWHM_TO_SIGMA, mode="wrap")
    return w / w.std()


def native_levels(model: IslandModel, w: np.ndarray, z_r: float, z_k: float) -> np.ndarray:
    """The one rule of the data's cut: unit-rms noise ``w`` at rms r = exp(ln_r_mean +
    ln_r_std z_r) (at most r_max) of the peak, cut at t = (k_mean + k_std z_k) r, rescaled
    ((x - t) / (1 - t)) and quantised; in quantisation levels (0, 1, 2 ...)."""
    r = min(math.exp(model.ln_r_mean + model.ln_r_std * z_r), model.r_max)
    t = max(model.k_mean + model.k_std * z_k, 0.0) * r
    if t >= 1.0:  # a cut at or above the peak keeps no noise
        return np.zeros_like(w)
    return np.round(np.clip((r * w - t) / (1.0 - t), 0.0, None) * model.levels)


def island_layer(model: IslandModel, shape: int | tuple[int, int],
                 rng: np.random.Generator) -> np.ndarray:
    """One float32 layer of noise islands of ``shape`` (output pixels), as a fraction of
    the peak: drawn on the native grid, resampled like ``radiodiff prepare``."""
    h, w_ = (shape, shape) if isinstance(shape, int) else tuple(shape)
    w = beam_noise(model, (h * model.factor, w_ * model.factor), rng)
    z_r, z_k = rng.standard_normal(), rng.standard_normal()
    return resize_image(native_levels(model, w, z_r, z_k) / model.levels, (h, w_))


def add_islands(images: np.ndarray, model: IslandModel, seeds: Sequence[int]) -> np.ndarray:
    """Each (N, C, H, W) image under a layer of islands drawn from ``island_rng(seeds[k])``
    (pixel-wise maximum, relative to the image's peak; every channel). Returns a new
    float32 array at the input's scale."""
    x = np.array(images, dtype=np.float32, copy=True)
    if len(seeds) != len(x):
        raise ValueError(f"add_islands: {len(seeds)} seeds for {len(x)} images")
    for img, seed in zip(x, seeds):
        peak = img.max()
        if peak > 0:
            layer = island_layer(model, img.shape[-2:], island_rng(seed))
            np.maximum(img, layer * peak, out=img)
    return x


class IslandTable(NamedTuple):
    """The islands of one image: ``labels`` (H, W; 0 = background, island k is k) and per
    island (index k - 1) its ``area`` [pixels], ``peak`` and ``flux`` (sum) [image units]."""
    labels: np.ndarray
    area: np.ndarray
    peak: np.ndarray
    flux: np.ndarray


def island_table(image: np.ndarray, connectivity: int = 1) -> IslandTable:
    """The connected islands of the positive pixels of a 2-d ``image``: ``connectivity`` 1
    joins edge neighbours only (4-connected), 2 also corner neighbours (8-connected)."""
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (edges) or 2 (edges and corners), "
                         f"got {connectivity!r}")
    image = np.asarray(image)
    structure = ndimage.generate_binary_structure(2, connectivity)
    lab, m = ndimage.label(image > 0, structure=structure)
    idx = np.arange(1, m + 1)
    if m == 0:
        empty = np.zeros(0)
        return IslandTable(lab, empty, empty, empty)
    return IslandTable(lab, ndimage.sum(np.ones_like(image), lab, idx),
                       ndimage.maximum(image, lab, idx), ndimage.sum(image, lab, idx))


def small_islands(levels: np.ndarray, max_area: int, skip_main: bool) -> tuple[int, list]:
    """Number of (4-connected) islands of at most ``max_area`` pixels, apart from the one
    with the most flux when ``skip_main`` (the source), and their peak values."""
    t = island_table(levels)
    if len(t.area) == 0:
        return 0, []
    keep = t.area <= max_area
    if skip_main:
        keep &= np.arange(len(t.area)) != np.argmax(t.flux)
    return int(keep.sum()), list(t.peak[keep])
