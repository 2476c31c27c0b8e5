"""Metrics of a generated (or a second real) image set against the real reference set.

Every distance is reported next to its noise floor, the same distance between two
disjoint real subsets of the same size (:func:`radiodiff.evaluation.distances.compare`).
Classifier-based tests use a small CNN trained on the real training split (cached per
data hash and seed), a domain replacement for Inception features. The real set's image
statistics are computed once and cached too (:func:`real_statistics`). A set sampled
with requested conditions gets its conditioning accuracy (the LAS beside the same
measurement on the real images); sets in Jy/beam also the integrated flux, background
noise statistics and the targets table of :mod:`radiodiff.evaluation.physical`.

:func:`evaluate` returns an :class:`EvalResult`;
:func:`radiodiff.evaluation.run.run_evaluation` is the whole of ``radiodiff evaluate``:
sets, metrics, report.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from radiodiff.evaluation import compare, pixel_bin_stats, pixel_stats, segment_stats, shape_stats
from radiodiff.evaluation.faint import FAINT_POWER, background_fractions, faint_view, verdict
from radiodiff.evaluation.physical import (is_physical, nearest_rows, physical_checks,
                                          physical_metrics, set_background)
from radiodiff.evaluation.sets import ImageSet, Progress, pixel_scales
from radiodiff.io.artifacts import read_or_compute
from radiodiff.io.integrity import content_digest
from radiodiff.progress import announce
from radiodiff.seeds import real_vs_fake_pick_rng

__all__ = ["EvalSettings", "EvalResult", "evaluate", "check_beam", "real_statistics",
           "image_statistics", "conditioning_accuracy"]

log = logging.getLogger(__name__)

STATS_VERSION = 1  # bump when image_statistics changes: cached real statistics go stale
#: Inner edges [pixels of the file's median pixel scale] of the requested-LAS bins of the
#: conditioning's ``by_size`` (issue 28: sources under 20 px, 20-40 px, 40-80 px, larger).
LAS_BINS_PX = (20.0, 40.0, 80.0)


@dataclass
class EvalSettings:
    """What to compute; defaults are what ``make eval`` runs."""
    n_repeats: int = 20           # subset pairs per noise floor and matched distance
    seed: int = 0
    classifier_epochs: int = 30   # class classifier on the real training split
    rvf_folds: int = 5            # real-vs-fake k-fold
    rvf_epochs: int = 10
    sourcefinder: bool = True     # PyBDSF on both sets (slowest step)
    sf_max_images: int = 200      # per set
    sf_rms: float = 0.02          # model-space noise level given to PyBDSF
    sf_processes: Optional[int] = None
    cache_dir: str = "outputs/eval_cache"
    faint_power: float = FAINT_POWER  # the faint-pixel view x ** p
    # Shape moments count pixels from this fraction of the peak up: the FIRST images' 8-bit
    # quantum, so a background far below anything the data can hold cannot move them (the
    # faint view and the background fractions measure that background instead).
    shape_floor: float = 1.0 / 255
    morphology: bool = True       # source morphology per class (evaluation.morphology)
    # class classifiers trained on generated images (usefulness; radiodiff evaluate --tstr):
    # draws one image per training row and trains 3 classifiers, so it is asked for
    tstr: bool = False

    def __post_init__(self) -> None:
        """Absurd settings are refused here, before any image is drawn (the option names
        are those of ``radiodiff evaluate`` where it has one)."""
        least = dict(n_repeats=1, classifier_epochs=1, rvf_folds=2, rvf_epochs=1,
                     sf_max_images=1)
        for name, low in least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                    or value < low:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be an integer "
                                 f">= {low}, got {value!r}")
        if self.rvf_folds > 100:
            raise ValueError(f"rvf_folds (--rvf-folds) must be at most 100, got "
                             f"{self.rvf_folds}")
        for name, low_open in (("sf_rms", True), ("faint_power", True), ("shape_floor", False)):
            value = getattr(self, name)  # shape_floor 0: no floor
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
                (0 < value <= 1) if low_open else (0 <= value < 1))
            if not ok:
                span = "(0, 1]" if low_open else "[0, 1)"
                raise ValueError(f"{name} must be a number in {span}, got {value!r}")


@dataclass(kw_only=True)
class EvalResult:
    """All metrics of one evaluation; :meth:`to_dict` is ``metrics.json``.

    Each group is the dict it is in ``metrics.json``; a group that was not computed (no
    source finder, no classes, no requested conditions) is None and left out of it.
    """
    distances: dict            # image statistics: W1, KS, CDF distance vs noise floor
    background: dict           # fractions of exactly-zero and faint pixels
    faint_distances: dict      # the same statistics on the faint view x ** p
    sourcefinder: Optional[dict] = None
    sourcefinder_summary: Optional[dict] = None
    class_fidelity: Optional[dict] = None
    features: Optional[dict] = None        # Fréchet distance, precision, recall
    memorisation: Optional[dict] = None
    conditioning: Optional[dict] = None    # requested vs measured peak flux / LAS
    real_vs_fake: dict
    real_vs_fake_faint: dict
    sets: dict
    settings: dict
    timings_s: dict
    verdict: dict
    physical: Optional[dict] = None        # Jy/beam sets: flux, background noise, checks
    morphology: Optional[dict] = None      # the source's shape per class, KS/W1 vs floor
    usefulness: Optional[dict] = None      # train-synthetic-test-real class classifiers
    stats: dict = field(default_factory=dict, repr=False)  # per-image values, for figures

    def to_dict(self) -> dict[str, Any]:
        """The groups in ``metrics.json`` order (per-image statistics left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "stats" and getattr(self, f.name) is not None}


def conditioning_accuracy(requested: np.ndarray, measured: np.ndarray,
                          tolerance: float = 0.2,
                          size_bins: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """Requested vs measured condition values: relative errors, scatter and rank correlation.

    Parameters
    ----------
    requested, measured : numpy.ndarray
        (N,) values in one unit; rows with a non-finite value or a request <= 0 are
        dropped.
    tolerance : float
        ``fraction_within`` counts the rows with ``|measured - requested| / requested <=
        tolerance``. Default 0.2 (20 %).
    size_bins : sequence of float, optional
        Increasing inner edges ``e_1 < ... < e_K`` of bins of the *requested* value, in its
        unit: ``[0, e_1), [e_1, e_2), ..., [e_K, inf)``. None (default): no ``by_size``.

    Returns
    -------
    dict
        ``n``; with at least 3 rows also the median relative error ``(measured -
        requested) / requested``, the median of its absolute value, ``spearman`` (rank
        correlation of requested and measured, None when either is constant),
        ``fraction_within``, ``tolerance`` and ``iqr_log_ratio``: the interquartile range
        of ``ln(measured / requested)`` over the rows with a measured value > 0, counted
        in ``n_log`` (None when fewer than 3; a scatter about the request in either
        direction, 0 for any constant factor; a blank image, measured 0, is left out of it
        but not of ``n``, so compare ``n_log / n`` with the floor's). With ``size_bins``
        also ``by_size``: per bin, ``lo``, ``hi``
        (None: unbounded), ``n`` and ``median_ratio``, the median of ``measured /
        requested`` (None below 3 rows), so a regression to the mean reads > 1 in the
        small bins and < 1 in the large ones.
    """
    from scipy.stats import spearmanr
    r, m = np.asarray(requested, float), np.asarray(measured, float)
    ok = np.isfinite(r) & np.isfinite(m) & (r > 0)
    if ok.sum() < 3:
        return {"n": int(ok.sum())}
    r, m = r[ok], m[ok]
    rel = (m - r) / r
    constant = np.ptp(r) == 0 or np.ptp(m) == 0  # rank correlation undefined
    lg = np.log(m[m > 0] / r[m > 0])
    out = {"n": int(ok.sum()), "median_relative_error": float(np.median(rel)),
           "median_abs_relative_error": float(np.median(np.abs(rel))),
           "spearman": None if constant else float(spearmanr(r, m).statistic),
           "fraction_within": float(np.mean(np.abs(rel) <= tolerance)),
           "tolerance": float(tolerance), "n_log": int(lg.size),
           "iqr_log_ratio": float(np.subtract(*np.percentile(lg, [75, 25])))
           if lg.size >= 3 else None}
    if size_bins is not None:
        out["by_size"] = _by_size(r, m / r, [float(e) for e in size_bins])
    return out


def _by_size(r: np.ndarray, ratio: np.ndarray, edges: list[float]) -> list[dict[str, Any]]:
    """Rows and median ``ratio`` in each bin of ``r`` split at ``edges`` (see
    :func:`conditioning_accuracy`)."""
    k = np.digitize(r, edges)  # bin k: edges[k - 1] <= r < edges[k]
    out = []
    for i, (lo, hi) in enumerate(zip([0.0] + edges, edges + [None])):
        sel = ratio[k == i]
        out.append({"lo": lo, "hi": hi, "n": int(sel.size),
                    "median_ratio": float(np.median(sel)) if sel.size >= 3 else None})
    return out


def image_statistics(images: np.ndarray, pixel_scale_arcsec: float | None,
                     shape_floor: float = 0.0) -> dict:
    """Per-image pixel, moment and segmentation statistics (1-D arrays).

    The moments (centre, size, orientation, elongation ...) use only pixels at or above
    ``shape_floor`` (fraction of the peak); the pixel statistics use every pixel.
    """
    x = torch.from_numpy(images)
    stats = {k: v.numpy() for k, v in pixel_stats(x).items()}
    peak = x.amax(dim=(-2, -1), keepdim=True)
    guarded = torch.where(x >= shape_floor * peak, x, 0.0) if shape_floor > 0 else x
    stats.update({k: v.numpy() for k, v in shape_stats(guarded).items()})
    seg = segment_stats(images, pixel_scale_arcsec=pixel_scale_arcsec)
    stats.update({f"seg_{k}": v for k, v in seg.items()})
    stats.update(pixel_bin_stats(images))
    return stats


def _pixel_values(images: np.ndarray) -> np.ndarray:
    """The pixels above 0.01 of each image (the sky is mostly exactly 0), one row per image
    (N, H*W), NaN elsewhere: :func:`~radiodiff.evaluation.distances.compare` pools them
    over subsets of *images*, so the floor carries the image-to-image scatter that a
    real-vs-fake distance does."""
    v = images.reshape(len(images), -1).astype(np.float64)
    v[~(v > 0.01)] = np.nan
    return v


def _classifier(train: ImageSet, val: ImageSet, num_classes: int, settings: EvalSettings,
                data_sha: str):
    """The class classifier trained on the real training split (cached, safetensors)."""
    from radiodiff.evaluation.classifier import cached_classifier, train_classifier
    cache = _classifier_cache_path(train, val, num_classes, settings, data_sha)
    return cached_classifier(cache, num_classes, lambda: train_classifier(
        train.images, train.labels, num_classes, epochs=settings.classifier_epochs,
        seed=settings.seed, val=(val.images, val.labels)))


def _classifier_cache_path(train: ImageSet, val: ImageSet, num_classes: int,
                           s: EvalSettings, data_sha: str) -> Path:
    """``classifier-<data hash>-<digest>.safetensors``: the digest covers the training and
    validation images and labels, the settings and the classifier's protocol."""
    from radiodiff.evaluation.classifier import protocol_digest
    digest = content_digest([protocol_digest(), int(num_classes), s.seed, s.classifier_epochs],
                            train.images, np.asarray(train.labels, np.int64), val.images,
                            np.asarray(val.labels, np.int64))
    return Path(s.cache_dir) / f"classifier-{(data_sha or 'none')[:16]}-{digest[:24]}.safetensors"


def _cache_path(real: ImageSet, pix: float | None, s: EvalSettings, data_sha: str) -> Path:
    """``realstats-<data hash>-<split>-<digest>.npz``: the digest covers the images and
    every setting the statistics depend on."""
    digest = content_digest([STATS_VERSION, pix, s.shape_floor, s.faint_power], real.images)
    return Path(s.cache_dir) / (f"realstats-{(data_sha or 'none')[:16]}-{real.split}-"
                                f"{digest[:16]}.npz")


def _read_stats_cache(path: Path) -> tuple[dict, dict]:
    """The statistics in a ``realstats-*.npz``; a file that does not hold them raises."""
    import zipfile
    try:
        with open(path, "rb") as fh:  # closed on every path (np.load leaks it on some)
            f = np.load(fh, allow_pickle=False)
            # keys in their saved order: the order of compare()
            loaded = {k: f[k] for k in f.files} if hasattr(f, "files") else {}
    except zipfile.BadZipFile as exc:
        raise ValueError(str(exc)) from exc
    stats = {k[4:]: v for k, v in loaded.items() if k.startswith("img/")}
    faint = {k[6:]: v for k, v in loaded.items() if k.startswith("faint/")}
    if not (stats and faint):
        raise ValueError("no statistics in it")
    return stats, faint


def _write_stats_cache(tmp: Path, value: tuple[dict, dict]) -> None:
    stats, faint = value
    with open(tmp, "wb") as f:
        np.savez(f, **{f"img/{k}": v for k, v in stats.items()},
                 **{f"faint/{k}": v for k, v in faint.items()})


def real_statistics(real: ImageSet, pix: float | None, settings: EvalSettings,
                    data_sha: str = "") -> tuple[dict, dict, bool]:
    """:func:`image_statistics` of ``real`` and of its faint view, and whether they came
    from the cache.

    A reference split (``real.split`` set) is computed once and cached in
    ``settings.cache_dir`` (NVlabs/edm's ``fid.py ref``; a damaged cache is computed again,
    :func:`radiodiff.io.artifacts.read_or_compute`); any other set is computed.
    """
    def compute() -> tuple[dict, dict]:
        return (image_statistics(real.images, pix, settings.shape_floor),
                image_statistics(faint_view(real.images, settings.faint_power), pix))

    path = None if real.split is None else _cache_path(real, pix, settings, data_sha)
    (stats, faint), cached = read_or_compute(path, "statistics", _read_stats_cache, compute,
                                             _write_stats_cache)
    return stats, faint, cached


def _statistics(real: ImageSet, fake: ImageSet, meta: dict, s: EvalSettings) -> dict:
    """Distances of the image statistics, the background fractions and the faint view."""
    pix = meta.get("pixel_scale_arcsec")
    stats_r, faint_r, _ = real_statistics(real, pix, s, meta.get("data_sha256") or "")
    stats_f = image_statistics(fake.images, pix, s.shape_floor)
    stats_r["pixel_value"] = _pixel_values(real.images)
    stats_f["pixel_value"] = _pixel_values(fake.images)
    faint_f = image_statistics(faint_view(fake.images, s.faint_power), pix)
    return {"distances": compare(stats_r, stats_f, n_repeats=s.n_repeats, seed=s.seed),
            # the faint end: background fractions, every statistic again on the faint view
            "background": {"real": background_fractions(real.images),
                           "fake": background_fractions(fake.images), "faint_max": 0.01},
            "faint_distances": compare(faint_r, faint_f, n_repeats=s.n_repeats, seed=s.seed),
            "stats": {"real": stats_r, "fake": stats_f}}


def _subset(n: int, at_most: int, seed: int) -> np.ndarray:
    """All ``n`` rows, or ``at_most`` of them drawn with ``seed`` (in order): a generated
    set is ordered by class, so its first rows would be of one class."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:at_most])


def _sourcefinder(real: ImageSet, fake: ImageSet, meta: dict, s: EvalSettings,
                  progress: Progress) -> dict:
    """PyBDSF on both sets: distances of the source statistics and their means.

    The noise given to PyBDSF is ``s.sf_rms`` (model units) or, for a physical set, each
    image's own background rms over its peak (:func:`set_background`; the survey's
    ``rms_jy_beam`` where an image has no background to measure), with each image's pixel
    scale (:func:`pixel_scales`: down-sampled cutouts have coarser pixels). A set of more
    than ``s.sf_max_images`` images gives a seeded random subset of that many. Images PyBDSF
    refuses are left out and counted (``failed``).
    """
    from radiodiff.evaluation.sourcefind import find_sources_batch, source_stats
    sf, failed = {}, {}
    physical = is_physical(meta, real, fake) and meta.get("rms_jy_beam")
    for k, (name, data) in enumerate((("real", real), ("fake", fake))):
        rows = _subset(len(data.images), s.sf_max_images, s.seed + k)
        images = data.images[rows, 0]
        pix, rms = meta.get("pixel_scale_arcsec"), s.sf_rms
        if physical:
            pix = pixel_scales(data, meta)[rows]
            peak = np.asarray(data.conditions["peak_flux"], float)[rows]
            bg = set_background(data, meta).rms[rows]
            rms = np.where(np.isfinite(bg) & (bg > 0), bg, float(meta["rms_jy_beam"])) / peak
        res = find_sources_batch(images, pix, meta["beam_arcsec"], rms=rms,
                                 processes=s.sf_processes, progress=progress,
                                 skip_failures=True)
        errors = [r for r in res if isinstance(r, str)]
        failed[name] = {"n": len(errors), "of": len(res), "first": errors[:1]}
        if len(errors) == len(res):
            raise RuntimeError(f"PyBDSF failed on every {name} image ({errors[0]})")
        sf[name] = source_stats([r for r in res if not isinstance(r, str)])
    return {"sourcefinder": compare(sf["real"], sf["fake"], n_repeats=s.n_repeats,
                                    seed=s.seed),
            "sourcefinder_summary": {
                **{k: {"real_mean": float(np.mean(sf["real"][k])),
                       "fake_mean": float(np.mean(sf["fake"][k]))} for k in sf["real"]},
                "failed": failed,
                "rms": "background rms / peak, per image" if physical else s.sf_rms},
            "per_image": sf}


def _classifier_tests(real: ImageSet, fake: ImageSet, train: ImageSet, classes: list[str],
                      s: EvalSettings, data_sha: str) -> dict:
    """Class fidelity, Fréchet distance / precision / recall of classifier features and
    memorisation, with the class classifier of the real training split (one per seed,
    whatever the compared splits: :func:`_selection`), fitted and scored on labelled rows
    only (label -1: a row without a class). Not measured when a compared set is the
    training split: the classifier (and memorisation) would score its own images."""
    from radiodiff.evaluation.classifier import embed
    from radiodiff.evaluation.memorisation import memorisation
    if train.split is not None and train.split in (real.split, fake.split):
        skipped = {"skipped": "a compared set is the training split"}
        return {"class_fidelity": dict(skipped), "features": dict(skipped),
                "memorisation": dict(skipped)}
    mem = memorisation(train.images, fake.images, real.images)
    l_train, l_real = _labelled(train), _labelled(real)
    if l_train is None or len(l_train.images) < 2:
        why = {"skipped": f"{train.name} has fewer than 2 labelled images"}
        return {"class_fidelity": why, "features": dict(why), "memorisation": mem}
    fit, select, selected_on = _selection(l_train, s.seed)
    model, cached = _classifier(fit, select, len(classes), s, data_sha)
    return {"class_fidelity": _fidelity(model, l_real, fake, len(classes), cached,
                                        selected_on, real.name),
            "features": _features(embed(model, real.images), embed(model, fake.images), s.seed),
            "memorisation": mem}


def _fidelity(model, l_real: Optional[ImageSet], fake: ImageSet, k: int, cached: bool,
              selected_on: str, real_name: str) -> dict:
    """The class classifier's accuracy and confusion on the labelled real and generated
    images, and their ratio."""
    from radiodiff.evaluation.classifier import accuracy_and_confusion
    if l_real is None:
        return {"skipped": f"{real_name} has no labelled image"}
    acc_r, conf_r = accuracy_and_confusion(model, l_real.images, l_real.labels, k)
    fid = {"real_accuracy": acc_r, "real_confusion": conf_r, "classifier_cached": cached,
           "selected_on": selected_on}
    labelled = fake.labels >= 0
    if labelled.any():
        acc_f, conf_f = accuracy_and_confusion(model, fake.images[labelled],
                                               fake.labels[labelled], k)
        fid.update(fake_accuracy=acc_f, fake_confusion=conf_f,
                   fidelity_ratio=acc_f / acc_r if acc_r else None)
    return fid


def _features(fr: np.ndarray, ff: np.ndarray, seed: int) -> dict:
    """Fréchet distance of classifier features (real, fake) beside its real-vs-real floor
    at equal size, and precision / recall."""
    from radiodiff.evaluation.feature_distances import frechet_distance, precision_recall
    half = len(fr) // 2
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(fr))
    n = min(half, len(ff))
    return {"frechet": frechet_distance(fr[perm[:n]], ff[rng.permutation(len(ff))[:n]]),
            "frechet_floor": frechet_distance(fr[perm[:n]], fr[perm[half:half + n]]),
            "n": int(n), **precision_recall(fr, ff)}


def _labelled(images: ImageSet) -> Optional[ImageSet]:
    """``images`` without its rows of label -1 (itself when every row has a class; None
    when none has)."""
    keep = np.asarray(images.labels) >= 0
    if keep.all():
        return images
    if not keep.any():
        return None
    conditions = None if images.conditions is None else {
        k: np.asarray(v)[keep] for k, v in images.conditions.items()}
    return ImageSet(images.images[keep], np.asarray(images.labels)[keep],
                    f"{images.name} (labelled)", conditions=conditions, split=images.split)


def _selection(train: ImageSet, seed: int) -> tuple[ImageSet, ImageSet, str]:
    """(fit, select, what select is) for the class classifier: fitted on the training split
    less a seeded seventh (at least one image), selected on that seventh. The same network
    for every comparison at one seed, so a model's numbers and the real-vs-real floor's
    come from one classifier, and never one selected on a split it scores."""
    if len(train.images) < 2:
        raise ValueError(f"{train.name}: {len(train.images)} training image(s); the class "
                         "classifier needs at least 2 (one to fit, one to select on)")
    perm = np.random.default_rng(seed).permutation(len(train.images))
    k = max(1, len(perm) // 7)
    hold, rest = np.sort(perm[:k]), np.sort(perm[k:])

    def part(rows: np.ndarray, name: str) -> ImageSet:
        return ImageSet(train.images[rows], train.labels[rows], name, split=train.split)
    return part(rest, f"{train.name} (6/7)"), part(hold, f"{train.name} (1/7)"), \
        f"a seeded seventh of {train.split or train.name}"


def check_beam(meta: dict, where: Any) -> None:
    """One line unless ``meta`` records a restoring beam (two positive finite numbers):
    morphology links within a beam and PyBDSF needs one."""
    beam = np.asarray(meta.get("beam_arcsec") or [], float)
    if beam.shape != (2,) or not (np.isfinite(beam).all() and (beam > 0).all()):
        raise ValueError(f"{where}: no clean row records its restoring beam (fields without "
                         "BMAJ/BMIN): set data.beam_arcsec=[bmaj,bmin] and prepare it again")


def _beam_px(s: ImageSet, meta: dict) -> np.ndarray:
    """(N,) beam FWHM in each image's pixels (the mean of the beam's axes)."""
    beam = np.asarray(meta["beam_arcsec"], float).mean()
    return beam / pixel_scales(s, meta)


def _morphology(real: ImageSet, fake: ImageSet, meta: dict, classes: list[str],
                s: EvalSettings, stats: dict) -> dict:
    """Source morphology (:mod:`~radiodiff.evaluation.morphology`) per class, each KS/W1
    beside its real-vs-real floor at equal sample size; the per-image values go to
    ``stats`` (figures)."""
    from radiodiff.evaluation.morphology import (LINK_RULE, compare_by_class, ks_ratios,
                                                 morphology_stats)
    m_r = morphology_stats(real.images, _beam_px(real, meta))
    m_f = morphology_stats(fake.images, _beam_px(fake, meta))
    stats["real"].update({f"morph_{k}": v for k, v in m_r.items()})
    stats["fake"].update({f"morph_{k}": v for k, v in m_f.items()})
    labelled = classes if (fake.labels >= 0).any() else None
    comp = compare_by_class(m_r, real.labels, m_f, fake.labels, labelled,
                            n_repeats=s.n_repeats, seed=s.seed)
    ratios = ks_ratios(comp)
    scored = {k: v for k, v in ratios.items() if not math.isnan(v)}  # inf: floor 0, missed
    return {"by_class": comp, "ks_ratio": ratios,
            "worst": sorted(scored, key=scored.get, reverse=True)[:5],
            "within_1.5": int(sum(v <= 1.5 for v in scored.values())), "n": len(scored),
            "failed_zero_floor": sorted(k for k, v in ratios.items() if v == math.inf),
            "linking": LINK_RULE}


def _measured_las(s: ImageSet, seg_las: np.ndarray, meta: dict) -> np.ndarray:
    """(N,) LAS [arcsec] measured on the images of ``s``: the segmentation's Feret
    diameter (``seg_las``, arcsec at the file's median pixel scale) in each image's own
    pixel scale (the cutout rule on its LAS, :func:`~radiodiff.evaluation.sets.pixel_scales`)."""
    return seg_las / (meta.get("pixel_scale_arcsec") or 1.0) * pixel_scales(s, meta)


def _conditioning(real: ImageSet, fake: ImageSet, stats: dict, meta: dict,
                  train: Optional[ImageSet] = None) -> Optional[dict]:
    """Requested vs measured LAS and peak flux of a set sampled with those conditions.

    The LAS entry holds under ``real`` its floor: the LAS measured the same way on the
    real images against their catalogue LAS (the measurement's own error). Both have
    ``by_size``: bins of the requested (catalogue) LAS split at :data:`LAS_BINS_PX` pixels
    of the file's median pixel scale (``meta["pixel_scale_arcsec"]``; on MiraBest 1.8", the
    FIRST pixel and every image's own below a LAS of 96"), in arcsec. The
    measurement (Feret diameter above 10 % of the peak, beam included) is not the
    catalogue's LAS, so ``paired`` compares like with like: each generated image's measured
    LAS against the measured LAS of the real row with the nearest conditions (the row it was
    sampled for, when drawn with the test rows' conditions), with ``paired["real"]``, its
    floor, each real row against the nearest-condition *training* row, measured alike.
    """
    requested, out = fake.conditions or {}, {}
    if "las_arcsec" in requested:
        bins = np.multiply(LAS_BINS_PX, meta.get("pixel_scale_arcsec") or 1.0)  # arcsec
        measured_fake = _measured_las(fake, stats["fake"]["seg_las"], meta)
        las = conditioning_accuracy(requested["las_arcsec"], measured_fake, size_bins=bins)
        if "las_arcsec" in (real.conditions or {}):
            measured_real = _measured_las(real, stats["real"]["seg_las"], meta)
            las["real"] = conditioning_accuracy(real.conditions["las_arcsec"], measured_real,
                                                size_bins=bins)
            las["paired"] = _paired_las(real, fake, train, measured_real, measured_fake, meta)
        out["las_arcsec"] = las
    if "peak_flux" in requested:
        # per-image scaling restores the requested peak by construction: what is measured is
        # whether the model-space peak is 1, i.e. the physical peak equals the request
        req = np.asarray(requested["peak_flux"], float)
        measured = fake.images.reshape(len(fake.images), -1).max(1) * req
        out["peak_flux"] = conditioning_accuracy(req, measured)
    return out or None


def _paired_las(real: ImageSet, fake: ImageSet, train: Optional[ImageSet],
                measured_real: np.ndarray, measured_fake: np.ndarray,
                meta: dict) -> Optional[dict]:
    """Measured LAS of each generated image vs that of its nearest-condition real row."""
    rows, _ = nearest_rows(fake.conditions, real.conditions)
    ok = rows >= 0
    entry = conditioning_accuracy(measured_real[rows[ok]], measured_fake[ok])
    if train is not None and "las_arcsec" in (train.conditions or {}):
        seg = segment_stats(train.images, pixel_scale_arcsec=meta.get("pixel_scale_arcsec"))
        measured_train = _measured_las(train, seg["las"], meta)
        t_rows, _ = nearest_rows(real.conditions, train.conditions)
        t_ok = t_rows >= 0
        entry["real"] = conditioning_accuracy(measured_train[t_rows[t_ok]],
                                              measured_real[t_ok])
    return entry


def _real_vs_fake(real: ImageSet, fake: ImageSet, s: EvalSettings) -> dict:
    """The real-vs-fake classifier on equal-size seeded picks, linear and faint view."""
    from radiodiff.evaluation.two_sample import real_vs_fake
    n = min(len(real.images), len(fake.images))
    rng = real_vs_fake_pick_rng(s.seed)
    pick_r = rng.permutation(len(real.images))[:n]
    pick_f = rng.permutation(len(fake.images))[:n]
    r, f = real.images[pick_r], fake.images[pick_f]
    kw = dict(k=s.rvf_folds, epochs=s.rvf_epochs, seed=s.seed)
    return {"real_vs_fake": real_vs_fake(r, f, **kw),
            "real_vs_fake_faint": real_vs_fake(faint_view(r, s.faint_power),
                                               faint_view(f, s.faint_power), **kw)}


def evaluate(real: ImageSet, fake: ImageSet, train: ImageSet, meta: dict,
             settings: EvalSettings = EvalSettings(), progress: Progress = None,
             synthetic_train: Optional[ImageSet] = None) -> EvalResult:
    """All metrics of ``fake`` against ``real`` (see the module docstring).

    ``train`` is the real training split (the class classifier is fitted and selected on
    it, :func:`_selection`; the memorisation check); ``meta`` holds ``classes``,
    ``pixel_scale_arcsec``, ``beam_arcsec`` and ``data_sha256`` of the reference file, and
    ``image_unit``, ``scaling``, ``negatives`` and ``cutout`` when it has them (the
    ``physical`` group needs Jy/beam images,
    :func:`~radiodiff.evaluation.physical.is_physical`). ``progress`` wraps the source
    finder's loop over images. ``synthetic_train`` (generated images with the
    training rows' classes and conditions) adds the train-synthetic-test-real group.
    """
    if real.images.shape[1:] != fake.images.shape[1:]:
        raise ValueError(f"image shapes differ: {real.name} {real.images.shape[1:]} vs "
                         f"{fake.name} {fake.images.shape[1:]}")
    check_beam(meta, "the reference")
    s, timings = settings, {}
    t = time.perf_counter()
    announce("evaluation: image statistics (plain and faint view)")
    groups = _statistics(real, fake, meta, s)
    stats = groups.pop("stats")
    timings["statistics"] = time.perf_counter() - t
    if s.sourcefinder:
        t = time.perf_counter()
        groups.update(_sourcefinder(real, fake, meta, s, progress))
        timings["sourcefinder"] = time.perf_counter() - t
        for name, values in groups.pop("per_image").items():
            stats[name].update({f"sf_{k}": v for k, v in values.items()})
    classes = list(meta.get("classes") or [])
    t = time.perf_counter()
    if classes:
        announce(f"evaluation: class classifier (trained once for {s.classifier_epochs} "
                 "epochs, then cached), fidelity, Fréchet, memorisation")
        groups.update(_classifier_tests(real, fake, train, classes, s,
                                        meta.get("data_sha256") or ""))
    timings["classifier"] = time.perf_counter() - t
    groups["conditioning"] = _conditioning(real, fake, stats, meta, train)
    if s.morphology:
        t = time.perf_counter()
        announce("evaluation: source morphology per class")
        groups["morphology"] = _morphology(real, fake, meta, classes, s, stats)
        timings["morphology"] = time.perf_counter() - t
    l_real, l_train = _labelled(real), _labelled(train)  # label -1: a row without a class
    if synthetic_train is not None and classes and None not in (l_real, l_train):
        from radiodiff.evaluation.usefulness import tstr
        t = time.perf_counter()
        announce(f"evaluation: class classifiers trained on real, generated and both "
                 f"({s.classifier_epochs} epochs each), tested on real")
        groups["usefulness"] = tstr((l_train.images, l_train.labels),
                                    (synthetic_train.images, synthetic_train.labels),
                                    (l_real.images, l_real.labels), classes,
                                    epochs=s.classifier_epochs, seed=s.seed,
                                    cache_dir=s.cache_dir)
        timings["usefulness"] = time.perf_counter() - t
    if is_physical(meta, real, fake):
        t = time.perf_counter()
        announce("evaluation: physical units (integrated flux, background noise)")
        groups["physical"] = physical_metrics(real, fake, train, meta, s.n_repeats, s.seed)
        timings["physical"] = time.perf_counter() - t
    t = time.perf_counter()
    announce(f"evaluation: real-vs-fake, {s.rvf_folds} folds x 2 views")
    groups.update(_real_vs_fake(real, fake, s))
    timings["real_vs_fake"] = time.perf_counter() - t
    if "physical" in groups:
        groups["physical"].update(physical_checks(groups))
    groups["sets"] = {"real": {"name": real.name, "n": len(real.images)},
                      "fake": {"name": fake.name, "n": len(fake.images)}}
    groups["settings"] = _recorded_settings(s)
    groups["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    return EvalResult(**groups, verdict=verdict(groups), stats=stats)


def _recorded_settings(s: EvalSettings) -> dict[str, Any]:
    """The settings as ``metrics.json`` records them: an absolute cache folder becomes
    ``<local path>`` (an artifact names no folder of the machine that made it)."""
    from radiodiff.io.release_files import LOCAL_PATH, is_local_path
    return {k: LOCAL_PATH if is_local_path(v) else v for k, v in asdict(s).items()}
