"""Real validation images above the base network alone and base + faint-end refiner, x^0.25.

    python bench/grid_refined.py --out models/first/bench/valid_grid_refined.png

Six validation images spread over the split (their classes label the columns), then the
same classes generated with seed 100 + k: DPM-Solver++ 7 without (``refine=False``) and
with the release's refiner. Shown under the x^0.25 stretch an astronomer would use.
"""

from __future__ import annotations

import argparse

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from radiodiff.pipeline.generate import generate  # noqa: E402
from radiodiff.evaluation.sets import reference_splits  # noqa: E402
from radiodiff.io.artifacts import save_figure  # noqa: E402
from radiodiff.io.release_files import resolve_model  # noqa: E402
from radiodiff.pipeline.release import load_release  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="first")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    real, *_ = reference_splits(args.reference, "valid")
    release = load_release(resolve_model(args.model))
    idx = np.linspace(0, len(real.labels) - 1, 6).astype(int)
    labels = [release.classes[int(real.labels[i])] for i in idx]
    kw = dict(label=labels, seed=100, sampler="dpmpp_2m", steps=args.steps)
    rows = [("real (valid)", real.images[idx]),
            (f"base, DPM++ {args.steps}", generate(release, len(idx), refine=False, **kw).images),
            (f"base {args.steps} + refiner", generate(release, len(idx), **kw).images)]
    fig, ax = plt.subplots(3, len(idx), figsize=(2 * len(idx), 6.4))
    for i, (name, images) in enumerate(rows):
        for j in range(len(idx)):
            ax[i, j].imshow(np.asarray(images[j]).squeeze() ** 0.25, cmap="inferno",
                            vmin=0, vmax=1)
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
        ax[i, 0].set_ylabel(name)
    for j, name in enumerate(labels):
        ax[0, j].set_title(name)
    fig.suptitle("x^0.25 stretch")
    fig.tight_layout()
    save_figure(fig, args.out, dpi=70)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
