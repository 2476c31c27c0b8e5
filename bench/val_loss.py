"""Fixed-noise validation loss by noise level of one or more releases (EDM weighting).

    python bench/val_loss.py --data data/mirabest.h5 RELEASE [RELEASE ...]

Each release denoises the prepared file's ``valid`` split at 9 noise levels (0.005-5) with
the same seeded noise (seed 0): :func:`radiodiff.evaluation.val_loss.val_loss`. Used for
the first ``models/mirabest`` release's warm-vs-scratch comparison (git history), the EMA
choice of the shipped one and the campaign's curve (model card, docs/campaign_mirabest.md).
Prints one line per release.
"""

from __future__ import annotations

import argparse

import numpy as np

from radiodiff.evaluation.val_loss import SIGMAS, val_loss


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
