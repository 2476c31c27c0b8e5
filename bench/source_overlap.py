"""Sources two prepared sets share, split by split (radiodiff.data.overlap).

    python bench/source_overlap.py data/first.h5 data/mirabest.h5 [--radius 10 30 60]

Prints, for each split of the first set, its clean rows and how many of them have a source of
the second set within the radius, by the second set's split (a Markdown table), and the same
the other way round. A warm start from a model trained on one set must not reach sources of the
other set's validation or test split through its training split (docs/data.md, "Shared
sources").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radiodiff.data.overlap import shared_counts


def table(a: str, b: str, radius: float) -> list[str]:
    counts = shared_counts(a, b, radius)
    cols = [k for k in next(iter(counts.values()), {}) if k not in ("rows", "shared")]
    lines = [f"| {Path(a).name} split | rows | within {radius:g}″ of {Path(b).name} | "
             + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for split, e in counts.items():
        lines.append(f"| {split} | {e['rows']} | {e['shared']} | "
                     + " | ".join(str(e[c]) for c in cols) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="prepared .h5")
    p.add_argument("b", help="prepared .h5")
    p.add_argument("--radius", type=float, nargs="+", default=[30.0],
                   help="match radius, arcsec (several: one pair of tables each)")
    args = p.parse_args(argv)
    try:
        for radius in args.radius:
            for x, y in ((args.a, args.b), (args.b, args.a)):
                print("\n".join(table(x, y, radius)), end="\n\n")
    except (OSError, ValueError) as exc:  # a missing, foreign or position-less file
        print(f"source_overlap: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
