"""Record the seeded outputs of the shipped releases that tests/diffusion/test_golden.py
checks bit for bit (issue 25: a restructure must not change what a seed draws).

    python tests/golden/record.py     # writes tests/golden/outputs.npz and cases.json

Run it only when an output is meant to change, and say why in the commit."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# name -> (release, generate() keyword arguments); every sampler setting from the release
CASES = {
    "first_refiner_islands": ("models/first", dict(n=2, label="FRII", seed=11)),
    "first_refiner_noislands": ("models/first", dict(n=2, label="Bent", seed=12,
                                                     islands=False)),
    "first_base_only": ("models/first", dict(n=2, label="FRI", seed=13, refine=False,
                                             islands=False)),
    "first_unprojected": ("models/first", dict(n=2, seed=14, refine=False, project=False)),
    "mirabest_jy": ("models/mirabest", dict(n=2, label="FRII", peak_flux=0.05,
                                            las_arcsec=60.0, seed=15)),
}


def machine() -> str:
    """What bit-identity across a change can be asked of: same torch, same CPU kernels."""
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"


def draw(release_dir: str, kwargs: dict) -> dict[str, np.ndarray]:
    from radiodiff.pipeline.generate import generate
    from radiodiff.pipeline.release import load_release, recommended_spec

    release = load_release(ROOT / release_dir)
    result = generate(release, spec=recommended_spec(release.meta), **kwargs)
    out = {"output": result.output, "images": result.images}
    if result.raw is not None:
        out["raw"] = result.raw
    return out


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def main() -> None:
    torch.set_num_threads(1)
    arrays, cases = {}, {"machine": machine(), "cases": {}}
    for name, (release_dir, kwargs) in CASES.items():
        out = draw(release_dir, kwargs)
        cases["cases"][name] = {k: sha(v) for k, v in out.items()}
        arrays[name] = out["output"].astype(np.float32)
        print(name, {k: v[:12] for k, v in cases["cases"][name].items()})
    np.savez_compressed(HERE / "outputs.npz", **arrays)
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    import argparse
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help only
    sys.exit(main())
