"""Distances between two 1-D samples of a statistic, and their noise floor.

Generated and real images are compared through 1-D samples of per-image statistics (from
:mod:`radiodiff.evaluation.moments` or :mod:`radiodiff.evaluation.segmentation`). A distance
alone says little: two finite samples of the *same* distribution are never at distance
0. So every distance is reported next to its noise floor, the same distance between two
disjoint random subsets of the real sample (:func:`noise_floor`), and :func:`compare` gives
their ratio. The bin-summed CDF distance follows Vičánek Martínez et al. 2024
(A&A 691, A360).

All functions accept torch tensors or array-likes; non-finite values (NaN, e.g. shape
statistics of empty images, and +-inf) are dropped before any distance is computed.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import ks_2samp

from radiodiff.evaluation.collect import _finite_1d, histogram_distance
from radiodiff.seeds import matched_rng

__all__ = [
    "wasserstein1", "ks_statistic", "binned_relative_difference", "cdf_distance",
    "noise_floor", "compare", "w1_ratios", "w1_summary",
]


def wasserstein1(a: Any, b: Any) -> float:
    """Wasserstein-1 distance ``integral |F_a(t) - F_b(t)| dt`` of two 1-D samples.

    Same as :func:`radiodiff.evaluation.collect.histogram_distance` (exact, no binning).

    Parameters
    ----------
    a, b : torch.Tensor or array-like
        1-D samples of one quantity; lengths may differ. Non-finite values are dropped.

    Returns
    -------
    float
        The distance, in the units of the quantity; NaN if either has no finite value.
    """
    return histogram_distance(a, b)


def ks_statistic(a: Any, b: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``, two-sided, 'auto').

    Parameters
    ----------
    a, b : torch.Tensor or array-like
        1-D samples; non-finite values are dropped.

    Returns
    -------
    tuple of float
        ``(statistic, pvalue)``: ``sup_t |F_a(t) - F_b(t)|`` (dimensionless, in [0, 1])
        and the p-value of the null hypothesis that both come from one distribution.
        ``(nan, nan)`` if either sample has no finite value.
    """
    a_, b_ = _finite_1d(a, "a"), _finite_1d(b, "b")
    if a_.size == 0 or b_.size == 0:
        return math.nan, math.nan
    res = ks_2samp(a_, b_)
    return float(res.statistic), float(res.pvalue)


def _edges(bins: int | Sequence[float], a: np.ndarray, b: np.ndarray,
           min_edges: int = 2) -> np.ndarray:
    """Bin edges: given edges, or ``bins + 1`` edges spanning the pooled finite range."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        pooled = np.concatenate([a, b])
        if pooled.size == 0:
            raise ValueError("cannot choose bin edges: no finite value in either sample")
        return np.linspace(pooled.min(), pooled.max(), int(bins) + 1)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < min_edges:
        raise ValueError(f"bins must be an int or at least {min_edges} edge(s), got {bins!r}")
    if not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        raise ValueError(f"bin edges must be finite and strictly increasing, got {bins!r}")
    return edges


def binned_relative_difference(
    a: Any, b: Any, bins: int | Sequence[float], normalize: bool = True
) -> dict[str, Any]:
    """Per-bin relative difference ``(b - a) / a`` of two histograms, with Poisson errors.

    Counts are ``numpy.histogram`` counts (bins ``[lo, hi)``, the last closed); values
    outside the edges are not counted. With ``normalize`` each histogram is divided by
    its number of finite values ``N`` (so samples of different size compare as
    frequencies; values outside the edges still count in ``N``), i.e.
    ``r = (n_b / N_b) / (n_a / N_a) - 1``. Each count has Poisson error ``sqrt(n)``,
    propagated to first order with ``N`` held fixed::

        sigma_r = (n_b / n_a) (N_a / N_b) sqrt(1 / n_a + 1 / n_b)
                = (N_a / N_b) sqrt(n_b / n_a^2 + n_b^2 / n_a^3)

    (the second form is used, so an empty ``b`` bin has ``r = -1``, ``sigma_r = 0``).
    Without ``normalize``, ``N_a / N_b`` is replaced by 1. Bins with ``n_a = 0`` give NaN.

    Parameters
    ----------
    a, b : torch.Tensor or array-like
        1-D samples (``a`` the reference, e.g. real; ``b`` e.g. generated).
    bins : int or sequence of float
        Bin edges, or a number of equal bins spanning the pooled finite range.
    normalize : bool
        Compare frequencies (True, default) rather than raw counts.

    Returns
    -------
    dict
        ``edges`` (K+1,), ``counts_a`` and ``counts_b`` (K,) int64, ``rel_diff`` and
        ``rel_err`` (K,) float64 (dimensionless), ``n_a`` and ``n_b`` (finite values, int).
    """
    a_, b_ = _finite_1d(a, "a"), _finite_1d(b, "b")
    edges = _edges(bins, a_, b_)
    na = np.histogram(a_, bins=edges)[0]
    nb = np.histogram(b_, bins=edges)[0]
    scale = 1.0
    if normalize:
        scale = a_.size / b_.size if b_.size else math.nan
    na_f, nb_f = na.astype(np.float64), nb.astype(np.float64)
    rel = np.full(na.shape, math.nan)
    err = np.full(na.shape, math.nan)
    ok = na > 0
    rel[ok] = scale * nb_f[ok] / na_f[ok] - 1.0
    err[ok] = scale * np.sqrt(nb_f[ok] / na_f[ok] ** 2 + nb_f[ok] ** 2 / na_f[ok] ** 3)
    return {"edges": edges, "counts_a": na, "counts_b": nb, "rel_diff": rel,
            "rel_err": err, "n_a": int(a_.size), "n_b": int(b_.size)}


def cdf_distance(a: Any, b: Any, bins: int | Sequence[float]) -> float:
    """Bin-summed CDF distance (Vičánek Martínez et al. 2024): ``sum_k |F_a(t_k) - F_b(t_k)|``.

    ``F`` is the empirical CDF normalised to [0, 1], ``F(t) = #{x <= t} / N`` over the
    finite values, and ``t_k`` runs over all K+1 given bin edges. The distance is
    dimensionless and lies in [0, K+1]; it is the number of edges lying between two
    samples with disjoint supports. Unlike W1 it does not depend on the units of the
    quantity, only on the edges (which must be the same for every distance that is
    compared, e.g. a distance and its noise floor).

    Parameters
    ----------
    a, b : torch.Tensor or array-like
        1-D samples; non-finite values are dropped.
    bins : int or sequence of float
        Edges ``t_k`` (strictly increasing; one is allowed), or a number of equal bins
        spanning the pooled finite range (edges then differ between pairs of samples).

    Returns
    -------
    float
        The distance; NaN if either sample has no finite value.
    """
    a_, b_ = _finite_1d(a, "a"), _finite_1d(b, "b")
    if a_.size == 0 or b_.size == 0:
        return math.nan
    edges = _edges(bins, a_, b_, min_edges=1)
    cdf_a = np.searchsorted(np.sort(a_), edges, side="right") / a_.size
    cdf_b = np.searchsorted(np.sort(b_), edges, side="right") / b_.size
    return float(np.abs(cdf_a - cdf_b).sum())


def noise_floor(
    real: Any, metric_fn: Callable[[Any, Any], float], n: int, n_repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Distribution of ``metric_fn(x, y)`` over disjoint random subsets of ``real``.

    For each repeat, one random permutation of ``real`` (along axis 0) is drawn from
    ``numpy.random.default_rng(seed)``; ``x`` is its first ``n`` elements and ``y`` the next
    ``n``, so the two never share an element. Same seed, same subsets.

    Parameters
    ----------
    real : torch.Tensor or array-like
        Reference sample, indexed along axis 0 (a 1-D statistic, or e.g. images).
    metric_fn : callable
        ``metric_fn(x, y) -> float``, e.g. :func:`wasserstein1`.
    n : int
        Size of each subset; ``2 n <= len(real)``.
    n_repeats : int
        Number of subset pairs (>= 1). Default 5.
    seed : int
        Seed of the subset draws. Default 0.

    Returns
    -------
    dict
        ``mean`` and ``std`` (population std, ddof=0) of the metric over the repeats
        (NaN values ignored; NaN if all are NaN), and ``values``, the list of all repeats.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n}")
    if isinstance(n_repeats, bool) or int(n_repeats) != n_repeats or n_repeats < 1:
        raise ValueError(f"n_repeats must be an integer >= 1, got {n_repeats}")
    if not isinstance(real, torch.Tensor):
        real = np.asarray(real)
    total = len(real)
    if 2 * n > total:
        raise ValueError(f"need 2 n <= len(real) for two disjoint subsets, got n = {n} and "
                         f"len(real) = {total}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_repeats)):
        perm = rng.permutation(total)
        if isinstance(real, torch.Tensor):
            perm = torch.as_tensor(perm, device=real.device)
        values.append(float(metric_fn(real[perm[:n]], real[perm[n:2 * n]])))
    arr = np.asarray(values)
    finite = arr[~np.isnan(arr)]
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std()) if finite.size else math.nan
    return {"mean": mean, "std": std, "values": values}


def _json_float(x: float) -> float | None:
    """A finite float as itself, NaN/inf as None (strict JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _ks_only(a: Any, b: Any) -> float:
    return ks_statistic(a, b)[0]


def _units(x: Any, name: str) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The units subsets are drawn from and the pooling of a subset into one 1-D sample: a
    1-D statistic's finite values (pooling: none), or a 2-D one's rows with a finite value
    (pooling: their finite values, flattened)."""
    arr = x.detach().cpu().to(torch.float64).numpy() if isinstance(x, torch.Tensor) else \
        np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        return _finite_1d(arr, name), lambda a: a
    finite = np.isfinite(arr)
    return arr[finite.any(axis=1)], lambda a: a[np.isfinite(a)]


def _quantile_edges(real: np.ndarray, n_bins: int) -> np.ndarray:
    """Distinct quantiles ``k / n_bins`` (k = 0..n_bins) of ``real``."""
    return np.unique(np.quantile(real, np.linspace(0.0, 1.0, n_bins + 1)))


def _matched(r: np.ndarray, f: np.ndarray, fn: Callable[[Any, Any], float], n: int,
             n_repeats: int, seed: int) -> float:
    """Mean of ``fn`` between random size-``n`` subsets of ``r`` and of ``f``."""
    rng = matched_rng(seed)
    return float(np.mean([fn(rng.permutation(r)[:n], rng.permutation(f)[:n])
                          for _ in range(n_repeats)]))


def compare(
    real: Mapping[str, Any], fake: Mapping[str, Any], n_repeats: int = 5, seed: int = 0,
    cdf_bins: int = 20,
) -> dict[str, dict[str, Any]]:
    """W1, KS and CDF distances of real vs fake statistics, each with its noise floor.

    For every key of ``real`` also in ``fake`` (in ``real``'s order; other keys are
    ignored), non-finite values are dropped and then:

    * ``distance``: the metric between the full finite real and fake samples;
    * ``floor_mean``, ``floor_std``: :func:`noise_floor` of the metric on disjoint real
      subsets of size ``n_floor = min(n_fake, n_real // 2)`` (same ``seed`` for every key
      and metric);
    * ``matched``: the mean of the metric between random real and fake subsets of the same
      size ``n_floor`` (``n_repeats`` draws), so it carries the same sampling noise as the
      floor;
    * ``ratio = matched / floor_mean``: about 1 when fake and real are indistinguishable
      at this sample size, well above 1 when they differ.

    The CDF distance uses fixed edges, the distinct ``k / cdf_bins`` quantiles of the full
    real sample, for the distance and its floor alike (so it lies in [0, n_edges]).


    A 2-D value (one row per image, NaN-padded: e.g. each image's bright pixels) is a
    pooled statistic: subsets are drawn by image (rows), the metric compares the pooled
    finite values of the drawn rows, and ``n_real`` / ``n_fake`` / ``n_floor`` count images,
    so the floor holds the scatter between images as the real-vs-fake distance does.

    Parameters
    ----------
    real, fake : mapping of str to 1-D (or 2-D, pooled) torch.Tensor or array-like
        Per-image statistics, e.g. from :class:`~radiodiff.evaluation.collect.StatsCollector`
        or :func:`~radiodiff.evaluation.segmentation.segment_stats`.
    n_repeats : int
        Subset pairs per noise floor. Default 5.
    seed : int
        Seed of the subset draws. Default 0.
    cdf_bins : int
        Number of quantile bins for the CDF distance (>= 1). Default 20.

    Returns
    -------
    dict
        ``{key: {"n_real", "n_fake", "n_floor": int, "wasserstein1": {...},
        "ks": {...}, "cdf": {...}}}``; each metric dict holds ``distance``, ``floor_mean``,
        ``floor_std``, ``ratio`` (``ks`` also ``pvalue``, ``cdf`` also ``n_edges``). All
        numbers are Python floats or ints; NaN and inf become None (e.g. every value of a
        key whose ``n_floor`` is 0, or a ratio with a zero floor), so the result is
        strict-JSON serialisable.
    """
    if isinstance(cdf_bins, bool) or int(cdf_bins) != cdf_bins or cdf_bins < 1:
        raise ValueError(f"cdf_bins must be an integer >= 1, got {cdf_bins}")
    out: dict[str, dict[str, Any]] = {}
    for key in real:
        if key not in fake:
            continue
        r, pool = _units(real[key], f"real[{key!r}]")
        f, _ = _units(fake[key], f"fake[{key!r}]")
        n_floor = min(len(f), len(r) // 2)
        entry: dict[str, Any] = {"n_real": int(len(r)), "n_fake": int(len(f)),
                                 "n_floor": int(n_floor)}
        edges = _quantile_edges(pool(r), int(cdf_bins)) if len(r) else None
        metrics: dict[str, Callable[[Any, Any], float]] = {
            name: (lambda a, b, fn=fn: fn(pool(a), pool(b))) for name, fn in (
                ("wasserstein1", wasserstein1), ("ks", _ks_only),
                ("cdf", functools.partial(cdf_distance, bins=edges)))}
        for name, fn in metrics.items():
            if n_floor >= 1:
                distance = fn(r, f)
                matched = _matched(r, f, fn, n_floor, n_repeats, seed)
                floor = noise_floor(r, fn, n_floor, n_repeats=n_repeats, seed=seed)
            else:
                distance = matched = math.nan
                floor = {"mean": math.nan, "std": math.nan}
            ratio = (matched / floor["mean"]
                     if math.isfinite(matched) and floor["mean"] and
                     math.isfinite(floor["mean"]) else math.nan)
            res = {"distance": _json_float(distance), "matched": _json_float(matched),
                   "floor_mean": _json_float(floor["mean"]),
                   "floor_std": _json_float(floor["std"]), "ratio": _json_float(ratio)}
            if name == "ks":  # p-value of the full real-vs-fake test
                res["pvalue"] = _json_float(ks_statistic(pool(r), pool(f))[1] if n_floor >= 1
                                            else math.nan)
            if name == "cdf":
                res["n_edges"] = 0 if edges is None else int(edges.size)
            entry[name] = res
        out[key] = entry
    return out


def w1_ratios(distances: dict) -> dict[str, float]:
    """Wasserstein-1 / noise-floor ratio per statistic of a :func:`compare` result.

    A statistic the generated set lacks (no finite value) counts as ``inf``, so a failure
    is never hidden. Nor is one whose real-vs-real floor is zero (constant in the real data,
    e.g. the peak of per-image-scaled images, always 1): as in
    :func:`radiodiff.evaluation.morphology.ks_ratios`, a generated set that differs from it
    in more than one image of ``n_floor`` (its matched KS distance) counts as ``inf``, one
    that does not as 1 (at its floor).
    """
    out = {}
    for key, e in distances.items():
        w, ks = e["wasserstein1"], e.get("ks") or {}
        if w["ratio"] is not None:
            out[key] = float(w["ratio"])
        elif e["n_real"] >= 2 and e["n_fake"] == 0:
            out[key] = math.inf
        elif w.get("floor_mean") == 0 and ks.get("matched") is not None and e["n_floor"] >= 1:
            out[key] = math.inf if ks["matched"] > 1.0 / e["n_floor"] else 1.0
    return out


def w1_summary(ratios: dict[str, float], limit: float = 3.0) -> dict[str, Any]:
    """Median, worst-first order and count within ``limit`` of :func:`w1_ratios` output."""
    values = list(ratios.values())
    return {"median": float(np.median(values)), "max": float(np.max(values)),
            "worst": sorted(ratios, key=ratios.get, reverse=True),
            "within": int(sum(r <= limit for r in values)), "n": len(values)}
