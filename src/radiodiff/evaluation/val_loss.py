"""Fixed-noise validation loss by noise level of a release (EDM weighting, EDM Eq. 8).

Each release denoises the prepared file's split at :data:`SIGMAS` with the same seeded
noise (seed 0); the loss is EDM's weighted MSE in the release's model space, with each
image's own conditions. Used for the first ``models/mirabest`` release's warm-vs-scratch
comparison (git history), the EMA choice of the shipped one (model card) and the capacity
ablation (``bench/val_loss.py``, ``bench/ablation_capacity.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radiodiff.data.prepared import read_prepared
from radiodiff.pipeline.release import load_release

__all__ = ["SIGMAS", "val_loss"]

SIGMAS = (0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def val_loss(path: str | Path, data: str | Path, split: str = "valid") -> list[float]:
    """Loss at each of :data:`SIGMAS` of the release at ``path`` on ``split`` of the
    prepared file ``data`` (every row of the split, flagged ones included)."""
    ps = read_prepared(data)
    rows = np.flatnonzero(np.asarray(ps.columns["split"]) == split)
    if not len(rows):
        raise ValueError(f"{data}: no rows in split {split!r}")
    x_data = torch.from_numpy(ps.images[rows]).double()
    rel = load_release(path)
    x0 = rel.intensity.encode(x_data).float()
    sd = float(rel.denoiser.sigma_data)
    cond = {"label": torch.as_tensor(ps.columns["label"][rows]).long()} if rel.classes else {}
    for k in rel.scalar_conditions:
        cond[k] = torch.as_tensor(rel.transform.encode(k, ps.columns[k][rows])).float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    out = []
    with torch.inference_mode():
        for s in SIGMAS:
            weight = (s * s + sd * sd) / (s * sd) ** 2
            d = rel.denoiser(x0 + s * noise, torch.full((len(x0),), s), cond or None)
            out.append(float(weight * ((d - x0) ** 2).mean()))
    return out
