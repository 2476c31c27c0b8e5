"""Fixed-noise validation loss by noise level of one or more releases (EDM weighting).

    python bench/val_loss.py --data data/mirabest.h5 RELEASE [RELEASE ...]

Each release denoises the prepared file's ``valid`` split at 9 noise levels (0.005-5) with
the same seeded noise (seed 0); the loss is EDM's weighted MSE in the release's model
space, with each image's own conditions. Used for the warm-vs-scratch comparison and the
EMA choice of ``models/mirabest`` (model card). Prints one line per release.
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import torch

from radiodiff.pipeline.release import load_release

SIGMAS = (0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def val_loss(path: str, data: str, split: str = "valid") -> list[float]:
    """Loss at each of :data:`SIGMAS` for the release at ``path``."""
    with h5py.File(data, "r") as f:
        names = np.array([s.decode() if isinstance(s, bytes) else s for s in f["split"][:]])
        rows = np.flatnonzero(names == split)
        x_data = torch.from_numpy(f["images"][rows]).double()
        raw = {k: f[k][rows] for k in ("label", "peak_flux", "las_arcsec")}
    rel = load_release(path)
    x0 = rel.intensity.encode(x_data).float()
    sd = float(rel.denoiser.sigma_data)
    cond = {"label": torch.as_tensor(raw["label"]).long()} if rel.classes else {}
    for k in rel.scalar_conditions:
        cond[k] = torch.as_tensor(rel.transform.encode(k, raw[k])).float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    out = []
    with torch.inference_mode():
        for s in SIGMAS:
            weight = (s * s + sd * sd) / (s * sd) ** 2
            d = rel.denoiser(x0 + s * noise, torch.full((len(x0),), s), cond or None)
            out.append(float(weight * ((d - x0) ** 2).mean()))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("releases", nargs="+")
    p.add_argument("--data", required=True, help="prepared .h5 the releases were trained on")
    p.add_argument("--split", default="valid")
    a = p.parse_args(argv)
    for path in a.releases:
        loss = val_loss(path, a.data, a.split)
        print(path, "mean %.4f" % np.mean(loss),
              " ".join(f"{s:g}:{v:.3f}" for s, v in zip(SIGMAS, loss)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
