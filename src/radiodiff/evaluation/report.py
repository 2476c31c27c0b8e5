"""The evaluation report: ``metrics.json``, figures, ``report.md`` and ``report.html``."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from radiodiff.evaluation.distances import w1_ratios, w1_summary
from radiodiff.evaluation.metrics import EvalResult
from radiodiff.evaluation.sets import ImageSet
from radiodiff.io.artifacts import atomic_text, new_figure, save_figure, save_image_grid, to_plain

__all__ = ["write_report"]

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


def _noise_figure(path: Path, noise: dict) -> Path:
    """Background pixels below 3 rms (density, zeros in the legend) and autocorrelation."""
    h, a = noise["histogram"], noise["autocorrelation"]
    fig = new_figure((8.0, 3.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key, colour, name in (("real", "k", "real"), ("fake", "C1", "generated")):
        left.stairs(h[f"{key}_density"], h["edges"], color=colour,
                    label=f"{name} ({100 * h[f'zero_fraction_{key}']:.0f} % exactly 0)")
        curve = np.array(a[f"{key}_median"], dtype=float)
        right.plot(a["lags"], curve, "o-", ms=3, color=colour, label=f"{name} (median)")
    lo, hi = (np.array(a[k], dtype=float) for k in ("real_p16", "real_p84"))
    right.fill_between(a["lags"], lo, hi, color="k", alpha=0.15, label="real 16-84 %")
    right.axvline(a["beam_px"], color="C0", lw=0.8, ls="--", label="beam FWHM")
    left.set_yscale("log")
    left.set_xlabel(f"background pixel / real median rms ({1e6 * h['sigma_ref']:.3g} µJy/beam)")
    left.set_ylabel("density (all background pixels)")
    right.set_xlabel("lag [pixels]")
    right.set_ylabel("background autocorrelation")
    for ax in (left, right):
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
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


def _spread(images: Any, k: int) -> Any:
    """``k`` images evenly spaced through the set (a generated set is ordered by class: its
    first ``k`` would all be of one)."""
    n = len(images)
    return images if n <= k else images[np.linspace(0, n - 1, k).round().astype(int)]


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


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
        lines += [f"**Class fidelity**: not measured ({c['skipped']})." if "skipped" in c else
                  f"**Class fidelity**: classifier accuracy on real images "
                  f"{c['real_accuracy']:.3f}, on generated images "
                  f"{_fmt(c.get('fake_accuracy'))} (ratio {_fmt(c.get('fidelity_ratio'))}; "
                  f"classifier selected on {c.get('selected_on', 'valid')}).", ""]
        f = m["features"]
        lines += [f"**Feature distances**: not measured ({f['skipped']})." if "skipped" in f
                  else f"**Feature distances** (classifier features, n={f['n']}): Fréchet "
                  f"{f['frechet']:.4g} (real-vs-real floor {f['frechet_floor']:.4g}); "
                  f"precision {f['precision']:.3f}, recall {f['recall']:.3f}.", ""]
        lines += [_memorisation_line(m["memorisation"]), ""]
    for name, c in (m.get("conditioning") or {}).items():
        lines += [f"**Conditioning accuracy, {name}** (requested vs measured, n={c['n']}): "
                  + _accuracy(c) + (f"; real images, measured vs catalogue (the floor, "
                                    f"n={c['real']['n']}): {_accuracy(c['real'])}"
                                    if c.get("real") else "") + ".", ""]
    lines += _physical_lines(m)
    lines += _morphology_lines(m) + _usefulness_lines(m)
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


def _morphology_lines(m: dict) -> list[str]:
    """The "Source morphology" section: KS / real-vs-real floor per class and statistic."""
    morph = m.get("morphology")
    if not morph:
        return []
    groups = list(morph["by_class"])
    stats = list(morph["by_class"]["all"])
    lines = ["## Source morphology", "", "The source (components reaching 20 % of the peak, "
             "outlined at 5 %, linked within a beam): KS distance real vs generated over the "
             "real-vs-real floor at equal sample size (n per class in brackets); ≤ 1.5 is the "
             f"target. Within 1.5: {morph['within_1.5']}/{morph['n']}; worst: "
             f"{', '.join(morph['worst'][:3]) or 'n/a'}.", "",
             "| statistic | " + " | ".join(
                 f"{g} ({morph['by_class'][g][stats[0]]['n_floor']})" for g in groups) + " |",
             "|---|" + "---|" * len(groups)]
    for key in stats:
        lines.append(f"| {key} | " + " | ".join(
            _fmt(morph["ks_ratio"].get(f"{g}/{key}")) for g in groups) + " |")
    return lines + [""]


def _memorisation_line(mem: dict) -> str:
    if "skipped" in mem:
        return f"**Memorisation**: not measured ({mem['skipped']})."
    return "**Memorisation** (nearest training image, pixel L2): " + "; ".join(
        f"{space}: generated median {d['gen_median']:.4g} vs test median "
        f"{d['test_median']:.4g}, copy fraction {d['copy_fraction']:.3f}"
        for space, d in mem.items() if isinstance(d, dict) and "gen_median" in d)


def _usefulness_lines(m: dict) -> list[str]:
    """Train-synthetic-test-real: accuracy and per-class recall of the three classifiers."""
    u = m.get("usefulness")
    if u and u.get("synthetic_skipped"):
        return ["## Usefulness (train on generated, test on real)", "",
                f"Not measured: {u['synthetic_skipped']}.", ""]
    if not u or "synthetic" not in u:
        return []
    lines = ["## Usefulness (train on generated, test on real)", "",
             f"Class classifiers tested on {u['n_test']} real images, trained on "
             f"{u['n_real_train']} real, {u['n_synthetic']} generated, or both. Targets: "
             "generated ≥ 0.95 × real, every recall ≥ 0.9 × real's, both ≥ real.", "",
             "| trained on | accuracy | " + " | ".join(f"recall {c}" for c in u["classes"])
             + " |", "|---|---|" + "---|" * len(u["classes"])]
    for name in ("real", "synthetic", "real+synthetic"):
        e = u[name]
        se = e.get("recall_se") or [None] * len(e["recall"])
        lines.append(f"| {name} | {_pm(e['accuracy'], e.get('accuracy_se'))} | "
                     + " | ".join(_pm(r, s) for r, s in zip(e["recall"], se)) + " |")
    return lines + ["", "± : the binomial standard error over the test images (of the "
                    "class, for a recall; the test set's size alone; one classifier seed).",
                    ""]


def _pm(value: Any, se: Any) -> str:
    """``value ± se`` (3 decimals), or the value alone when there is no error."""
    if value is None or se is None:
        return _fmt(value)
    return f"{value:.3f} ± {se:.3f}"


def _accuracy(c: dict) -> str:
    """One :func:`~radiodiff.evaluation.metrics.conditioning_accuracy` result in words."""
    within = (f", within {100 * c['tolerance']:g} %: {_fmt(c['fraction_within'])}"
              if "fraction_within" in c else "")
    scatter = (f", scatter (IQR of ln measured/requested, n={c['n_log']}) "
               f"{_fmt(c['iqr_log_ratio'])}" if c.get("iqr_log_ratio") is not None else "")
    return (f"median relative error {_fmt(c.get('median_relative_error'))}, median absolute "
            f"{_fmt(c.get('median_abs_relative_error'))}{within}, Spearman "
            f"{_fmt(c.get('spearman'))}{scatter}{_by_size_words(c.get('by_size'))}")


def _by_size_words(bins: list[dict] | None) -> str:
    """``by_size`` as "; measured/requested median by requested size: 0–20: 1.6 (n=12), ...,
    ≥80: 0.9 (n=5)"."""
    if not bins:
        return ""
    def label(b: dict) -> str:
        return f"≥{b['lo']:g}" if b["hi"] is None else f"{b['lo']:g}–{b['hi']:g}"
    return "; measured/requested median by requested size: " + ", ".join(
        f"{label(b)}: {_fmt(b['median_ratio'])} (n={b['n']})" for b in bins)


_CHECK_NAMES = {
    "real_vs_fake": "real-vs-fake accuracy",
    "real_vs_fake_faint": "real-vs-fake accuracy, faint view",
    "las_fraction_within_20pct": ("LAS within 20 % of the measured LAS of the real row of "
                                  "its conditions (fraction)"),
    "las_median_abs_relative_error": "LAS median absolute relative error, against that row",
    "las_spearman": "LAS Spearman, against that row",
    "las_vs_catalogue_fraction_within_20pct": ("LAS within 20 % of the requested (catalogue) "
                                               "LAS (fraction)"),
    "las_vs_catalogue_median_abs_relative_error": ("LAS median absolute relative error, "
                                                   "against the catalogue LAS"),
    "las_vs_catalogue_spearman": "LAS Spearman, measured vs catalogue LAS",
    "las_vs_catalogue_iqr_log_ratio": ("LAS scatter about the catalogue LAS, IQR of "
                                       "ln(measured / catalogue)"),
    "flux_median_ratio": "integrated flux, median ratio to real at the nearest conditions",
    "flux_scatter_dex": "integrated flux, scatter of that ratio [dex]",
    "flux_spearman": "integrated flux, Spearman with the real at the nearest conditions",
    "rms_ratio_deviation": "background rms, abs(median ratio fake / real - 1)",
    "background_histogram_w1": "background pixels below 3 rms, W1 [rms]",
    "acf_beam_w1": "background autocorrelation at the beam lag, W1",
}


def _physical_lines(m: dict) -> list[str]:
    """The "Physical units" section: the checks table and the noise in words."""
    p = m.get("physical")
    if not p:
        return []
    lines = ["## Physical units", "", f"Images in {p['unit']} (image × peak flux). Each "
             "floor is the same metric with real images in place of generated ones (real "
             "test rows against their catalogue, nearest-condition training rows or a "
             "disjoint real subset; 0.5 for the classifier).", "",
             "| metric | generated | real floor | target | pass |", "|---|---|---|---|---|"]
    for key, row in p.get("checks", {}).items():
        ok = {True: "pass", False: "FAIL", None: "—"}[row["pass"]]
        lines.append(f"| {_CHECK_NAMES.get(key, key)} | {_fmt(row['value'])} | "
                     f"{_fmt(row['floor'])} | {row['target'] or '—'} | {ok} |")
    rms, acf = p["noise"]["rms"], p["noise"]["autocorrelation"]
    flux = p["integrated_flux"]["generated"]
    lines += ["", f"Background rms (median): generated {_micro(rms['fake_median'])}, real "
              f"{_micro(rms['real_median'])} µJy/beam (ratio {_fmt(rms['ratio'])}). "
              f"Autocorrelation at the beam lag ({acf['beam_px']:.2g} px): generated "
              f"{_fmt(acf.get('fake_at_beam'))}, real {_fmt(acf.get('real_at_beam'))} "
              f"(real-vs-real difference {_fmt(acf.get('floor'))}). Integrated flux: "
              f"{flux['n']} images, {100 * flux['paired_fraction']:.0f} % with the exact "
              "conditions of a real test row.", ""]
    if "pass" in p:
        lines += [f"**Physical-units targets**: {'met' if p['pass'] else 'not met'}.", ""]
    return lines


def _micro(x: Any) -> str:
    """A Jy/beam value in µJy/beam."""
    return "n/a" if x is None else f"{1e6 * x:.4g}"


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


def write_report(result: EvalResult, real: ImageSet, fake: ImageSet, out_dir: str | Path,
                 classes: list[str]) -> dict[str, Path]:
    """``metrics.json``, figures, ``report.md`` and ``report.html`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(result, real, fake, out, classes)
    public = result.to_dict()
    paths = {"metrics.json": atomic_text(out / "metrics.json",
                                         json.dumps(to_plain(public), indent=2))}
    md = _markdown(public, {k: Path(v).name for k, v in figures.items()})
    paths["report.md"] = atomic_text(out / "report.md", md)
    paths["report.html"] = atomic_text(out / "report.html", _html(md))
    paths.update({k: Path(v) for k, v in figures.items()})
    return paths


def _figures(result: EvalResult, real: ImageSet, fake: ImageSet, out: Path,
             classes: list[str]) -> dict[str, Path]:
    """Histograms, centres of emission, image grids and confusion matrices."""
    stats = result.stats
    figures = {
        "histograms": _hist_figure(out / "histograms.png", stats["real"], stats["fake"],
                                   [k for k in _HEADLINE if k in stats["real"]]
                                   + [k for k in stats["real"] if k.startswith("sf_")]),
        "centre of emission": _centre_figure(out / "centres.png", stats["real"],
                                             stats["fake"], real.images.shape[-1]),
        "real images": save_image_grid(out / "grid_real.png", _spread(real.images, 32),
                                       f"{real.name}"),
        "generated images": save_image_grid(out / "grid_generated.png",
                                            _spread(fake.images, 32), f"{fake.name}"),
    }
    if result.physical:
        figures["background noise"] = _noise_figure(out / "noise.png",
                                                    result.physical["noise"])
    c = result.class_fidelity
    if c and "real_confusion" in c:
        figures["confusion (real)"] = _confusion_figure(out / "confusion_real.png",
                                                        c["real_confusion"], classes,
                                                        "classifier on real test images")
        if "fake_confusion" in c:
            figures["confusion (generated)"] = _confusion_figure(
                out / "confusion_generated.png", c["fake_confusion"], classes,
                "classifier on generated images")
    return figures
