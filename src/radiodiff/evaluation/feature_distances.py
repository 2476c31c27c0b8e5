"""Distances between two sets of feature vectors, and nearest-neighbour distances.

Features are (N, D) arrays in the arbitrary units of an embedding (e.g. the classifier's
penultimate layer, :func:`radiodiff.evaluation.classifier.embed`; with Inception-free
radio images this is the domain replacement of the FID) or flattened pixels.

* :func:`frechet_distance`: Fréchet distance between Gaussians fitted to two sets.
* :func:`precision_recall`: improved precision and recall (Kynkäänniemi et al. 2019).
* :func:`nn_distance`: distance of each query to its nearest reference vector (used by
  :func:`radiodiff.evaluation.memorisation.memorisation`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from radiodiff.evaluation.inputs import ArrayLike, as_features, check_positive_int

__all__ = ["frechet_distance", "precision_recall", "nn_distance"]

# Pairwise distances are computed in row blocks of this many rows, so an (N, M) matrix is
# never held at once for large sets (memory ~ _CHUNK * M * 8 bytes).
_CHUNK = 1024


def frechet_distance(feat_a: ArrayLike, feat_b: ArrayLike, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017,
    eq. 6; Dowson & Landau 1982), with sample means and unbiased sample covariances. With
    classifier features this is the domain replacement of the FID.

    Numerical safeguards as in the reference FID code: if the matrix square root of
    ``S_a S_b`` is singular or not finite, ``eps * I`` is added to both covariances;
    imaginary parts from round-off are dropped (an error is raised if they are large).

    Parameters
    ----------
    feat_a, feat_b : numpy.ndarray or torch.Tensor
        (N_a, D) and (N_b, D) features, N >= 2 each.
    eps : float
        Diagonal offset used only when the product of covariances is singular.

    Returns
    -------
    float
        The distance, in squared feature units; >= 0 (clipped at 0 against round-off).
    """
    a = as_features(feat_a, "feat_a")
    b = as_features(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    for f, name in ((a, "feat_a"), (b, "feat_b")):
        if f.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 samples for a covariance, "
                             f"got {f.shape[0]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))  # (D, D)
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b

    def _sqrtm(m: np.ndarray) -> tuple[np.ndarray, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = scipy.linalg.sqrtm(m)
        singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
        return np.asarray(r), singular or not np.isfinite(r).all()

    covmean, bad = _sqrtm(s_a @ s_b)
    if bad:
        offset = eps * np.eye(s_a.shape[0])
        covmean, bad = _sqrtm((s_a + offset) @ (s_b + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("matrix square root of the covariance product is not finite "
                             "even after adding eps*I; try a larger eps")
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.trace(s_a) + np.trace(s_b)))
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag > 1e-3 * scale:
            raise ValueError(f"matrix square root has a large imaginary component "
                             f"({max_imag:.3g}); covariances are ill-conditioned")
        covmean = covmean.real
    fd = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean)
    return max(float(fd), 0.0)


def _sq_dist_blocks(a: np.ndarray, b: np.ndarray):
    """Yield (start, block) with block the (rows, N_b) squared L2 distances of a[start:]
    to b, float64, clipped at 0 (the expansion |a|^2 + |b|^2 - 2 a.b can go slightly
    negative through round-off)."""
    b2 = np.einsum("ij,ij->i", b, b)
    for s in range(0, a.shape[0], _CHUNK):
        blk = a[s:s + _CHUNK]
        d2 = np.einsum("ij,ij->i", blk, blk)[:, None] + b2[None, :] - 2.0 * blk @ b.T
        yield s, np.maximum(d2, 0.0)


def _kth_nn_radius(x: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance from each point to its k-th nearest neighbour in x, self excluded."""
    out = np.empty(x.shape[0])
    for s, d2 in _sq_dist_blocks(x, x):
        # The self-distance (0) is the smallest entry of each row, so the k-th neighbour
        # is the (k+1)-th smallest (index k); exact duplicates count as neighbours.
        out[s:s + d2.shape[0]] = np.partition(d2, k, axis=1)[:, k]
    return np.sqrt(out)


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of points inside at least one ball B(centre, radius)."""
    inside = np.zeros(points.shape[0], dtype=bool)
    r2 = radii ** 2
    for s, d2 in _sq_dist_blocks(points, centres):
        inside[s:s + d2.shape[0]] = (d2 <= r2[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real_feat: ArrayLike, fake_feat: ArrayLike,
                     k: int = 3) -> dict[str, float]:
    """Improved precision and recall of Kynkäänniemi et al. (2019, NeurIPS).

    Each set's manifold is the union of balls around its samples, each ball's radius being
    the distance to that sample's k-th nearest neighbour in the same set (Sect. 2 of the
    paper). Precision is the fraction of fake samples inside the real manifold (fidelity);
    recall is the fraction of real samples inside the fake manifold (diversity).

    Parameters
    ----------
    real_feat, fake_feat : numpy.ndarray or torch.Tensor
        (N_real, D) and (N_fake, D) features (e.g. from
        :func:`~radiodiff.evaluation.classifier.embed`), Euclidean metric.
    k : int
        Neighbourhood size; the paper uses 3. Must be smaller than both set sizes.

    Returns
    -------
    dict of str to float
        ``precision`` and ``recall``, each in [0, 1].
    """
    real = as_features(real_feat, "real_feat")
    fake = as_features(fake_feat, "fake_feat")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    check_positive_int(k, "k")
    n_min = min(real.shape[0], fake.shape[0])
    if k >= n_min:
        raise ValueError(f"k={k} must be smaller than the number of samples in each set "
                         f"(real {real.shape[0]}, fake {fake.shape[0]})")
    r_real = _kth_nn_radius(real, k)
    r_fake = _kth_nn_radius(fake, k)
    return {"precision": _coverage(fake, real, r_real),
            "recall": _coverage(real, fake, r_fake)}


def nn_distance(query: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N_query,) Euclidean distance from each query to its nearest neighbour in ref."""
    out = np.empty(query.shape[0])
    for s, d2 in _sq_dist_blocks(query, ref):
        out[s:s + d2.shape[0]] = d2.min(axis=1)
    return np.sqrt(out)
