"""``radiodiff demo`` / ``make demo``: the built-in model, end to end, in a few minutes.

Draws ``n_per_class`` images per class from a release (default: the shipped model), writes
them as FITS (with ``samples.h5`` and a preview) per class, a PNG of real test images beside
generated ones, the evaluation report (:mod:`radiodiff.evaluation.report`) against the real test
split (without the source finder, which is the slow part), and a short ``summary.md``.

With 16 images per class the metrics are indicative only: the real-vs-fake accuracy and
the distances are measured on 64 generated images, so their scatter is several times that
of ``make eval`` (as many images as the real test split: 200 on FIRST).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.evaluation.comparable import check_comparable
from radiodiff.evaluation.distances import w1_ratios, w1_summary
from radiodiff.evaluation.metrics import EvalResult, EvalSettings, evaluate
from radiodiff.evaluation.report import write_report
from radiodiff.evaluation.sets import ImageSet, reference_meta, reference_splits, sample_classes
from radiodiff.io.artifacts import artifact_dir, atomic_text, new_figure, relocated, save_figure

__all__ = ["run_demo", "DEMO_SETTINGS"]

# The short report: everything but PyBDSF, fewer subset pairs for the noise floors.
DEMO_SETTINGS = EvalSettings(n_repeats=10, sourcefinder=False)


def _stretch(images: np.ndarray) -> np.ndarray:
    """Square-root stretch of model-space [0, 1] images, to show faint emission."""
    return np.sqrt(np.clip(images, 0.0, 1.0))


def real_vs_generated_figure(path: Path, real: ImageSet, fake: ImageSet, classes: list[str],
                             n_per_class: int, seed: int = 0) -> Path:
    """PNG: per class, one row of real test images above one row of generated images.

    Real images are a seeded random choice among the class's test images. Shown with a
    square-root stretch on a fixed [0, 1] scale, north up.
    """
    rng = np.random.default_rng(seed)
    groups = list(enumerate(classes)) if classes else [(-1, "all")]
    rows = []
    for label, name in groups:
        r = np.flatnonzero(real.labels == label) if label >= 0 else np.arange(len(real.labels))
        f = np.flatnonzero(fake.labels == label) if label >= 0 else np.arange(len(fake.labels))
        r = rng.choice(r, min(len(r), n_per_class), replace=False) if len(r) else r
        rows += [(f"{name} real", real.images[r, 0]), (f"{name} generated",
                                                       fake.images[f[:n_per_class], 0])]
    ncols, panel = n_per_class, 0.8
    fig = new_figure((panel * ncols + 1.2, panel * len(rows) + 0.5), dpi=100)
    fig.subplots_adjust(left=1.2 / (panel * ncols + 1.2), right=0.995, bottom=0.005,
                        top=1 - 0.5 / (panel * len(rows) + 0.5), wspace=0.04, hspace=0.06)
    for i, (title, images) in enumerate(rows):
        for j in range(ncols):
            ax = fig.add_subplot(len(rows), ncols, i * ncols + j + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(images):
                ax.imshow(_stretch(images[j]), cmap="inferno", vmin=0, vmax=1, origin="lower",
                          interpolation="nearest")
            else:
                ax.set_axis_off()
            if j == 0:
                ax.set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"real test images (odd rows) vs generated ({fake.name}); sqrt stretch",
                 fontsize=9)
    return save_figure(fig, Path(path), format="png")


def _summary(metrics: EvalResult, release, fake: ImageSet, settings: dict, t_sample: float,
             t_eval: float) -> str:
    meta = release.meta
    lines = [f"# radiodiff demo: {release.path.name}", "",
             f"- model: {meta.get('model_name')} trained on {meta.get('images_seen')} images "
             f"(step {meta.get('step')}), weights sha256 {release.weights_sha256[:12]}",
             f"- sampler: {settings['sampler']} {settings['steps']} steps, guidance "
             f"{settings['guidance']}, seed {settings['seed']}; {len(fake.images)} images in "
             f"{t_sample:.0f} s ({len(fake.images) / max(t_sample, 1e-9):.2f} images/s)",
             f"- evaluation against {metrics.sets['real']['n']} real test images in "
             f"{t_eval:.0f} s (indicative: only {len(fake.images)} generated images)", ""]
    rvf = metrics.real_vs_fake
    lines.append(f"- real-vs-fake accuracy: {rvf['mean_accuracy']:.3f} ± "
                 f"{rvf['std_accuracy']:.3f} (0.5: indistinguishable; trained on only "
                 f"{len(fake.images)} generated images this classifier has little power: "
                 f"`make bench-quality` scores 200 per sampler, and the model card lists them)")
    fid = metrics.class_fidelity or {}
    if fid.get("fidelity_ratio") is not None:
        lines.append(f"- class fidelity: {fid['fake_accuracy']:.3f} accuracy on generated "
                     f"images vs {fid['real_accuracy']:.3f} on real test images (ratio "
                     f"{fid['fidelity_ratio']:.2f})")
    feats = metrics.features or {}
    if feats.get("frechet") is not None:
        lines.append(f"- Fréchet distance of classifier features: {feats['frechet']:.3g} "
                     f"(real-vs-real floor {feats['frechet_floor']:.3g})")
    ratios = w1_ratios(metrics.distances)
    if ratios:
        w = w1_summary(ratios)
        lines.append(f"- Wasserstein-1 / noise floor over {w['n']} pixel and shape "
                     f"statistics: median {w['median']:.2f}, {w['within']} within 3x; worst "
                     + ", ".join(f"{k} {ratios[k]:.2f}" for k in w["worst"][:3]))
    lines += ["", "Full report: report/report.md (figures, per-statistic table).", ""]
    return "\n".join(lines)


def run_demo(reference: str | Path = "data/first.h5", out: str | Path = "outputs/demo",
             model: str | Path | None = None, n_per_class: int = 16,
             spec: SamplerSpec | None = None, seed: int = 0, batch_size: int = 32,
             settings: EvalSettings = DEMO_SETTINGS,
             progress: Optional[Callable[[Iterable, int], Iterable]] = None,
             overwrite: bool = False, **sampler_options: Any) -> dict[str, Any]:
    """Sample ``n_per_class`` images per class and compare them with the real test split.

    Parameters
    ----------
    reference : str or pathlib.Path
        Prepared file the model was trained on (``radiodiff prepare``), e.g. data/first.h5.
    out : str or pathlib.Path
        Output folder: ``samples/<class>/`` (FITS, samples.h5, preview.png),
        ``real_vs_generated.png``, ``report/`` (metrics.json, report.md/html, figures) and
        ``summary.md``; written whole and atomically (a demo folder is recognised by
        ``summary.md`` + ``report/metrics.json``), never over another kind of folder.
    model : str, pathlib.Path or None
        Release folder or shipped model name; None: the built-in default.
    n_per_class, spec, seed, batch_size
        Sampling; class ``c`` draws its images with seeds ``seed + c * n_per_class + k``;
        ``spec`` None: the release's recommended sampler; ``sampler_options``
        (``sampler``, ``steps``, ...) replace those of ``spec``.
    settings : EvalSettings
        Evaluation settings (seed is replaced by ``seed``).
    overwrite : bool
        Replace an existing demo folder at ``out`` (else ``OutputError``, before sampling).

    Returns
    -------
    dict
        ``paths`` (name -> Path), ``metrics`` (the :class:`EvalResult`) and ``summary``.

    Raises
    ------
    ValueError
        Bad options, or the model and the reference file disagree on classes, image unit,
        image size, pixel scale or beam
        (:func:`radiodiff.evaluation.comparable.check_comparable`).
    """
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import load_release
    from radiodiff.io.samples import samples_nbytes, save_samples

    if int(n_per_class) < 2:
        raise ValueError(f"n_per_class must be >= 2 (the report splits sets), got {n_per_class}")
    release = load_release(resolve_model(model))
    spec = SamplerSpec.build(spec or release.sampler, **sampler_options)
    real, train, _, ps = reference_splits(reference, "test")
    # classes, image unit, pixel scale and beam: the rule of `radiodiff evaluate`
    check_comparable(reference_meta(ps), release.meta, str(reference), "model", release.path)
    if int(release.meta["image_size"]) != real.images.shape[-1]:
        raise ValueError(f"{release.path}: model images are {release.meta['image_size']} px, "
                         f"{reference}'s are {real.images.shape[-1]} px")
    out = Path(out)
    n_images = n_per_class * max(1, len(release.classes))
    nbytes = samples_nbytes(n_images, real.images.shape[-1]) + 16 * 2**20  # + report
    with artifact_dir(out, "demo", overwrite, nbytes) as tmp:
        paths: dict[str, Path] = {}
        images, labels = [], []
        counts = [(c, n_per_class) for c in range(len(release.classes))] or [(-1, n_per_class)]
        t0 = time.perf_counter()
        for c, res in sample_classes(release, counts, seed, spec=spec, batch_size=batch_size,
                                     progress=progress):
            name = release.classes[c] if c >= 0 else None
            written = save_samples(tmp / "samples" / (name or "all"), release, res)
            paths[f"samples/{name or 'all'}"] = written["samples.h5"].parent
            images.append(res.images)
            labels.append(np.full(n_per_class, c, np.int64))
        t_sample = time.perf_counter() - t0
        fake = ImageSet(np.concatenate(images), np.concatenate(labels),
                        f"{release.path.name}, {spec.name} {spec.steps}")
        paths["real_vs_generated.png"] = real_vs_generated_figure(
            tmp / "real_vs_generated.png", real, fake, list(release.classes), n_per_class, seed)
        t0 = time.perf_counter()
        # a handful of images cannot fill 5 real-vs-fake folds
        settings = replace(settings, seed=seed,
                           rvf_folds=max(2, min(settings.rvf_folds, len(fake.images))))
        metrics = evaluate(real, fake, train, reference_meta(ps), settings)
        paths.update({f"report/{k}": v for k, v in
                      write_report(metrics, real, fake, tmp / "report", ps.classes).items()})
        t_eval = time.perf_counter() - t0
        summary = _summary(metrics, release, fake, {"sampler": spec.name, "steps": spec.steps,
                                                    "guidance": spec.guidance, "seed": seed},
                           t_sample, t_eval)
        paths["summary.md"] = atomic_text(tmp / "summary.md", summary)
    paths = relocated(paths, tmp, out)
    return {"paths": paths, "metrics": metrics, "summary": summary}
