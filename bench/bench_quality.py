"""Sample quality against the number of network evaluations (NFE), on the FIRST test split.

    python bench/bench_quality.py --n 200                  # the built-in model
    python bench/bench_quality.py --model run/last.ckpt --configs heun:25 heun:12 dpmpp_2m:10
    python bench/bench_quality.py --configs dpmpp_2m:10:g=2 heun:25:smax=10 --no-real-row

A configuration is ``sampler:steps`` with optional ``:g=<guidance>`` (classifier-free
guidance; doubles the network evaluations), ``:smax=<sigma_max>``, ``:churn=<S_churn>``,
``:raw`` (skip the release's output projection, to score the network's own images) and
``:norefine`` (skip the release's faint-end refiner; the NFE column counts the refiner's
evaluations when it runs) and ``:noislands`` (leave the data's noise islands out of the
projection).

For each sampler:steps, draws N images (test-split class proportions, one seed each) and
scores them with the evaluation suite: real-vs-fake accuracy, class fidelity, the Fréchet
distance on classifier features, and the Wasserstein-1 ratio to the real-vs-real noise floor
of every image statistic, each also on the faint-pixel view (x^0.25), with the fractions
of exactly-zero and (0, 1 %]-of-peak pixels. A first row scores N other real images the
same way: what "indistinguishable" gives at this sample size. ``--split valid`` scores
against the validation split (for choosing settings); the test split is for the end. Prints a Markdown table and one JSON line per
row, and with ``--out`` writes them (and the settings) as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from radiodiff.pipeline.refine import RefineSpec
from radiodiff.diffusion.sampling import SAMPLERS, SamplerSpec, sampler_nfe
from radiodiff.evaluation.distances import w1_ratios, w1_summary
from radiodiff.evaluation.metrics import EvalSettings, evaluate
from radiodiff.evaluation.sets import (ImageSet, generated_set, proportional_labels,
                                       reference_meta, reference_set, reference_splits)

def _parse_config(config: str) -> tuple[str, int, float, dict]:
    """``sampler:steps[:g=<guidance>][:smax=<sigma_max>][:churn=<S_churn>]``."""
    sampler, steps, *opts = config.split(":")
    names = {"g": "guidance", "smax": "sigma_max", "churn": "S_churn"}
    kw = {}
    for opt in opts:
        if opt == "raw":  # without the release's output projection
            kw["project"] = False
            continue
        if opt == "norefine":  # without the release's faint-end refiner
            kw["refine"] = False
            continue
        if opt == "noislands":  # without the data's noise islands in the projection
            kw["islands"] = False
            continue
        key, _, value = opt.partition("=")
        if key not in names or not value:
            raise SystemExit(f"config {config!r}: options are g=, smax=, churn=, raw, norefine, "
                             "noislands "
                             f"(got {opt!r})")
        kw[names[key]] = float(value)
    return sampler, int(steps), kw.pop("guidance", 1.0), kw


GENERATE_OPTIONS = ("project", "refine", "islands")  # config options for generate()


def _spec_and_options(sampler: str, steps: int, guidance: float,
                      kw: dict) -> tuple[SamplerSpec, dict]:
    """The solver spec of a parsed configuration and its ``generate()`` options
    (:data:`GENERATE_OPTIONS`)."""
    gen_kw = {k: kw[k] for k in GENERATE_OPTIONS if k in kw}
    spec_kw = {k: v for k, v in kw.items() if k not in gen_kw}
    return SamplerSpec.build(sampler=sampler, steps=steps, guidance=guidance,
                             **spec_kw), gen_kw


def add_generation_args(ap) -> None:
    """The arguments of the bench scripts that draw one generated set against a real split
    (``bench/faint_components.py``, ``bench/projection_floor.py``)."""
    ap.add_argument("--model", default="first")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--config", default="dpmpp_2m:7", help="bench_quality.py syntax")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)


def _num(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def score_configs(model: str, reference: str, split: str, n: int, configs: list[str],
                  seed: int = 0, real_row: bool = True, sourcefinder: bool = False) -> list[dict]:
    """One row per configuration: ``n`` images scored against the real ``split``.

    With ``real_row`` a first row scores ``n`` other real images (valid for ``split=test``,
    train for ``split=valid``, so the test split is never touched while choosing settings)
    the same way: what "indistinguishable" gives at this sample size.
    """
    real, train, val, ps = reference_splits(reference, split)
    floor_set = val if split == "test" else train
    meta = reference_meta(ps)
    labels = proportional_labels(real.labels, n)
    settings = EvalSettings(seed=seed, sourcefinder=sourcefinder)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in (["real:0"] if real_row else []) + list(configs):
            sampler, steps, guidance, kw = _parse_config(config)
            t0 = time.perf_counter()
            if sampler == "real":
                pick = np.random.default_rng(seed).permutation(len(floor_set.labels))[:n]
                fake = ImageSet(floor_set.images[pick], floor_set.labels[pick],
                                f"{floor_set.name} images")
            else:
                spec, gen_kw = _spec_and_options(sampler, steps, guidance, kw)
                fake = generated_set(model, labels, Path(tmp), spec, seed, 32, **gen_kw)
                kw = dict(kw, refine_nfe=0 if kw.get("refine") is False
                          else _refine_nfe(model))
            t_sample = time.perf_counter() - t0
            m = evaluate(real, fake, train, val, meta, settings).to_dict()
            rows.append(_row(m, sampler, steps, guidance, kw, len(fake.images), t_sample))
            print(json.dumps(rows[-1]), flush=True)  # inf -> Infinity
    return rows


def _refine_nfe(model: str) -> int:
    """Network evaluations per image of the model's faint-end refiner (0: none)."""
    from radiodiff.io.release_files import META_FILE, resolve_model
    path = resolve_model(model)
    if path.is_file():  # a training checkpoint: no refiner
        return 0
    entry = json.loads((path / META_FILE).read_text()).get("refine")
    return 0 if entry is None else RefineSpec.from_dict(entry).nfe


def _row(m: dict, sampler: str, steps: int, guidance: float, kw: dict, n: int,
         t_sample: float) -> dict:
    ratios = w1_ratios(m["distances"])
    w = w1_summary(ratios)  # a missing statistic counts as inf
    wf = w1_summary(w1_ratios(m["faint_distances"]))
    mem = (m.get("memorisation") or {}).get("pixel", {})
    bg = m["background"]
    return {
        "sampler": sampler, "steps": steps, "guidance": guidance, **kw,
        # network evaluations per image (guidance != 1 evaluates twice)
        "nfe": (sampler_nfe(sampler, steps, guidance) + kw.get("refine_nfe", 0)
                if sampler in SAMPLERS else 0),
        "n": n, "sample_s": round(t_sample, 1),
        "real_vs_fake": m["real_vs_fake"]["mean_accuracy"],
        "real_vs_fake_std": m["real_vs_fake"]["std_accuracy"],
        "real_vs_fake_faint": m["real_vs_fake_faint"]["mean_accuracy"],
        "real_vs_fake_faint_std": m["real_vs_fake_faint"]["std_accuracy"],
        "zero_real": bg["real"]["zero"], "zero_fake": bg["fake"]["zero"],
        "faint_real": bg["real"]["faint"], "faint_fake": bg["fake"]["faint"],
        "class_fidelity_ratio": m.get("class_fidelity", {}).get("fidelity_ratio"),
        "class_recall_ratio_min": _recall_ratio_min(m.get("class_fidelity", {})),
        "frechet": m.get("features", {}).get("frechet"),
        "frechet_floor": m.get("features", {}).get("frechet_floor"),
        "w1_ratio_median": w["median"],
        "w1_ratio_max": w["max"],  # may be inf
        "w1_ratio_worst": w["worst"][0],
        "w1_within_3x": w["within"],
        "n_stats": w["n"],
        "w1_ratios": {k: round(v, 3) for k, v in sorted(ratios.items())},
        "faint_w1_within_3x": wf["within"], "faint_w1_ratio_max": wf["max"],
        "faint_w1_ratio_worst": wf["worst"][0],
        "alike": m["verdict"]["alike"],
        # nearest training image (pixel L2): generated vs held-out test images
        "copy_fraction": mem.get("copy_fraction"),
        "nn_median_ratio": (mem["gen_median"] / mem["test_median"]
                            if mem.get("test_median") else None),
    }


def _recall_ratio_min(fid: dict) -> float | None:
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


def markdown_table(rows: list[dict], first_column: str | None = None) -> str:
    """The rows as the README's Markdown table (plain and faint-view columns); an optional
    leading column (e.g. ``arm``) from each row's key of that name."""
    lead = f"| {first_column} " if first_column else ""
    lines = [lead + "| sampler | steps | NFE | real-vs-fake | faint real-vs-fake | "
             "zero % (real) | (0,1 %] % (real) | class fidelity | min class recall ratio | "
             "Fréchet (floor) | W1 ≤ 3× | W1 max (stat) | faint W1 ≤ 3× | NN ratio (copies) |",
             ("|---" if first_column else "") + "|---" * 14 + "|"]
    for r in rows:
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
        lines.append(
            (f"| {r.get(first_column, '')} " if first_column else "")
            + f"| {r['sampler']}{extra} | {r['steps'] or '–'} | {r['nfe'] or '–'} | "
            f"{r['real_vs_fake']:.3f} ± {r['real_vs_fake_std']:.3f} | "
            f"{r['real_vs_fake_faint']:.3f} ± {r['real_vs_fake_faint_std']:.3f} | "
            f"{100 * r['zero_fake']:.1f} ({100 * r['zero_real']:.1f}) | "
            f"{100 * r['faint_fake']:.2f} ({100 * r['faint_real']:.2f}) | "
            f"{_num(r['class_fidelity_ratio'], '.3f')} | "
            f"{_num(r['class_recall_ratio_min'], '.2f')} | "
            f"{_num(r['frechet'], '.3g')} ({_num(r['frechet_floor'], '.3g')}) | "
            f"{r['w1_within_3x']}/{r['n_stats']} | {r['w1_ratio_max']:.2f} "
            f"({r['w1_ratio_worst']}) | {r['faint_w1_within_3x']}/{r['n_stats']} | "
            f"{_num(r['nn_median_ratio'], '.2f')} ({_num(r['copy_fraction'], '.3f')}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="first",
                    help="release folder, shipped model name or training checkpoint")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--split", default="test", choices=("valid", "test"),
                    help="real images to score against (choose settings on valid)")
    ap.add_argument("--n", type=int, default=200, help="generated images per configuration")
    ap.add_argument("--configs", nargs="+", default=["heun:25", "heun:12", "heun:6",
                                                     "dpmpp_2m:10", "dpmpp_2m:6"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sourcefinder", action="store_true", help="also run PyBDSF")
    ap.add_argument("--no-real-row", action="store_true", help="skip the real-vs-real row")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    rows = score_configs(args.model, args.reference, args.split, args.n, args.configs,
                         args.seed, not args.no_real_row, args.sourcefinder)
    print(markdown_table(rows))
    if args.out:
        from radiodiff.io.artifacts import atomic_text
        from radiodiff.io.provenance import git_commit
        from radiodiff.io.release_files import resolve_model
        _, ps = reference_set(args.reference, args.split)
        atomic_text(args.out, json.dumps({
            "model": resolve_model(args.model).name, "reference": Path(args.reference).name,
            "reference_sha256": ps.attrs.get("data_sha256"), "split": args.split,
            "seed": args.seed, "git_commit": git_commit(),
            # no local paths in an artifact: file and folder names only
            "settings": {k: Path(v).name if k in ("model", "reference", "out") and v else v
                         for k, v in vars(args).items()},
            "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
