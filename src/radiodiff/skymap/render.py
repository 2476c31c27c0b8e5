"""Placing sources on the map grid (noise-free model map, Jy/beam of the target beam).

Two paths, both giving a :class:`Stamp` on a box of map pixels that depends only on the
source (never on the tile being rendered), so tiles assemble bit for bit:

* :func:`gaussian_stamp`: unresolved / small sources, the beam convolved with a Gaussian
  of FWHMs LAS and q LAS at the source's PA (round without an axis ratio), analytically
  (covariances add), sampled at pixel centres, with the source's integrated flux.
* :func:`place_cutout`: a resolved source's cutout (from the model, or any image) is put
  on a WCS centred on the source and rotated to its PA (:func:`~radiodiff.skymap.sky.cutout_wcs`)
  and resampled onto the map pixels with ``reproject_exact`` (spherical polygon overlap:
  surface brightness conserving, so the integrated flux is conserved when the pixel
  scales differ). A cutout in Jy/beam of its own beam ``B_c`` is converted to Jy/beam of
  the map beam ``B`` by ``Omega_B / Omega_Bc`` (same flux per steradian) and kept at its
  own flux where the source was asked for by its peak (:func:`_keeps_own_flux`); otherwise
  (and for normalised cutouts) it is scaled to the catalogue's integrated flux.

Overlapping sources add; sources are added in id order in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from radiodiff.seeds import sky_image_seed
from radiodiff.skymap.sky import Beam, MapGrid, cutout_wcs
from radiodiff.skymap.sources import Sources, observed_covariance, peak_from_total

__all__ = ["Cutout", "Stamp", "gaussian_stamp", "place_cutout", "extent_px", "source_mask",
           "source_only",
           "ModelCutouts", "RenderSettings", "render_tile", "TRUTH_COLUMNS"]

_GAUSS_RADIUS_FWHM = 3.0     # Gaussian stamps reach 3 FWHM (flux beyond: < 1e-10)
_MAX_STRETCH = 4.0           # LAS rule: the LAS spans at least 1/4 of a cutout side


@dataclass
class Cutout:
    """One source image before placing: (H, W) pixels of ``pixel_scale_arcsec``.

    ``beam`` None means the image has no flux scale (``normalised``); else it is in
    Jy/beam of ``beam``. ``cls``: the class it was generated as (``""``: none, the null
    class; None: not recorded).
    """
    image: np.ndarray
    pixel_scale_arcsec: float
    beam: Optional[Beam] = None
    cls: Optional[str] = None


@dataclass
class Stamp:
    """``data`` (Jy/beam of the map beam) on map rows y0.., columns x0.. (may overhang)."""
    y0: int
    x0: int
    data: np.ndarray

    def clipped(self, rows: tuple[int, int], nx: int) -> tuple[tuple[slice, slice],
                                                               np.ndarray]:
        """(map slices, data) of the part inside rows [r0, r1) and columns [0, nx)."""
        h, w = self.data.shape
        y0, y1 = max(self.y0, rows[0]), min(self.y0 + h, rows[1])
        x0, x1 = max(self.x0, 0), min(self.x0 + w, nx)
        if y1 <= y0 or x1 <= x0:
            return (slice(0, 0), slice(0, 0)), self.data[:0, :0]
        part = self.data[y0 - self.y0:y1 - self.y0, x0 - self.x0:x1 - self.x0]
        return (slice(y0, y1), slice(x0, x1)), part


def _box(x: float, y: float, radius_px: float) -> tuple[int, int, int]:
    """(y0, x0, side) of a square box of half-width ``radius_px`` around (x, y)."""
    r = int(math.ceil(radius_px))
    return int(round(y)) - r, int(round(x)) - r, 2 * r + 1


def _gauss_radius(grid: MapGrid, las: float) -> float:
    return _GAUSS_RADIUS_FWHM * math.hypot(grid.beam.bmaj, las) / grid.pixel_scale_arcsec + 1


def gaussian_stamp(grid: MapGrid, x: float, y: float, flux: float, las: float,
                   q: float = 1.0, pa: float = 0.0) -> Stamp:
    """The beam convolved with a Gaussian of FWHMs ``las`` and ``q * las`` (arcsec) whose
    major axis lies at ``pa`` (deg east of local north), integrated flux ``flux`` (Jy),
    centred on pixel (x, y)."""
    scale = grid.pixel_scale_arcsec
    y0, x0, side = _box(x, y, _gauss_radius(grid, las))
    pa_px = _pixel_pa(grid, x, y, q, pa)
    inv = np.linalg.inv(observed_covariance(grid.beam, las, q, pa_px) / scale**2)  # px^-2
    peak = float(peak_from_total(flux, las, grid.beam, q, pa_px))
    yy, xx = np.mgrid[y0:y0 + side, x0:x0 + side].astype(float)
    dx, dy = xx - x, yy - y
    r2 = inv[0, 0] * dx**2 + 2.0 * inv[0, 1] * dx * dy + inv[1, 1] * dy**2
    return Stamp(y0, x0, peak * np.exp(-0.5 * r2))


def _pixel_pa(grid: MapGrid, x: float, y: float, q: float, pa: float) -> float:
    """A sky PA (deg E of N) on the pixel axes at (x, y); a round source needs none."""
    return 0.0 if q == 1.0 else float(pa) + grid.north_deg(x, y)


def place_cutout(grid: MapGrid, cutout: Cutout, ra: float, dec: float, pa: float,
                 flux: Optional[float]) -> Stamp:
    """Resample ``cutout`` onto the map around (ra, dec) rotated to ``pa`` (deg E of N).

    ``flux`` (Jy): scale to this integrated flux; None keeps the cutout's own flux (needs
    a cutout in Jy/beam).
    """
    from reproject import reproject_exact

    if flux is None and cutout.beam is None:
        raise ValueError("a normalised cutout needs the source's flux to be placed")
    image = np.asarray(cutout.image, float)
    size = image.shape[0]
    x, y = grid.to_pixel(ra, dec)
    radius = size * cutout.pixel_scale_arcsec * math.sqrt(0.5) / grid.pixel_scale_arcsec + 2
    y0, x0, side = _box(float(x), float(y), radius)
    w_in = cutout_wcs(ra, dec, cutout.pixel_scale_arcsec, pa, size,
                      grid.wcs.wcs.ctype[0][-3:])
    out, footprint = reproject_exact((image, w_in), grid.sub_wcs(y0, x0),
                                     shape_out=(side, side), parallel=False)
    # reproject returns the mean over the covered part of each output pixel; times the
    # covered fraction, the edge pixels of the cutout keep their flux too.
    data = np.nan_to_num(out * footprint, nan=0.0)
    if cutout.beam is not None:  # Jy/beam_c -> Jy/beam: the same flux per steradian
        data *= grid.beam.area_arcsec2 / cutout.beam.area_arcsec2
    if flux is not None:
        total = data.sum() / grid.beam.area_px(grid.pixel_scale_arcsec)
        if not total > 0:
            raise ValueError("the cutout has no positive flux to scale")
        data *= flux / total
    return Stamp(y0, x0, data)


def source_mask(image: np.ndarray, frac: float = 0.1, link_px: int = 2) -> np.ndarray:
    """Pixels above ``frac`` x peak that belong to the source holding the peak.

    Components closer than ``link_px`` pixels to each other are one source (the lobes
    and core of a double); other sources in the field (FIRST cutouts hold companions) are
    left out, so they cannot stretch the LAS rule.
    """
    from scipy import ndimage

    above = image >= frac * np.max(image)
    linked = ndimage.binary_dilation(above, np.ones((2 * link_px + 1,) * 2, bool))
    lab, _ = ndimage.label(linked, structure=np.ones((3, 3), bool))
    return above & (lab == lab[np.unravel_index(np.argmax(image), image.shape)])


def source_only(image: np.ndarray, rms: float, thresh_isl: float = 3.0,
                thresh_pix: float = 5.0) -> np.ndarray:
    """The emission of a generated Jy/beam cutout without its background noise.

    A model trained on survey cutouts generates their noise too; the map adds its own
    (:mod:`radiodiff.skymap.noise`), so only islands of pixels above ``thresh_isl`` x
    ``rms`` that hold a pixel above ``thresh_pix`` x ``rms`` are kept (PyBDSF's default
    island and peak thresholds) and the rest set to 0. The noise is the larger of ``rms``
    (the training cutouts', release meta ``rms_jy_beam``) and the image's own (the
    half-normal estimate of its clipped noise, :func:`~radiodiff.evaluation.noise.halfnormal_rms`):
    the network's noise around a bright source is not always at the survey's level, and
    thresholds in survey rms would then keep a ring of noise islands.
    """
    from scipy import ndimage

    from radiodiff.evaluation.noise import halfnormal_rms

    own = halfnormal_rms(image[image > 0.01 * rms])  # not the source's far, tiny tails
    rms = max(float(rms), own) if math.isfinite(own) else float(rms)
    lab, n = ndimage.label(image > thresh_isl * rms, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros_like(image)
    peaks = ndimage.maximum(image, lab, index=np.arange(1, n + 1))
    keep = np.concatenate([[False], np.asarray(peaks) > thresh_pix * rms])
    return np.where(keep[lab], image, 0).astype(image.dtype)


def extent_px(image: np.ndarray, frac: float = 0.1) -> float:
    """Largest distance between pixels of the source above ``frac`` x peak, plus one [px]."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(source_mask(image, frac)).astype(float)
    if len(pts) > 3:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:  # collinear pixels: all of them are few
            pass
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max() if len(pts) else 0.
    return float(d) + 1.0


class ModelCutouts:
    """Cutouts generated with a release, one image per source from its own seed.

    :meth:`many` generates a batch of sources in one :func:`~radiodiff.pipeline.generate.generate`
    call (per-image conditions and seeds); with ``batch_invariant`` (default) each image is
    bit-identical to the one generated alone, so a map does not depend on the batch size
    or on how it is cut into tiles.

    Pixel scale: when the release is conditioned on LAS, the one its images of that LAS
    have (:meth:`radiodiff.pipeline.release.Release.pixel_scale`: the release's, or the
    training cutouts' for data cut out around each source's LAS); otherwise the *LAS
    rule*: the cutout is scaled so that the
    generated source above 10 % of its peak spans the source's LAS (at most
    ``_MAX_STRETCH`` x LAS per side), but never finer than the release's own pixel scale
    when it has one: shrinking a cutout would shrink its beam below the survey's, which no
    real source can be. Releases without a peak-flux condition are
    shape-only: their images are normalised and scaled to the catalogue flux.
    """

    def __init__(self, release, spec, batch_invariant: bool = True) -> None:
        self.release, self.spec = release, spec
        self.batch_invariant = bool(batch_invariant)
        meta = release.meta
        self.scalars = set(release.scalar_conditions)
        self.scale = meta.get("pixel_scale_arcsec")
        self.las_rule = "las_arcsec" not in self.scalars or not self.scale
        self.beam = Beam(*sorted(meta["beam_arcsec"], reverse=True)) \
            if meta.get("beam_arcsec") else None

    @property
    def shape_only(self) -> bool:
        return "peak_flux" not in self.scalars

    def max_radius_arcsec(self, las: float) -> float:
        """A bound on the placed cutout's half-diagonal (to pick the sources of a tile)."""
        size = self.release.image_size
        if not self.las_rule:
            return size * self.release.pixel_scale(las) * math.sqrt(0.5)
        side = max(_MAX_STRETCH * las * size / (size - 1), size * (self.scale or 0.0))
        return side * math.sqrt(0.5)

    def many(self, peaks, lases, classes, seeds) -> list[Cutout]:
        """One cutout per source: peak (Jy/beam), LAS (arcsec), class name and image seed
        of each, generated in one batch."""
        from radiodiff.pipeline.generate import generate

        kw = {}
        if "peak_flux" in self.scalars:
            kw["peak_flux"] = [float(p) for p in peaks]
        if "las_arcsec" in self.scalars:
            kw["las_arcsec"] = [float(v) for v in lases]
        labels = [c if c in self.release.classes else None for c in classes]
        res = generate(self.release, len(labels), label=labels, spec=self.spec,
                       seeds=[int(v) for v in seeds], batch_size=len(labels),
                       batch_invariant=self.batch_invariant,
                       islands=False,  # the map adds its own noise (skymap.noise)
                       # a map's catalogue may reach past the training rows: as before
                       # (no skymap option yet to refuse them)
                       allow_extrapolation=True, **kw)
        beam = self.beam if res.unit == "Jy/beam" else None
        rms = self.release.meta.get("rms_jy_beam") if beam is not None else None
        images = [x if rms is None else source_only(x, rms) for x in res.output[:, 0]]
        # Kept float32, as generated (a tile holds all its cutouts until they are placed).
        # the class each was generated as: one the release does not know is drawn from
        # the training rows, or left null ("") without them
        drawn = [str(c) for c in res.conditions.get("class", [""] * len(images))]
        return [Cutout(image, self._scale(image.astype(float), las), beam, c)
                for image, las, c in zip(images, lases, drawn)]

    def __call__(self, peak: float, las: float, cls: str, seed: int) -> Cutout:
        """The cutout of one source (:meth:`many` of one)."""
        return self.many([peak], [las], [cls], [seed])[0]

    def _scale(self, image: np.ndarray, las: float) -> float:
        """Pixel scale (arcsec) of a generated image of a source of LAS ``las``."""
        if self.las_rule:
            return max(las / max(extent_px(image), image.shape[0] / _MAX_STRETCH),
                       float(self.scale or 0.0))
        return float(self.release.pixel_scale(las))


FLUX_FROM = ("auto", "catalogue", "model")


@dataclass
class RenderSettings:
    resolved_min_beams: float = 2.0   # LAS >= this * bmaj -> cutout path
    flux_from: str = "auto"           # auto | catalogue | model (_keeps_own_flux)
    batch_size: int = 16              # model sources per generate() call

    def check(self) -> "RenderSettings":
        if self.flux_from not in FLUX_FROM:
            raise ValueError(f"render.flux_from must be one of {', '.join(FLUX_FROM)}, got "
                             f"{self.flux_from!r}")
        if isinstance(self.batch_size, bool) or not (int(self.batch_size) == self.batch_size
                                                     and self.batch_size >= 1):
            raise ValueError(f"render.batch_size must be an integer >= 1, got "
                             f"{self.batch_size}")
        return self


TRUTH_COLUMNS = ("id", "ra", "dec", "x", "y", "flux_req", "flux_meas", "peak_req",
                 "peak_meas", "las", "q", "cls", "pa", "kind", "seed")


def _is_resolved(cutouts, las: float, grid: MapGrid, s: RenderSettings) -> bool:
    return cutouts is not None and las >= s.resolved_min_beams * grid.beam.bmaj


def _reach_px(grid: MapGrid, cutouts, las: float, s: RenderSettings) -> float:
    if _is_resolved(cutouts, las, grid, s):
        return cutouts.max_radius_arcsec(las) / grid.pixel_scale_arcsec + 3
    return _gauss_radius(grid, las) + 1


def _requested_peak(grid: MapGrid, src: dict) -> float:
    """The catalogue's peak, else the one of the source as a Gaussian."""
    if np.isfinite(src["peak"]):
        return float(src["peak"])
    pa_px = _pixel_pa(grid, src["x"], src["y"], src["q"], src["pa"])
    return float(peak_from_total(src["flux"], src["las"], grid.beam, src["q"], pa_px))


def _gaussian(grid: MapGrid, src: dict) -> Stamp:
    return gaussian_stamp(grid, src["x"], src["y"], src["flux"], src["las"], src["q"],
                          src["pa"])


def _stamp(grid: MapGrid, src: dict, cut: Optional[tuple[Cutout, int]], s: RenderSettings
           ) -> tuple[Stamp, str, float, int]:
    """(stamp, kind, requested peak, image seed) of one source, given its generated
    ``(cutout, image seed)`` (None: not resolved); kind ``gaussian``, ``model``, or
    ``fallback`` (the model's image had no positive flux: a Gaussian)."""
    peak = _requested_peak(grid, src)
    if cut is None:
        return _gaussian(grid, src), "gaussian", peak, -1
    cutout, image_seed = cut
    if not np.sum(cutout.image, dtype=float) > 0:  # an empty image: the Gaussian, say so
        return _gaussian(grid, src), "fallback", peak, image_seed
    stamp = place_cutout(grid, cutout, src["ra"], src["dec"], src["pa"],
                         None if _keeps_own_flux(cutout, src, s) else src["flux"])
    return stamp, "model", peak, image_seed


def _keeps_own_flux(cutout: Cutout, src: dict, s: RenderSettings) -> bool:
    """Whether a generated cutout is placed at its own flux (None: scaled to the source's
    integrated flux). Only a cutout in Jy/beam has one; ``flux_from`` ``model`` keeps it
    always, ``catalogue`` never, ``auto`` where the source has a peak (drawn from the
    release's training rows, or a catalogue peak column), which the model was asked for:
    its flux is then the generated source's, not that of a Gaussian of that peak."""
    if cutout.beam is None or s.flux_from == "catalogue":
        return False
    return s.flux_from == "model" or bool(np.isfinite(src["peak"]))


def _generate(grid: MapGrid, srcs: list[dict], cutouts, seed: int, s: RenderSettings,
              progress: Optional[Callable] = None) -> dict[int, tuple[Cutout, int]]:
    """Source id -> (cutout, image seed) of the resolved sources among ``srcs``, generated
    in id order in batches of ``s.batch_size`` (``progress`` wraps the batches)."""
    todo = [src for src in srcs if _is_resolved(cutouts, src["las"], grid, s)]
    seeds = [sky_image_seed(seed, src["id"]) for src in todo]
    starts = list(range(0, len(todo), s.batch_size))
    out: dict[int, tuple[Cutout, int]] = {}
    for i in (progress(starts, len(starts)) if progress else starts):
        part = todo[i:i + s.batch_size]
        cuts = cutouts.many([_requested_peak(grid, src) for src in part],
                            [src["las"] for src in part], [src["cls"] for src in part],
                            seeds[i:i + s.batch_size])
        out.update((src["id"], (c, k)) for src, c, k in zip(part, cuts, seeds[i:]))
    return out


def _near(grid: MapGrid, sources: Sources, rows: tuple[int, int], cutouts,
          s: RenderSettings) -> list[dict]:
    """The sources whose stamps can reach rows [r0, r1), in id order, as dicts with their
    pixel position ``x``, ``y``."""
    xs, ys = grid.to_pixel(sources.ra, sources.dec)
    order = np.argsort(sources.id, kind="stable")
    reach = np.array([_reach_px(grid, cutouts, sources.las[i], s) for i in order])
    near = order[(ys[order] + reach >= rows[0] - 0.5) & (ys[order] - reach < rows[1] - 0.5)]
    return [dict({k: getattr(sources, k)[i] for k in ("id", "ra", "dec", "flux", "peak",
                                                       "las", "q", "cls", "pa")},
                 x=float(xs[i]), y=float(ys[i])) for i in near]


def render_tile(grid: MapGrid, sources: Sources, rows: tuple[int, int],
                cutouts=None, seed: int = 0, settings: Optional[RenderSettings] = None,
                progress: Optional[Callable[[Iterator, int], Iterator]] = None
                ) -> tuple[np.ndarray, dict[str, list]]:
    """The noise-free model map of rows [r0, r1) and the truth rows of its own sources.

    ``cutouts``: ``cutouts.many(peaks, las, classes, seeds) -> [Cutout]`` with a
    ``max_radius_arcsec(las)`` bound (:class:`ModelCutouts`); None renders Gaussians only.
    Every source whose stamp can reach the tile is rendered: first the model cutouts of
    all of them (id order, batches of ``settings.batch_size``; ``progress`` wraps the
    batches), then each source is placed. The tile owns (and reports in the truth) the
    sources whose centre pixel row is in it. ``sources`` must have PAs
    (:func:`~radiodiff.skymap.sources.fill_position_angles`).
    """
    s = (settings or RenderSettings()).check()
    ny, nx = grid.shape
    tile = np.zeros((rows[1] - rows[0], nx))
    truth: dict[str, list] = {c: [] for c in TRUTH_COLUMNS}
    srcs = _near(grid, sources, rows, cutouts, s)
    cuts = _generate(grid, srcs, cutouts, seed, s, progress)
    for src in srcs:
        stamp, kind, peak, image_seed = _stamp(grid, src, cuts.get(src["id"]), s)
        cut = cuts.get(src["id"])
        if cut is not None and cut[0].cls is not None:  # the class generated, in the truth
            src = dict(src, cls=cut[0].cls)
        where, part = stamp.clipped(rows, nx)
        tile[where[0].start - rows[0]:where[0].stop - rows[0], where[1]] += part
        if rows[0] - 0.5 <= src["y"] < rows[1] - 0.5:
            _, on_map = stamp.clipped((0, ny), nx)
            _truth_row(truth, src, kind, peak, image_seed, on_map,
                       grid.beam.area_px(grid.pixel_scale_arcsec))
    return tile, truth


def _truth_row(truth: dict, src: dict, kind: str, peak: float, image_seed: int,
               on_map: np.ndarray, beam_px: float) -> None:
    values = dict(src, flux_req=src["flux"], flux_meas=float(on_map.sum() / beam_px),
                  peak_req=peak, peak_meas=float(on_map.max(initial=0.0)), kind=kind,
                  seed=image_seed)
    for c in TRUTH_COLUMNS:
        truth[c].append(values[c])
