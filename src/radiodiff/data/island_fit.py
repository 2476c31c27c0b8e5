"""Fit the noise-island model (:mod:`radiodiff.data.islands`) to a survey's real images:
the numbers ``conf/data/first.yaml`` ships as ``projection_islands``.

    radiodiff fit-islands --out bench/results/fit_islands.json

The FIRST images (Griese et al. 2023) are cut at about 3 rms, rescaled to the peak and
stored as 8-bit on the 1.8" grid. On that native grid (the central crop ``radiodiff
prepare`` keeps) :func:`island_counts` counts, per training image, the small islands (at
most ``max_area`` pixels) apart from the brightest component: the noise peaks above the cut.
:func:`fit_island_model` then draws ``fields`` noise-only fields from every model of a grid
(cut ``k`` ~ N(k_mean, k_std²) rms; rms / peak ``r`` log-normal, at most ``r_max`` = 1/5, a
source at least 5 rms bright as the survey catalogue requires), with common random numbers
across the grid, and ranks the models by how close their per-image island counts (mean,
median, 10 % and 90 % quantiles) and island peaks (fraction at one quantum, mean and 90 %
quantile, in 8-bit levels) come to the real ones (loss: the sum of squared differences in
units of the real values' bootstrap standard errors). Only the training split is read. The
fit stays on the native grid: the resampling to 3.6" and the output floor that follow are
not part of it.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
from scipy import ndimage

from radiodiff.data.islands import FWHM_TO_SIGMA, IslandModel, native_levels, small_islands

__all__ = ["SUMMARY_NAMES", "GRID", "NativeGrid", "FitSettings", "IslandFit", "island_counts",
           "island_summary", "bootstrap_se", "fit_island_model", "first_native_grid",
           "first_train_levels", "fit_first_islands"]

#: the statistics compared, in the order of :func:`island_summary`
SUMMARY_NAMES = ("mean", "median", "p10", "p90", "one-quantum fraction", "mean peak level",
                 "p90 peak level")
#: the model grid of the shipped fit (225 models)
GRID = {"k_mean": (3.0, 3.1, 3.15, 3.2, 3.3), "k_std": (0.0, 0.15, 0.3),
        "ln_r_mean": (-5.0, -4.75, -4.5, -4.25, -4.0), "ln_r_std": (0.8, 1.2, 1.6)}


@dataclass(frozen=True)
class NativeGrid:
    """The survey's native grid: the crop side [native pixels], the beam FWHM [native
    pixels] and native pixels per output pixel."""
    crop_px: int
    beam_fwhm_px: float
    factor: int


@dataclass(frozen=True)
class FitSettings:
    """``fields`` noise fields per model, islands of at most ``max_area`` native pixels,
    ``seed`` of the fields and the bootstrap (``n_boot`` draws), the model ``grid`` and the
    rms cap ``r_max`` (the catalogue's 5-rms detection limit: no source fainter)."""
    fields: int = 400
    max_area: int = 5
    seed: int = 0
    n_boot: int = 200
    grid: dict = field(default_factory=lambda: dict(GRID))
    r_max: float = 0.2

    def __post_init__(self) -> None:
        for name, low in (("fields", 1), ("max_area", 1), ("seed", 0), ("n_boot", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"island fit: {name} must be an integer >= {low}, got {v!r}")
        if set(self.grid) != set(GRID) or not all(len(v) for v in self.grid.values()):
            raise ValueError(f"island fit: the grid needs values for each of {list(GRID)}")


@dataclass
class IslandFit:
    """A fit's result: the real summary and its standard errors, and every model of the
    grid as (loss, model, summary), best first."""
    real: np.ndarray
    real_se: np.ndarray
    n_images: int
    settings: FitSettings
    rows: list

    @property
    def best(self) -> IslandModel:
        return self.rows[0][1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``best`` holds the model's fields, as ``radiodiff export
        --projection-islands`` reads them)."""
        names = SUMMARY_NAMES
        return {"real": dict(zip(names, self.real.tolist())),
                "real_se": dict(zip(names, self.real_se.tolist())),
                "n_images": self.n_images, "fields": self.settings.fields,
                "max_area": self.settings.max_area, "seed": self.settings.seed,
                "best": self.best.to_dict(),
                "grid": [{"loss": loss, **m.to_dict(), **dict(zip(names, s.tolist()))}
                         for loss, m, s in self.rows]}

    def table(self, top: int = 8) -> str:
        """The real row and the ``top`` best models as a Markdown table."""
        lines = ["| loss | k_mean | k_std | ln_r_mean | ln_r_std | "
                 + " | ".join(SUMMARY_NAMES) + " |",
                 "|---" * (5 + len(SUMMARY_NAMES)) + "|",
                 "| real | | | | | " + " | ".join(f"{v:.3g}" for v in self.real) + " |"]
        for loss, m, s in self.rows[:top]:
            lines.append(f"| {loss:.1f} | {m.k_mean:g} | {m.k_std:g} | {m.ln_r_mean:g} | "
                         f"{m.ln_r_std:g} | " + " | ".join(f"{v:.3g}" for v in s) + " |")
        return "\n".join(lines)

    def real_line(self) -> str:
        return (f"real train ({self.n_images} images, islands of <= {self.settings.max_area} "
                "native px): " + ", ".join(f"{k} {v:.3g} ± {s:.2g}" for k, v, s in
                                           zip(SUMMARY_NAMES, self.real, self.real_se)))


def island_counts(levels: Iterable[np.ndarray], max_area: int,
                  skip_main: bool = True) -> tuple[list[int], list[float]]:
    """Per image of quantisation ``levels``: its small-island count; and all their peak
    levels, image after image (:func:`radiodiff.data.islands.small_islands`)."""
    counts, peaks = [], []
    for x in levels:
        n, p = small_islands(x, max_area, skip_main)
        counts.append(n)
        peaks += p
    return counts, peaks


def island_summary(counts, peaks) -> np.ndarray:
    """The :data:`SUMMARY_NAMES` statistics of per-image counts and island peak levels."""
    c, p = np.asarray(counts, float), np.asarray(peaks, float)
    return np.array([c.mean(), np.median(c), np.quantile(c, 0.1), np.quantile(c, 0.9),
                     (p == 1).mean() if len(p) else 0.0, p.mean() if len(p) else 0.0,
                     np.quantile(p, 0.9) if len(p) else 0.0])


def bootstrap_se(counts, peaks, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Standard errors of :func:`island_summary` over images (peaks resampled with their
    image); at least 1e-3."""
    per_image, i = [], 0
    for c in counts:
        per_image.append(peaks[i:i + c])
        i += c
    counts = np.asarray(counts)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(counts), len(counts))
        draws.append(island_summary(counts[pick], [v for j in pick for v in per_image[j]]))
    return np.maximum(np.std(draws, axis=0), 1e-3)


def _noise_fields(grid: NativeGrid, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit-rms beam-correlated fields (islands.beam_noise's rule, vectorised)."""
    s = grid.beam_fwhm_px * FWHM_TO_SIGMA
    w = ndimage.gaussian_filter(rng.standard_normal((n, grid.crop_px, grid.crop_px)),
                                (0, s, s), mode="wrap")
    return w / w.std(axis=(1, 2), keepdims=True)


def fit_island_model(counts: list[int], peaks: list[float], grid: NativeGrid,
                     settings: FitSettings = FitSettings()) -> IslandFit:
    """Rank the models of ``settings.grid`` against the real images' ``counts`` and
    ``peaks`` (:func:`island_counts`), with common random numbers across the grid."""
    if not len(counts):
        raise ValueError("island fit: no real images to fit")
    real = island_summary(counts, peaks)
    rng = np.random.default_rng(settings.seed)
    se = bootstrap_se(counts, peaks, settings.n_boot, rng)
    w = _noise_fields(grid, settings.fields, rng)
    z_r, z_k = rng.standard_normal(settings.fields), rng.standard_normal(settings.fields)
    rows = []
    for values in itertools.product(*settings.grid.values()):
        model = IslandModel(**dict(zip(settings.grid, values)), r_max=settings.r_max,
                            beam_fwhm_px=grid.beam_fwhm_px, factor=grid.factor)
        levels = (native_levels(model, *f) for f in zip(w, z_r, z_k))  # the shipped rule
        s = island_summary(*island_counts(levels, settings.max_area, skip_main=False))
        rows.append((float(np.sum(((s - real) / se) ** 2)), model, s))
    rows.sort(key=lambda r: r[0])
    return IslandFit(real, se, len(counts), settings, rows)


def first_native_grid() -> NativeGrid:
    """The native grid of ``conf/data/first.yaml`` (crop, beam, 1.8" -> 3.6")."""
    from radiodiff.config import load_config
    d = load_config(["data=first"]).data
    pix = float(d.pixel_scale_arcsec)
    crop = int(round(float(d.crop_arcsec) / pix))
    return NativeGrid(crop, float(d.beam_arcsec[0]) / pix, crop // int(d.image_size))


def first_train_levels(crop_px: int) -> Iterator[np.ndarray]:
    """The FIRST training images' central ``crop_px`` pixels in 8-bit levels (rescaled to
    the image's peak), read from the firstgalaxydata wheel."""
    import h5py

    from radiodiff.data.first import MEMBER, first_archive
    with zipfile.ZipFile(first_archive()) as zf:
        blob = zf.read(MEMBER)
    with h5py.File(io.BytesIO(blob), "r") as f:
        for key in f:
            g = f[key]
            split = g["Split_literature"][()]
            if (split.decode() if isinstance(split, bytes) else str(split)) != "train":
                continue
            img = np.asarray(g["Img"][()], np.float64)
            c = (img.shape[0] - crop_px) // 2
            x = img[c:c + crop_px, c:c + crop_px]
            yield np.round(x / img.max() * 255) if img.max() > 0 else x


def fit_first_islands(settings: FitSettings = FitSettings()) -> IslandFit:
    """The fit of ``conf/data/first.yaml``'s ``projection_islands`` to the FIRST training
    split (``radiodiff fit-islands``)."""
    grid = first_native_grid()
    counts, peaks = island_counts(first_train_levels(grid.crop_px), settings.max_area)
    return fit_island_model(counts, peaks, grid, settings)
