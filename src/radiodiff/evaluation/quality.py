"""Sample quality of sampler settings against a real split: the benchmark rows of
``bench/bench_quality.py``, ``bench/refine_sweep.py``, ``bench/ablation_noise.py`` and
``bench/projection_floor.py``, and their Markdown table.

A setting is :class:`radiodiff.pipeline.settings.SamplerSetting` text (``dpmpp_2m:7``,
``dpmpp_2m:10:guidance=2``, ``dpmpp_2m:7:islands=false``). Each row scores ``n`` generated
images (the real split's class proportions, one seed each) with
:func:`radiodiff.evaluation.metrics.evaluate`: real-vs-fake accuracy (plain and x^0.25),
class fidelity, the Fréchet distance on classifier features, the Wasserstein-1 ratio of
every image statistic to its real-vs-real floor, the exact-zero and (0, 1 %]-of-peak pixel
fractions and the nearest-training-image ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from radiodiff.evaluation.distances import w1_ratios, w1_summary
from radiodiff.evaluation.metrics import EvalSettings, check_beam, evaluate
from radiodiff.evaluation.sets import (ImageSet, check_splits, open_model,
                                       proportional_labels, reference_meta, reference_splits,
                                       released_set)
from radiodiff.pipeline.refine import RefineSpec
from radiodiff.pipeline.settings import SamplerSetting

__all__ = ["parse_settings", "setting_arg", "spec_arg", "add_generation_args", "refine_nfe",
           "setting_head", "draw_setting", "score_settings", "floor_images",
           "result_header", "quality_row", "recall_ratio_min", "markdown_table"]

REAL_HEAD = {"sampler": "real", "steps": 0, "guidance": 1.0, "nfe": 0}  # the floor row


def parse_settings(texts: Iterable[str | SamplerSetting]) -> list[SamplerSetting]:
    """Every setting parsed up front, so a typo fails before any image is drawn."""
    return [t if isinstance(t, SamplerSetting) else SamplerSetting.parse(t) for t in texts]


def setting_arg(text: str) -> SamplerSetting:
    """An ``argparse`` ``type``: the setting, or the parser's one-line error."""
    try:
        return SamplerSetting.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def spec_arg(text: str) -> SamplerSetting:
    """:func:`setting_arg` for scripts that take the solver only (``radiodiff evaluate``'s
    sampling): the generate() switches are refused."""
    setting = setting_arg(text)
    if setting.generate_options:
        raise argparse.ArgumentTypeError(
            f"sampler setting {text!r}: {', '.join(setting.generate_options)} cannot be "
            "switched here (solver options only)")
    return setting


def add_generation_args(ap: argparse.ArgumentParser, setting: str = "dpmpp_2m:7") -> None:
    """The options of a script that draws one generated set against a real split."""
    ap.add_argument("--model", default="first", help="release folder, shipped model name "
                    "or training checkpoint")
    ap.add_argument("--reference", default="data/first.h5", help="prepared real data file")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--config", type=setting_arg, default=SamplerSetting.parse(setting),
                    help="sampler setting, solver:steps[:key=value ...] "
                    "(radiodiff.pipeline.settings)")
    ap.add_argument("--n", type=int, default=200, help="generated images")
    ap.add_argument("--seed", type=int, default=0)


def refine_nfe(release: Any, setting: SamplerSetting) -> int:
    """Network evaluations per image of the release's faint-end refiner at ``setting``
    (0: none, or ``refine=false``)."""
    spec = release.refine
    return 0 if spec is None or setting.given.get("refine") is False else spec.nfe


def setting_head(setting: SamplerSetting, refiner_nfe: int = 0) -> dict[str, Any]:
    """The leading fields of a row: solver, steps, guidance, the options given, the
    refiner's evaluations and the network evaluations per image in all."""
    options = {k: v for k, v in setting.options if k != "guidance"}
    return {"sampler": setting.sampler, "steps": setting.steps,
            "guidance": setting.spec.guidance, **options, "refine_nfe": refiner_nfe,
            "nfe": setting.spec.nfe + refiner_nfe}


def draw_setting(release: Any, kind: str, labels: np.ndarray, setting: SamplerSetting,
                 seed: int = 0, **overrides: Any) -> ImageSet:
    """One image per label from a loaded release at ``setting`` (its switches, then
    ``overrides``, go to :func:`~radiodiff.pipeline.generate.generate`)."""
    return released_set(release, kind, labels, setting.spec, seed, 32,
                        **{**setting.generate_options, **overrides})


def score_settings(model: str, reference: str, split: str, n: int,
                   settings: Iterable[str | SamplerSetting], seed: int = 0,
                   real_row: bool = True, sourcefinder: bool = False) -> list[dict]:
    """One row per setting: ``n`` images of ``model`` scored against the real ``split``.

    With ``real_row`` a first row scores ``n`` other real images (valid for ``split=test``,
    train for ``split=valid``, so the test split is never touched while choosing settings)
    the same way: what "indistinguishable" gives at this sample size.
    """
    check_splits(split)
    settings = parse_settings(settings)
    real, train, val, ps = reference_splits(reference, split)
    meta, labels = reference_meta(ps), proportional_labels(real.labels, n)
    check_beam(meta, reference)  # naming the file, before anything is drawn
    evaluated = EvalSettings(seed=seed, sourcefinder=sourcefinder)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        release, kind = open_model(model, Path(tmp)) if settings else (None, "")
        for setting in ([None] if real_row else []) + settings:
            t0 = time.perf_counter()
            if setting is None:
                fake, head = floor_images(train, val, split, n, seed), dict(REAL_HEAD)
            else:
                fake = draw_setting(release, kind, labels, setting, seed)
                head = setting_head(setting, refine_nfe(release, setting))
            t_sample = time.perf_counter() - t0
            m = evaluate(real, fake, train, meta, evaluated).to_dict()
            rows.append(quality_row(m, head, len(fake.images), t_sample))
            print(json.dumps(rows[-1]), flush=True)  # inf -> Infinity
    return rows


def floor_images(train: ImageSet, val: ImageSet, split: str, n: int, seed: int) -> ImageSet:
    """``n`` seeded real images that stand in for a model in the real-vs-real row: from
    valid when scoring against test, from train when scoring against valid (so choosing
    settings never touches the test split)."""
    pool = val if split == "test" else train
    pick = np.random.default_rng(seed).permutation(len(pool.labels))[:n]
    return ImageSet(pool.images[pick], pool.labels[pick], f"{pool.name} images",
                    split=pool.split)


def result_header(reference: str | Path, split: str, seed: int) -> dict[str, Any]:
    """The provenance a benchmark's JSON starts with: the reference file by name (no local
    folder) and its ``data_sha256``, the split scored against, the seed and the code
    version."""
    from radiodiff.data.prepared import declared_sha256
    from radiodiff.io.provenance import git_commit
    return {"reference": Path(reference).name, "reference_sha256": declared_sha256(reference),
            "split": split, "seed": int(seed), "git_commit": git_commit()}


def quality_row(m: dict, head: dict, n: int, t_sample: float) -> dict:
    """One benchmark row: ``head`` (:func:`setting_head`) and the scores of the metrics
    ``m`` (:meth:`~radiodiff.evaluation.metrics.EvalResult.to_dict`)."""
    ratios = w1_ratios(m["distances"])
    w = w1_summary(ratios)  # a missing statistic counts as inf
    wf = w1_summary(w1_ratios(m["faint_distances"]))
    mem = (m.get("memorisation") or {}).get("pixel", {})
    bg, feats = m["background"], m.get("features", {})
    return {
        **head, "n": n, "sample_s": round(t_sample, 1),
        "real_vs_fake": m["real_vs_fake"]["mean_accuracy"],
        "real_vs_fake_std": m["real_vs_fake"]["std_accuracy"],
        "real_vs_fake_faint": m["real_vs_fake_faint"]["mean_accuracy"],
        "real_vs_fake_faint_std": m["real_vs_fake_faint"]["std_accuracy"],
        "zero_real": bg["real"]["zero"], "zero_fake": bg["fake"]["zero"],
        "faint_real": bg["real"]["faint"], "faint_fake": bg["fake"]["faint"],
        "class_fidelity_ratio": m.get("class_fidelity", {}).get("fidelity_ratio"),
        "class_recall_ratio_min": recall_ratio_min(m.get("class_fidelity", {})),
        "frechet": feats.get("frechet"), "frechet_floor": feats.get("frechet_floor"),
        "w1_ratio_median": w["median"], "w1_ratio_max": w["max"],  # may be inf
        "w1_ratio_worst": w["worst"][0], "w1_within_3x": w["within"], "n_stats": w["n"],
        "w1_ratios": {k: round(v, 3) for k, v in sorted(ratios.items())},
        "faint_w1_within_3x": wf["within"], "faint_w1_ratio_max": wf["max"],
        "faint_w1_ratio_worst": wf["worst"][0],
        "alike": m["verdict"]["alike"],
        # nearest training image (pixel L2): generated vs held-out test images
        "copy_fraction": mem.get("copy_fraction"),
        "nn_median_ratio": (mem["gen_median"] / mem["test_median"]
                            if mem.get("test_median") else None),
    }


def recall_ratio_min(fid: dict) -> float | None:
    """Smallest per-class recall on generated images over the recall on real ones."""
    real, fake = fid.get("real_confusion"), fid.get("fake_confusion")
    if not real or not fake:
        return None
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    ratios = []
    for c in range(len(real)):
        r = real[c, c] / real[c].sum() if real[c].sum() else np.nan
        f = fake[c, c] / fake[c].sum() if fake[c].sum() else np.nan
        if np.isfinite(r) and np.isfinite(f) and r > 0:
            ratios.append(f / r)
    return float(min(ratios)) if ratios else None


def _num(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _setting_cell(r: dict) -> str:
    """The sampler column: the solver and what differs from the plain setting."""
    extra = "".join(f" {k}={r[k]:g}" for k in ("guidance", "sigma_max", "S_churn")
                    if k in r and r[k] != (1.0 if k == "guidance" else None))
    extra += " raw" if r.get("project") is False else ""
    extra += " no islands" if r.get("islands") is False else ""
    if r.get("refine_nfe"):
        extra += f" + refiner {r['refine_nfe']}"
        if "sigma" in r:  # refine_sweep rows: the setting, rho when not the default
            rho = r.get("refine_rho", RefineSpec.rho)
            extra += f" (σ_r {r['sigma']:g}" + (f", ρ {rho:g})" if rho != RefineSpec.rho
                                                 else ")")
    extra += " (refiner off)" if r.get("refine") is False else ""
    return f"{r['sampler']}{extra}"


def markdown_table(rows: list[dict], first_column: str | None = None) -> str:
    """The rows as the README's Markdown table (plain and faint-view columns); an optional
    leading column (e.g. ``arm``) from each row's key of that name."""
    lead = f"| {first_column} " if first_column else ""
    lines = [lead + "| sampler | steps | NFE | real-vs-fake | faint real-vs-fake | "
             "zero % (real) | (0,1 %] % (real) | class fidelity | min class recall ratio | "
             "Fréchet (floor) | W1 ≤ 3× | W1 max (stat) | faint W1 ≤ 3× | NN ratio (copies) |",
             ("|---" if first_column else "") + "|---" * 14 + "|"]
    for r in rows:
        lines.append(
            (f"| {r.get(first_column, '')} " if first_column else "")
            + f"| {_setting_cell(r)} | {r['steps'] or '–'} | {r['nfe'] or '–'} | "
            f"{r['real_vs_fake']:.3f} ± {r['real_vs_fake_std']:.3f} | "
            f"{r['real_vs_fake_faint']:.3f} ± {r['real_vs_fake_faint_std']:.3f} | "
            f"{100 * r['zero_fake']:.1f} ({100 * r['zero_real']:.1f}) | "
            f"{100 * r['faint_fake']:.2f} ({100 * r['faint_real']:.2f}) | "
            f"{_num(r['class_fidelity_ratio'], '.3f')} | "
            f"{_num(r['class_recall_ratio_min'], '.2f')} | "
            f"{_num(r['frechet'], '.3g')} ({_num(r['frechet_floor'], '.3g')}) | "
            f"{r['w1_within_3x']}/{r['n_stats']} | {r['w1_ratio_max']:.2f} "
            f"({r['w1_ratio_worst']}) | {r['faint_w1_within_3x']}/{r['n_stats']} | "
            f"{_num(r['nn_median_ratio'], '.2f')} "
            f"({_num(r['copy_fraction'], '.3f')}) |")
    return "\n".join(lines)
