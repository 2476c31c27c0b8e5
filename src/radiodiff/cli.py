"""``radiodiff`` command line: thin wrappers over library functions.

    radiodiff prepare data=first [data.negatives=abs ...]   # Hydra overrides
    radiodiff prepare data=mirabest --cfg                    # print the composed config
    radiodiff inspect data/first.h5 --out outputs/demo       # grids per class + summary
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _tqdm(desc: str):
    from tqdm.auto import tqdm

    def wrap(iterable, total):
        return tqdm(iterable, total=total, desc=desc, unit="src", dynamic_ncols=True,
                    disable=None)  # disabled automatically when not a terminal
    return wrap


def _cmd_prepare(args) -> int:
    from omegaconf import OmegaConf

    from radiodiff.config import load_config
    from radiodiff.prepare import prepare

    cfg = load_config(args.overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg.data, resolve=True), end="")
        return 0
    summary = prepare(cfg, progress=_tqdm(f"prepare {cfg.data.name}"), out=args.out)
    print(summary.format())
    return 0


def _cmd_inspect(args) -> int:
    from radiodiff.inspect import inspect_prepared

    out = Path(args.out) if args.out else Path("outputs") / "inspect" / Path(args.file).stem
    paths = inspect_prepared(args.file, out, n_per_class=args.n_per_class, seed=args.seed)
    print(paths["summary.txt"].read_text(), end="")
    print("wrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiodiff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="survey inputs -> data/<name>.h5 (Hydra overrides)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=mirabest "
                   "data.negatives=abs data.cuts.snr_min=null")
    p.add_argument("--cfg", action="store_true", help="print the composed data config and exit")
    p.add_argument("--out", default=None, help="output file (default: data.out)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("inspect", help="PNG grid per class and a summary of a prepared file",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("file", help="prepared HDF5 file, e.g. data/first.h5")
    p.add_argument("--out", default=None, help="output folder (default outputs/inspect/<name>)")
    p.add_argument("--n-per-class", type=int, default=16, help="images per class grid")
    p.add_argument("--seed", type=int, default=0, help="seed of the image selection")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from radiodiff.config import ConfigError
    from radiodiff.fits_io import InputError
    from radiodiff.prepare import PrepareError
    try:
        return args.func(args)
    except (ConfigError, PrepareError, InputError, FileNotFoundError, ValueError) as exc:
        print(f"radiodiff {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
