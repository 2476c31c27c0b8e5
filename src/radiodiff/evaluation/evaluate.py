"""Evaluation: generated (or a second real) image set against the real reference set.

Every distance is reported next to its noise floor, the same distance between two
disjoint real subsets of the same size (:func:`radiodiff.evaluation.distances.compare`).
Classifier-based tests use a small CNN trained on the real training split (cached per
data hash and seed), a domain replacement for Inception features.

``evaluate(...)`` returns the metrics dict; :func:`write_report` writes ``metrics.json``,
figures and ``report.md`` / ``report.html``.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from radiodiff.io.artifacts import (atomic_text, atomic_write, new_figure, save_figure,
                                    save_image_grid, to_plain)
from radiodiff.data.prepared import read_prepared
from radiodiff.evaluation import compare, pixel_bin_stats, pixel_stats, segment_stats, shape_stats
from radiodiff.evaluation.faint import FAINT_POWER, background_fractions, faint_view, verdict

__all__ = ["EvalSettings", "ImageSet", "reference_set", "reference_splits", "proportional_rows",
           "proportional_labels", "samples_set", "sample_classes", "generated_set",
           "conditioning_accuracy", "evaluate", "write_report"]

Progress = Optional[Callable[[Iterable, int], Iterable]]


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


@dataclass
class ImageSet:
    """Images (N, 1, H, W) in model space [0, 1], class labels (-1 = none), a name."""
    images: np.ndarray
    labels: np.ndarray
    name: str
    conditions: Optional[dict] = None  # requested scalars (generated sets)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 1:
            raise ValueError(f"{self.name}: images must be (N, 1, H, W), got "
                             f"{self.images.shape}")
        if len(self.images) == 0:
            raise ValueError(f"{self.name}: no images")
        if not np.isfinite(self.images).all():
            raise ValueError(f"{self.name}: images contain NaN or inf")


def reference_set(path: str | Path, split: str) -> tuple[ImageSet, Any]:
    """Clean rows of ``split`` of a prepared file, and the file's metadata."""
    ps = read_prepared(path)
    rows = (ps.columns["split"] == split) & (ps.columns["flags"] == 0)
    if not rows.any():
        raise ValueError(f"{path}: no clean rows in split {split!r} "
                         f"(splits: {sorted(set(ps.columns['split']))})")
    conditions = {k: ps.columns[k][rows] for k in ("peak_flux", "las_arcsec")}
    return ImageSet(ps.images[rows], ps.columns["label"][rows].astype(np.int64),
                    f"real {split}", conditions), ps


def reference_splits(path: str | Path, split: str = "test"
                     ) -> tuple[ImageSet, ImageSet, ImageSet, Any]:
    """``(real, train, val, ps)``: the reference ``split``, the train and valid splits (the
    classifiers' data) and the file's metadata, each split as :func:`reference_set`."""
    real, ps = reference_set(path, split)
    train, _ = reference_set(path, "train")
    val, _ = reference_set(path, "valid")
    return real, train, val, ps


def proportional_rows(labels: np.ndarray, n: int) -> np.ndarray:
    """Rows of ``n`` picks from ``labels`` in their class proportions, in class order.

    Pick ``i`` is row ``(i * N) // n`` (N = ``len(labels)``) of the rows sorted by label
    (stable sort): evenly spaced, so each class gets its share of ``n`` (rounded), and the
    rows' other columns (e.g. the requested peak flux) can be taken along.
    """
    labels = np.asarray(labels)
    return np.argsort(labels, kind="stable")[(np.arange(n) * len(labels)) // n]


def proportional_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """``n`` labels in the class proportions of ``labels``, sorted by class: the labels of
    :func:`proportional_rows`."""
    labels = np.asarray(labels)
    return labels[proportional_rows(labels, n)]


def reference_meta(ps) -> dict[str, Any]:
    """What :func:`evaluate` needs to know of a prepared file (``h5io.PreparedSet``):
    classes, data hash, cutout rule, median pixel scale and beam."""
    cutout = {}
    if ps.attrs.get("config_yaml"):
        from omegaconf import OmegaConf
        cutout = OmegaConf.to_container(OmegaConf.create(ps.attrs["config_yaml"])).get(
            "data", {}).get("cutout", {}) or {}
    return {"classes": ps.classes, "data_sha256": ps.attrs.get("data_sha256"),
            "cutout": cutout, **ps.geometry()}


def samples_set(path: str | Path) -> ImageSet:
    """Images written by ``radiodiff sample`` (``samples.h5`` or the folder holding it)."""
    import h5py
    path = Path(path)
    path = path / "samples.h5" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no samples.h5 (write one with `radiodiff sample`)")
    with h5py.File(path, "r") as f:
        return ImageSet(f["images"][()].astype(np.float32), f["label"][()].astype(np.int64),
                        f"generated ({path.parent.name})")


def sample_classes(release, counts: Iterable[tuple[int, int]], seed: int = 0,
                   **generate_kw: Any) -> Iterator[tuple[int, Any]]:
    """Images class by class from a release, every image its own seed.

    For each ``(label, count)`` in ``counts`` (``label`` a class index of ``release.classes``,
    -1: no class condition) draws ``count`` images with
    :func:`radiodiff.diffusion.generate.generate`; the seeds run on across the classes: the
    group's image k has seed ``seed`` + the counts of the groups before it + k. Groups of
    count 0 are skipped. ``generate_kw`` (sampler, steps, guidance, batch_size, progress,
    sigma_max, ...) goes to ``generate``.

    Yields
    ------
    (int, GenerateResult)
        The label and its images, as each group is done.
    """
    from radiodiff.diffusion.generate import generate

    offset = seed
    for label, count in counts:
        if count == 0:
            continue
        yield label, generate(release, count,
                              label=release.classes[label] if label >= 0 else None,
                              seed=offset, **generate_kw)
        offset += count


def generated_set(model: str | Path, labels: np.ndarray, out_dir: Path, sampler: str,
                  steps: int, guidance: float, seed: int, batch_size: int,
                  progress: Progress = None, conditions: dict | None = None,
                  sampler_kw: dict | None = None) -> ImageSet:
    """Sample one image per requested label from a release folder or a training checkpoint.

    Class labels follow the reference set's labels (same class proportions); a model
    without class conditioning samples unconditionally. A model conditioned on peak flux
    or LAS gets, image by image, the values in ``conditions`` (the reference rows'), so
    the requested and measured values can be compared. ``sampler_kw`` (e.g. ``sigma_max``,
    ``S_churn``) goes to :func:`radiodiff.diffusion.generate.generate`.
    """
    from radiodiff.io.release import load_release, resolve_model
    from radiodiff.training.export import export_checkpoint

    model = resolve_model(model)
    if model.is_file():  # a training checkpoint: export its EMA weights first
        model = export_checkpoint(model, out_dir / "release")
    release = load_release(model)
    scalars = [k for k in release.scalar_conditions if conditions and k in conditions]
    if scalars:
        return _generated_per_row(release, model, labels, conditions, scalars, sampler, steps,
                                  guidance, seed, progress, sampler_kw or {})
    images, out_labels = [], []
    groups = ([(int(c), int((labels == c).sum())) for c in np.unique(labels) if c >= 0]
              if release.classes else [(-1, len(labels))])
    for label, res in sample_classes(release, groups, seed, sampler=sampler, steps=steps,
                                     guidance=guidance, batch_size=batch_size,
                                     progress=progress, **(sampler_kw or {})):
        images.append(res.images)
        out_labels.append(np.full(len(res.images), label))
    return ImageSet(np.concatenate(images), np.concatenate(out_labels),
                    f"generated ({model.name}, {sampler} {steps})")


def _generated_per_row(release, model: Path, labels, conditions, scalars, sampler, steps,
                       guidance, seed, progress, sampler_kw) -> ImageSet:
    from radiodiff.diffusion.generate import generate
    rows = range(len(labels))
    images, requested = [], {k: np.asarray(conditions[k], float) for k in scalars}
    for i in (progress(rows, len(rows)) if progress else rows):
        kw = {k: float(requested[k][i]) for k in scalars if np.isfinite(requested[k][i])}
        label = int(labels[i])
        res = generate(release, 1, label=release.classes[label] if release.classes and
                       label >= 0 else None, sampler=sampler, steps=steps, guidance=guidance,
                       seed=seed + i, **kw, **sampler_kw)
        images.append(res.images)
    return ImageSet(np.concatenate(images), np.asarray(labels, np.int64),
                    f"generated ({model.name}, {sampler} {steps})", requested)


def conditioning_accuracy(requested: np.ndarray, measured: np.ndarray) -> dict[str, Any]:
    """Requested vs measured condition values: relative errors and rank correlation."""
    from scipy.stats import spearmanr
    r, m = np.asarray(requested, float), np.asarray(measured, float)
    ok = np.isfinite(r) & np.isfinite(m) & (r > 0)
    if ok.sum() < 3:
        return {"n": int(ok.sum())}
    rel = (m[ok] - r[ok]) / r[ok]
    constant = np.ptp(r[ok]) == 0 or np.ptp(m[ok]) == 0  # rank correlation undefined
    return {"n": int(ok.sum()), "median_relative_error": float(np.median(rel)),
            "median_abs_relative_error": float(np.median(np.abs(rel))),
            "spearman": None if constant else float(spearmanr(r[ok], m[ok]).statistic)}


# ----------------------------------------------------------------------------- metrics

def w1_ratios(distances: dict) -> dict[str, float]:
    """Wasserstein-1 / noise-floor ratio per statistic of a :func:`compare` result.

    A statistic the generated set lacks (no finite value) counts as ``inf``, so a failure
    is never hidden. One whose real-vs-real floor is zero (constant in the real data, e.g.
    the peak of per-image-scaled images, always 1) has no ratio and is left out; its
    distance is still in the report.
    """
    out = {}
    for key, e in distances.items():
        w = e["wasserstein1"]
        if w["ratio"] is not None:
            out[key] = float(w["ratio"])
        elif e["n_real"] >= 2 and e["n_fake"] == 0:
            out[key] = math.inf
    return out


def w1_summary(ratios: dict[str, float], limit: float = 3.0) -> dict[str, Any]:
    """Median, worst-first order and count within ``limit`` of :func:`w1_ratios` output."""
    values = list(ratios.values())
    return {"median": float(np.median(values)), "max": float(np.max(values)),
            "worst": sorted(ratios, key=ratios.get, reverse=True),
            "within": int(sum(r <= limit for r in values)), "n": len(values)}


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


def _pixel_values(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded subsample of the pixels above 0.01 (the sky is mostly exactly 0)."""
    v = images.reshape(-1)
    v = v[v > 0.01]
    if len(v) > n:
        v = np.random.default_rng(seed).choice(v, n, replace=False)
    return v


def _classifier(train: ImageSet, val: ImageSet, num_classes: int, settings: EvalSettings,
                data_sha: str):
    """The class classifier trained on the real training split (cached, safetensors)."""
    from safetensors.torch import load_file, save_file

    from radiodiff.evaluation.classifier import SmallCNN, train_classifier
    cache = Path(settings.cache_dir) / f"classifier-{data_sha[:16]}-s{settings.seed}-" \
                                       f"e{settings.classifier_epochs}.safetensors"
    model = SmallCNN(num_classes)
    if cache.is_file():
        model.load_state_dict(load_file(str(cache)))
        return model.eval(), True
    model = train_classifier(train.images, train.labels, num_classes,
                             epochs=settings.classifier_epochs, seed=settings.seed,
                             val=(val.images, val.labels))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(cache, lambda tmp: save_file(state, str(tmp)))
    return model.eval(), False


def evaluate(real: ImageSet, fake: ImageSet, train: ImageSet, val: ImageSet,
             meta: dict, settings: EvalSettings = EvalSettings(),
             progress: Progress = None) -> dict[str, Any]:
    """All metrics of ``fake`` against ``real`` (see the module docstring).

    ``train`` / ``val`` are the real training and validation splits (classifier training and
    the memorisation check); ``meta`` holds ``classes``, ``pixel_scale_arcsec``,
    ``beam_arcsec`` and ``data_sha256`` of the reference file.
    """
    from radiodiff.evaluation.classifier import (accuracy_and_confusion, embed, frechet_distance,
                                              memorisation, precision_recall, real_vs_fake)
    if real.images.shape[1:] != fake.images.shape[1:]:
        raise ValueError(f"image shapes differ: {real.name} {real.images.shape[1:]} vs "
                         f"{fake.name} {fake.images.shape[1:]}")
    s, timings, out = settings, {}, {}
    t0 = time.perf_counter()
    pix = meta.get("pixel_scale_arcsec")
    stats_r = image_statistics(real.images, pix, s.shape_floor)
    stats_f = image_statistics(fake.images, pix, s.shape_floor)
    stats_r["pixel_value"] = _pixel_values(real.images, 20000, s.seed)
    stats_f["pixel_value"] = _pixel_values(fake.images, 20000, s.seed)
    out["distances"] = compare(stats_r, stats_f, n_repeats=s.n_repeats, seed=s.seed)
    # the faint end: background fractions, and every statistic again on the stretched view
    out["background"] = {"real": background_fractions(real.images),
                         "fake": background_fractions(fake.images), "faint_max": 0.01}
    view_r, view_f = faint_view(real.images, s.faint_power), faint_view(fake.images,
                                                                         s.faint_power)
    out["faint_distances"] = compare(image_statistics(view_r, pix),
                                     image_statistics(view_f, pix),
                                     n_repeats=s.n_repeats, seed=s.seed)
    timings["statistics"] = time.perf_counter() - t0

    if s.sourcefinder:
        t = time.perf_counter()
        from radiodiff.evaluation.sourcefind import find_sources_batch, source_stats
        sf = {}
        for name, images in (("real", real.images), ("fake", fake.images)):
            res = find_sources_batch(images[: s.sf_max_images, 0], pix, meta["beam_arcsec"],
                                     rms=s.sf_rms, processes=s.sf_processes,
                                     progress=progress)
            sf[name] = source_stats(res)
        out["sourcefinder"] = compare(sf["real"], sf["fake"], n_repeats=s.n_repeats,
                                      seed=s.seed)
        out["sourcefinder_summary"] = {
            k: {"real_mean": float(np.mean(sf["real"][k])),
                "fake_mean": float(np.mean(sf["fake"][k]))} for k in sf["real"]}
        timings["sourcefinder"] = time.perf_counter() - t
        stats_r.update({f"sf_{k}": v for k, v in sf["real"].items()})
        stats_f.update({f"sf_{k}": v for k, v in sf["fake"].items()})

    classes = list(meta.get("classes") or [])
    t = time.perf_counter()
    if classes:
        model, cached = _classifier(train, val, len(classes), s, meta.get("data_sha256") or "")
        acc_r, conf_r = accuracy_and_confusion(model, real.images, real.labels, len(classes))
        labelled = fake.labels >= 0
        fid = {"real_accuracy": acc_r, "real_confusion": conf_r, "classifier_cached": cached}
        if labelled.any():
            acc_f, conf_f = accuracy_and_confusion(model, fake.images[labelled],
                                                   fake.labels[labelled], len(classes))
            fid.update(fake_accuracy=acc_f, fake_confusion=conf_f,
                       fidelity_ratio=acc_f / acc_r if acc_r else None)
        out["class_fidelity"] = fid
        fr, ff = embed(model, real.images), embed(model, fake.images)
        half = len(fr) // 2
        rng = np.random.default_rng(s.seed)
        perm = rng.permutation(len(fr))
        n = min(half, len(ff))
        out["features"] = {
            "frechet": frechet_distance(fr[perm[:n]], ff[rng.permutation(len(ff))[:n]]),
            "frechet_floor": frechet_distance(fr[perm[:n]], fr[perm[half:half + n]]),
            "n": int(n), **precision_recall(fr, ff)}
        out["memorisation"] = memorisation(train.images, fake.images, real.images)
    timings["classifier"] = time.perf_counter() - t

    if fake.conditions and "las_arcsec" in fake.conditions:
        # generated images follow the cutout rule: side = max(k * LAS, min_size)
        req = np.asarray(fake.conditions["las_arcsec"], float)
        cut = meta.get("cutout") or {}
        side = np.maximum(cut.get("k_las", 1.5) * req, cut.get("min_size_arcsec", 60.0))
        measured = stats_f["seg_las"] / (pix or 1.0) * side / fake.images.shape[-1]
        out.setdefault("conditioning", {})["las_arcsec"] = conditioning_accuracy(req, measured)
    if fake.conditions and "peak_flux" in fake.conditions:
        # per-image scaling restores the requested peak by construction: what is measured is
        # whether the model-space peak is 1, i.e. the physical peak equals the request
        req = np.asarray(fake.conditions["peak_flux"], float)
        measured = fake.images.reshape(len(fake.images), -1).max(1) * req
        out.setdefault("conditioning", {})["peak_flux"] = conditioning_accuracy(req, measured)

    t = time.perf_counter()
    n = min(len(real.images), len(fake.images))
    rng = np.random.default_rng(s.seed + 1)
    pick_r = rng.permutation(len(real.images))[:n]
    pick_f = rng.permutation(len(fake.images))[:n]
    out["real_vs_fake"] = real_vs_fake(real.images[pick_r], fake.images[pick_f],
                                       k=s.rvf_folds, epochs=s.rvf_epochs, seed=s.seed)
    out["real_vs_fake_faint"] = real_vs_fake(view_r[pick_r], view_f[pick_f], k=s.rvf_folds,
                                             epochs=s.rvf_epochs, seed=s.seed)
    timings["real_vs_fake"] = time.perf_counter() - t
    out["sets"] = {"real": {"name": real.name, "n": len(real.images)},
                   "fake": {"name": fake.name, "n": len(fake.images)}}
    out["settings"] = asdict(s)
    out["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    out["verdict"] = verdict(out)
    out["_stats"] = {"real": stats_r, "fake": stats_f}  # for the figures; not in JSON
    return out


# ------------------------------------------------------------------------------ report

_HEADLINE = ("mean", "std", "active_fraction", "cx", "cy", "radius", "size", "orientation",
             "elongation", "seg_n_components", "seg_area", "seg_las", "seg_flux",
             "pixel_value")


def _hist_figure(path: Path, stats_r: dict, stats_f: dict, keys: list[str]) -> Path:
    from radiodiff.evaluation.distances import binned_relative_difference
    ncols = 4
    nrows = -(-len(keys) // ncols)
    fig = new_figure((3.2 * ncols, 3.0 * nrows))
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3, 1] * nrows, hspace=0.5)
    for i, key in enumerate(keys):
        r, f = np.asarray(stats_r[key], float), np.asarray(stats_f[key], float)
        r, f = r[np.isfinite(r)], f[np.isfinite(f)]
        if not len(r) or not len(f):
            continue
        edges = np.unique(np.quantile(np.concatenate([r, f]), np.linspace(0, 1, 16)))
        if len(edges) < 2:
            continue
        top = fig.add_subplot(grid[2 * (i // ncols), i % ncols])
        bot = fig.add_subplot(grid[2 * (i // ncols) + 1, i % ncols], sharex=top)
        top.hist(r, edges, density=True, histtype="step", label="real", color="k")
        top.hist(f, edges, density=True, histtype="step", label="generated", color="C1")
        top.set_title(key, fontsize=8)
        top.tick_params(labelsize=6)
        rd = binned_relative_difference(r, f, edges)
        centres = 0.5 * (edges[1:] + edges[:-1])
        bot.errorbar(centres, rd["rel_diff"], yerr=rd["rel_err"], fmt=".", ms=3, color="C1")
        bot.axhline(0, color="k", lw=0.5)
        bot.set_ylim(-1.5, 1.5)
        bot.tick_params(labelsize=6)
        if i == 0:
            top.legend(fontsize=6)
            bot.set_ylabel("(gen−real)/real", fontsize=6)
    return save_figure(fig, path, dpi=90)


def _centre_figure(path: Path, stats_r: dict, stats_f: dict, size: int) -> Path:
    fig = new_figure((4.5, 4.2))
    ax = fig.add_subplot()
    edges = np.linspace(0, size - 1, 21)
    for stats, colour, label in ((stats_r, "k", "real"), (stats_f, "C1", "generated")):
        ok = np.isfinite(stats["cx"]) & np.isfinite(stats["cy"])
        h, _, _ = np.histogram2d(stats["cx"][ok], stats["cy"][ok], [edges, edges],
                                 density=True)
        c = 0.5 * (edges[1:] + edges[:-1])
        if h.max() > 0:
            ax.contour(c, c, h.T, levels=np.array([0.1, 0.3, 0.6, 0.9]) * h.max(),
                       colors=colour, linewidths=1)
        ax.plot([], [], color=colour, label=label)
    ax.set_xlabel("centre of emission x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=90)


def _confusion_figure(path: Path, conf: list, classes: list[str], title: str) -> Path:
    m = np.asarray(conf, float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig = new_figure((3.6, 3.3))
    ax = fig.add_subplot()
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(classes)), classes, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true / requested")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def _fmt(x: Any) -> str:
    return "n/a" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def _markdown(m: dict, figures: dict[str, str]) -> str:
    fake, real = m["sets"]["fake"], m["sets"]["real"]
    lines = [f"# radiodiff evaluation: {fake['name']} vs {real['name']}",
             "", f"{fake['n']} images ({fake['name']}) against {real['n']} ({real['name']}). "
             "Each distance is the mean over subset pairs of equal size (`n`), next to its "
             "noise floor (the same distance between two disjoint real subsets); ratio ≈ 1 "
             "means indistinguishable at this sample size.", ""]
    rvf = m["real_vs_fake"]
    lines += [f"**Real-vs-fake classifier** ({m['settings']['rvf_folds']}-fold): accuracy "
              f"{rvf['mean_accuracy']:.3f} ± {rvf['std_accuracy']:.3f} (0.5 = "
              "indistinguishable).", ""]
    lines += _faint_lines(m)
    if "class_fidelity" in m:
        c = m["class_fidelity"]
        lines += [f"**Class fidelity**: classifier accuracy on real images "
                  f"{c['real_accuracy']:.3f}, on generated images "
                  f"{_fmt(c.get('fake_accuracy'))} (ratio {_fmt(c.get('fidelity_ratio'))}).",
                  ""]
        f = m["features"]
        lines += [f"**Feature distances** (classifier features, n={f['n']}): Fréchet "
                  f"{f['frechet']:.4g} (real-vs-real floor {f['frechet_floor']:.4g}); "
                  f"precision {f['precision']:.3f}, recall {f['recall']:.3f}.", ""]
        mem = m["memorisation"]
        lines += ["**Memorisation** (nearest training image, pixel L2): " + "; ".join(
            f"{space}: generated median {d['gen_median']:.4g} vs test median "
            f"{d['test_median']:.4g}, copy fraction {d['copy_fraction']:.3f}"
            for space, d in mem.items() if isinstance(d, dict) and "gen_median" in d), ""]
    for name, c in (m.get("conditioning") or {}).items():
        lines += [f"**Conditioning accuracy, {name}** (requested vs measured, n={c['n']}): "
                  f"median relative error {_fmt(c.get('median_relative_error'))}, median "
                  f"absolute {_fmt(c.get('median_abs_relative_error'))}, Spearman "
                  f"{_fmt(c.get('spearman'))}.", ""]
    for title, block in (("Image statistics", m["distances"]),
                         ("Source finder (PyBDSF)", m.get("sourcefinder", {}))):
        if not block:
            continue
        lines += [f"## {title}", "", "| statistic | n | W1 | W1 floor | W1 ratio | KS | KS floor "
                  "| CDF dist | CDF floor |", "|---|---|---|---|---|---|---|---|---|"]
        for key, e in block.items():
            w, k, c = e["wasserstein1"], e["ks"], e["cdf"]
            lines.append(f"| {key} | {e['n_floor']} | {_fmt(w['matched'])} | "
                         f"{_fmt(w['floor_mean'])} ± {_fmt(w['floor_std'])} | "
                         f"{_fmt(w['ratio'])} | {_fmt(k['matched'])} | {_fmt(k['floor_mean'])} "
                         f"| {_fmt(c['matched'])} | {_fmt(c['floor_mean'])} |")
        lines.append("")
    lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()]
    lines += ["", f"Timings (s): {json.dumps(m['timings_s'])}"]
    return "\n".join(lines) + "\n"


def _faint_lines(m: dict) -> list[str]:
    """The faint-end paragraph and the verdict against the targets."""
    if "background" not in m:
        return []
    bg, rvf = m["background"], m["real_vs_fake_faint"]
    w = w1_summary(w1_ratios(m["faint_distances"]))
    lines = [f"**Faint end** (view x^{m['settings']['faint_power']:g}: 1 % of the peak shows "
             f"as {0.01 ** m['settings']['faint_power']:.2f}): real-vs-fake accuracy "
             f"{rvf['mean_accuracy']:.3f} ± {rvf['std_accuracy']:.3f}; statistics of the "
             f"view within 3x of their floors: {w['within']}/{w['n']} (worst "
             f"{w['worst'][0]} {w['max']:.3g}). Pixels exactly 0: real "
             f"{100 * bg['real']['zero']:.1f} %, generated {100 * bg['fake']['zero']:.1f} %; "
             f"in (0, 1 %] of the peak: real {100 * bg['real']['faint']:.2f} %, generated "
             f"{100 * bg['fake']['faint']:.2f} %.", ""]
    v = m.get("verdict")
    if v:
        failed = [k for k, c in v["checks"].items() if not c["pass"]]
        lines += [f"**Verdict**: {'alike' if v['alike'] else 'distinguishable'} (targets: "
                  + ", ".join(f"{k} {c['value']:.3g} {'≤' if c['pass'] else '>'} "
                              f"{c['target']:g}" for k, c in v["checks"].items())
                  + (f"; failed: {', '.join(failed)}" if failed else "") + ").", ""]
    return lines


_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]*)\)$")


def _html(markdown: str) -> str:
    """A minimal Markdown -> HTML rendering (tables, images, headings, paragraphs)."""
    out, in_table = ["<!doctype html><meta charset='utf-8'><title>radiodiff evaluation"
                     "</title><style>body{font-family:sans-serif;max-width:1100px}"
                     "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style>"], False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if _IMAGE.match(line):
            img = _IMAGE.match(line)
            out.append(f"<p><img src='{html.escape(img['src'])}' alt='{html.escape(img['alt'])}'"
                       " style='max-width:100%'></p>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line:
            text = html.escape(line).replace("**", "")
            out.append(f"<p>{text}</p>")
    return "\n".join(out + (["</table>"] if in_table else []))


def write_report(metrics: dict, real: ImageSet, fake: ImageSet, out_dir: str | Path,
                 classes: list[str]) -> dict[str, Path]:
    """``metrics.json``, figures, ``report.md`` and ``report.html`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = metrics["_stats"]
    figures = {
        "histograms": _hist_figure(out / "histograms.png", stats["real"], stats["fake"],
                                   [k for k in _HEADLINE if k in stats["real"]]
                                   + [k for k in stats["real"] if k.startswith("sf_")]),
        "centre of emission": _centre_figure(out / "centres.png", stats["real"],
                                             stats["fake"], real.images.shape[-1]),
        "real images": save_image_grid(out / "grid_real.png", real.images[:32],
                                       f"{real.name}"),
        "generated images": save_image_grid(out / "grid_generated.png", fake.images[:32],
                                            f"{fake.name}"),
    }
    c = metrics.get("class_fidelity")
    if c:
        figures["confusion (real)"] = _confusion_figure(out / "confusion_real.png",
                                                        c["real_confusion"], classes,
                                                        "classifier on real test images")
        if "fake_confusion" in c:
            figures["confusion (generated)"] = _confusion_figure(
                out / "confusion_generated.png", c["fake_confusion"], classes,
                "classifier on generated images")
    public = {k: v for k, v in metrics.items() if not k.startswith("_")}
    paths = {"metrics.json": atomic_text(out / "metrics.json",
                                         json.dumps(to_plain(public), indent=2))}
    md = _markdown(public, {k: Path(v).name for k, v in figures.items()})
    paths["report.md"] = atomic_text(out / "report.md", md)
    paths["report.html"] = atomic_text(out / "report.html", _html(md))
    paths.update({k: Path(v) for k, v in figures.items()})
    return paths
