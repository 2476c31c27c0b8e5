"""What the faint-pixel view separates: real-vs-fake accuracy under views that remove one
candidate tell at a time, applied to both sets alike (issue 10's diagnosis).

    python bench/faint_views.py --model first --n 200            # validation split

Draws ``--n`` images (DPM-Solver++ 10, validation-split class proportions, the raw network
output kept), puts them through the release's output projection and scores, against the
real validation images and beside the real-vs-real floor (training images):

- ``plain`` and ``x^0.25`` (the report's faint view);
- ``x^0.25, islands < k px removed`` (generated only: is it the isolated specks?);
- ``x^0.25 above the quantum`` (pixels below the data's 1/255 zeroed in *both* sets: is it
  the sub-quantum values?);
- ``asinh at the quantum`` (softening at 1/255, as an astronomer would stretch).
Also prints islands per image and the fraction of islands under 5 px.
"""

from __future__ import annotations

import argparse

import numpy as np

from radiodiff.data.islands import island_table

QUANTUM = 1 / 255


def islands(images: np.ndarray) -> tuple[float, float]:
    """(islands per image, fraction of islands under 5 px), 8-connected positive pixels."""
    s = np.concatenate([island_table(x, connectivity=2).area for x in images[:, 0]])
    return len(s) / len(images), float(np.mean(s < 5)) if len(s) else 0.0


def drop_small(images: np.ndarray, min_px: int) -> np.ndarray:
    out = images.copy()
    for x in out[:, 0]:
        t = island_table(x, connectivity=2)
        x[np.concatenate([[min_px], t.area])[t.labels] < min_px] = 0  # background kept
    return out / out.max(axis=(-2, -1), keepdims=True)


VIEWS = {
    "plain": lambda x: x,
    "x^0.25": lambda x: np.clip(x, 0, None) ** 0.25,
    "x^0.25 above the quantum": lambda x: np.where(x >= QUANTUM, x, 0) ** 0.25,
    "asinh at the quantum": lambda x: np.arcsinh(np.clip(x, 0, None) / QUANTUM)
    / np.arcsinh(1 / QUANTUM),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="first")
    ap.add_argument("--reference", default="data/first.h5")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()

    from radiodiff.config import ProjectionConfig
    from radiodiff.data.projection import project_like_data
    from radiodiff.pipeline.generate import generate
    from radiodiff.evaluation.sets import proportional_labels, reference_set
    from radiodiff.evaluation.two_sample import real_vs_fake
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import load_release

    real, _ = reference_set(args.reference, "valid")
    train, _ = reference_set(args.reference, "train")
    rng = np.random.default_rng(0)
    real_imgs = real.images[rng.permutation(len(real.images))[:args.n]]
    floor_imgs = train.images[rng.permutation(len(train.images))[:args.n]]
    release = load_release(resolve_model(args.model))
    labels = proportional_labels(real.labels, args.n)
    raw = np.concatenate([generate(release, int((labels == c).sum()), label=name,
                                   sampler="dpmpp_2m", steps=10, seed=1000 * c,
                                   project=False).images
                          for c, name in enumerate(release.classes) if (labels == c).any()])
    proj = release.pipeline.base_projection or ProjectionConfig(floor=QUANTUM)
    gen = project_like_data(raw, proj.floor, proj.halo_px)

    def score(a, b):
        r = real_vs_fake(a, b, k=args.folds, epochs=args.epochs, seed=0)
        return f"{r['mean_accuracy']:.3f} ± {r['std_accuracy']:.3f}"

    for name, (n_isl, small) in (("real (valid)", islands(real_imgs)),
                                 ("generated", islands(gen))):
        print(f"{name}: {n_isl:.1f} islands per image, {100 * small:.1f} % under 5 px")
    print("| view | real vs real (floor) | real vs generated |\n|---|---|---|")
    for name, view in VIEWS.items():
        print(f"| {name} | {score(view(real_imgs), view(floor_imgs))} | "
              f"{score(view(real_imgs), view(gen))} |", flush=True)
    for k in (5, 9, 16):
        v = VIEWS["x^0.25"]
        print(f"| x^0.25, generated islands < {k} px removed | - | "
              f"{score(v(real_imgs), v(drop_small(gen, k)))} |", flush=True)


if __name__ == "__main__":
    main()
