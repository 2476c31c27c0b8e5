"""Fit the FIRST noise-island model (:mod:`radiodiff.data.islands`) to the training split.

    python bench/fit_islands.py                    # prints the table and the best fit
    python bench/fit_islands.py --fields 400 --out bench/results/fit_islands.json

The FIRST images (Griese et al. 2023) are cut at about 3 rms, rescaled to the peak and
stored as 8-bit on the 1.8" grid. On that native grid (the central crop ``radiodiff
prepare`` keeps) the script counts, per training image, the small islands (at most
``--max-area`` pixels) apart from the brightest component: the noise peaks above the cut.
It then draws ``--fields`` noise-only fields from every model of a grid (cut ``k`` ~
N(k_mean, k_std²) rms; rms / peak ``r`` log-normal, at most ``r_max`` = 1/5, a source at
least 5 rms bright as the survey catalogue requires), with common random numbers across
the grid, and prints the models whose per-image island counts (mean, median, 10 % and
90 % quantiles) and island peaks (fraction at one quantum, mean and 90 % quantile, in
8-bit levels) come closest to the real ones
(loss: the sum of squared differences in units of the real values' bootstrap standard
errors). The best model's fields go into ``conf/data/first.yaml`` (``projection_islands``).
Only the training split is read. The fit stays on the native grid: the resampling to 3.6″
and the output floor that follow are not part of it (about a quarter of the drawn islands,
single native pixels of one quantum, end just under the FIRST floor after resampling).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from radiodiff.config import load_config
from radiodiff.data.first import MEMBER, first_archive
from radiodiff.data.islands import FWHM_TO_SIGMA, IslandModel, native_levels

R_MAX = 0.2  # the catalogue's 5-rms detection limit: no source fainter than 5 rms
GRID = {"k_mean": [3.0, 3.1, 3.15, 3.2, 3.3], "k_std": [0.0, 0.15, 0.3],
        "ln_r_mean": [-5.0, -4.75, -4.5, -4.25, -4.0], "ln_r_std": [0.8, 1.2, 1.6]}


def _small_islands(levels: np.ndarray, max_area: int, skip_main: bool) -> tuple[int, list]:
    """Number of islands of at most ``max_area`` pixels (apart from the one with the most
    flux when ``skip_main``) and their peak levels."""
    lab, m = ndimage.label(levels > 0)
    if m == 0:
        return 0, []
    idx = np.arange(1, m + 1)
    area = ndimage.sum(np.ones_like(levels), lab, idx)
    peak = ndimage.maximum(levels, lab, idx)
    keep = area <= max_area
    if skip_main:
        keep &= idx != idx[np.argmax(ndimage.sum(levels, lab, idx))]
    return int(keep.sum()), list(peak[keep])


def _summary(counts, peaks) -> np.ndarray:
    c, p = np.asarray(counts, float), np.asarray(peaks, float)
    return np.array([c.mean(), np.median(c), np.quantile(c, 0.1), np.quantile(c, 0.9),
                     (p == 1).mean() if len(p) else 0.0, p.mean() if len(p) else 0.0,
                     np.quantile(p, 0.9) if len(p) else 0.0])


NAMES = ("mean", "median", "p10", "p90", "one-quantum fraction", "mean peak level",
         "p90 peak level")


def real_islands(crop_px: int, max_area: int) -> tuple[list, list]:
    """Per training image: small-island count and peak levels (native grid, 8-bit)."""
    with zipfile.ZipFile(first_archive()) as zf:
        blob = zf.read(MEMBER)
    counts, peaks = [], []
    with h5py_file(blob) as f:
        for key in f:
            g = f[key]
            split = g["Split_literature"][()]
            if (split.decode() if isinstance(split, bytes) else str(split)) != "train":
                continue
            img = np.asarray(g["Img"][()], np.float64)
            c = (img.shape[0] - crop_px) // 2
            x = img[c:c + crop_px, c:c + crop_px]
            levels = np.round(x / img.max() * 255) if img.max() > 0 else x
            n, p = _small_islands(levels, max_area, skip_main=True)
            counts.append(n)
            peaks += p
    return counts, peaks


def h5py_file(blob: bytes):
    import h5py
    return h5py.File(io.BytesIO(blob), "r")


def model_islands(model: IslandModel, w: np.ndarray, z_r: np.ndarray, z_k: np.ndarray,
                  max_area: int) -> tuple[list, list]:
    """Island counts and peak levels of the noise-only fields ``w`` (standardised) under
    ``model``, with the per-field normal deviates ``z_r``, ``z_k`` (common numbers)."""
    counts, peaks = [], []
    for wi, zr, zk in zip(w, z_r, z_k):
        levels = native_levels(model, wi, zr, zk)  # the shipped rule, on the native grid
        n, p = _small_islands(levels, max_area, skip_main=False)
        counts.append(n)
        peaks += p
    return counts, peaks


def bootstrap_se(counts, peaks, n_boot: int, rng) -> np.ndarray:
    """Standard errors of :func:`_summary` over images (peaks resampled with their image)."""
    per_image = []
    i = 0
    for c in counts:
        per_image.append(peaks[i:i + c])
        i += c
    counts = np.asarray(counts)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(counts), len(counts))
        draws.append(_summary(counts[pick], [v for j in pick for v in per_image[j]]))
    return np.maximum(np.std(draws, axis=0), 1e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", type=int, default=400, help="noise fields per model")
    ap.add_argument("--max-area", type=int, default=5, help="native pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--out", default=None, help="JSON with the real numbers and the grid")
    args = ap.parse_args()

    d = load_config(["data=first"]).data
    pix = float(d.pixel_scale_arcsec)
    crop = int(round(float(d.crop_arcsec) / pix))
    factor = crop // int(d.image_size)
    beam_px = float(d.beam_arcsec[0]) / pix
    counts, peaks = real_islands(crop, args.max_area)
    real = _summary(counts, peaks)
    rng = np.random.default_rng(args.seed)
    se = bootstrap_se(counts, peaks, 200, rng)
    print(f"real train ({len(counts)} images, islands of <= {args.max_area} native px): "
          + ", ".join(f"{k} {v:.3g} ± {s:.2g}" for k, v, s in zip(NAMES, real, se)))

    # unit-rms beam noise per field, drawn at once (islands.beam_noise's rule, vectorised)
    w = ndimage.gaussian_filter(rng.standard_normal((args.fields, crop, crop)),
                                (0, beam_px * FWHM_TO_SIGMA, beam_px * FWHM_TO_SIGMA),
                                mode="wrap")
    w /= w.std(axis=(1, 2), keepdims=True)
    z_r, z_k = rng.standard_normal(args.fields), rng.standard_normal(args.fields)
    rows = []
    for values in itertools.product(*GRID.values()):
        model = IslandModel(**dict(zip(GRID, values)), r_max=R_MAX, beam_fwhm_px=beam_px,
                            factor=factor)
        s = _summary(*model_islands(model, w, z_r, z_k, args.max_area))
        rows.append((float(np.sum(((s - real) / se) ** 2)), model, s))
    rows.sort(key=lambda r: r[0])
    print("| loss | k_mean | k_std | ln_r_mean | ln_r_std | " + " | ".join(NAMES) + " |")
    print("|---" * (5 + len(NAMES)) + "|")
    print("| real | | | | | " + " | ".join(f"{v:.3g}" for v in real) + " |")
    for loss, m, s in rows[:args.top]:
        print(f"| {loss:.1f} | {m.k_mean:g} | {m.k_std:g} | {m.ln_r_mean:g} | {m.ln_r_std:g} | "
              + " | ".join(f"{v:.3g}" for v in s) + " |")
    best = rows[0][1].to_dict()
    print("best:", json.dumps(best))
    if args.out:
        Path(args.out).write_text(json.dumps({
            "real": dict(zip(NAMES, real.tolist())), "real_se": dict(zip(NAMES, se.tolist())),
            "n_images": len(counts), "fields": args.fields, "max_area": args.max_area,
            "seed": args.seed, "best": best,
            "grid": [{"loss": l, **m.to_dict(), **dict(zip(NAMES, s.tolist()))}
                     for l, m, s in rows]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
