"""``radiodiff`` command line: thin wrappers over library functions.

    radiodiff prepare data=first [data.negatives=abs ...]   # Hydra overrides
    radiodiff prepare data=mirabest --cfg                    # print the composed config
    radiodiff inspect data/first.h5 --out outputs/demo       # grids per class + summary
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path

from radiodiff.progress import progress_bar

__all__ = ["main", "error_line", "interrupted_line"]


# Where the base setting of _spec comes from, as its printed line says.
_RECOMMENDED = "the model's recommended setting"
_NONE_RECORDED = "the package default: the release records no recommended sampler"
_CHECKPOINT = "the package default: a checkpoint records no recommended sampler"
# SamplerSpec.build keyword -> the option that sets it (_solver_args), in the printed order
_SPEC_OPTIONS = dict(sampler="sampler", steps="steps", guidance="guidance",
                     sigma_min="sigma-min", sigma_max="sigma-max", rho="rho",
                     S_churn="churn")


def _sampler_given(args) -> dict:
    """The sampler options given on the command line, as ``SamplerSpec.build`` keywords."""
    return {k: v for k, v in dict(
        sampler=args.sampler, steps=args.steps, guidance=args.guidance,
        sigma_min=args.sigma_min, sigma_max=args.sigma_max, rho=args.rho,
        S_churn=args.churn).items() if v is not None}


def _spec(args, base, source: str):
    """The sampler of ``sample``, ``demo``, ``evaluate`` and ``recommend``: ``base`` (what
    ``source`` says it is: :func:`_model_spec`, :func:`_release_spec`) with the options
    given on the command line replaced; printed in one line saying what came from where."""
    from radiodiff.diffusion.sampling import SamplerSpec
    given = _sampler_given(args)
    spec = SamplerSpec.build(base, **given)
    names = [option for key, option in _SPEC_OPTIONS.items() if key in given]
    if not names:
        how = source
    elif len(names) == len(_SPEC_OPTIONS):
        how = "as given"
    else:
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        how = f"{listed} given; the rest {source}"
    print(f"sampler: {spec.name}, {spec.steps} steps, guidance {spec.guidance:g} ({how})")
    return spec


def _release_spec(release):
    """A loaded release's recommended sampler and where it comes from (for :func:`_spec`)."""
    return release.sampler, (_RECOMMENDED if release.meta.get("sampler") is not None
                             else _NONE_RECORDED)


def _model_spec(model):
    """The recommended sampler of a model (release folder, shipped name or ``.ckpt``;
    None: the built-in model) and where it comes from (for :func:`_spec`)."""
    import json

    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.io.release_files import META_FILE, resolve_model
    from radiodiff.pipeline.release import recommended_spec
    path = resolve_model(model)
    if path.is_file():  # a training checkpoint
        return SamplerSpec(), _CHECKPOINT
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError):
        meta = None  # loading the release reports it, in its own words
    if not isinstance(meta, dict) or meta.get("sampler") is None:
        return SamplerSpec(), _NONE_RECORDED
    return recommended_spec(meta, path), _RECOMMENDED


def _cmd_prepare(args) -> int:
    from omegaconf import OmegaConf

    from radiodiff.config import load_config
    from radiodiff.data.prepare import prepare

    cfg = load_config(args.overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg.data, resolve=True), end="")
        return 0
    from radiodiff.io.artifacts import check_output_file
    check_output_file(args.out or cfg.data.out, "prepared HDF5 file", args.overwrite,
                      magic=_HDF5_MAGIC)
    summary = prepare(cfg, progress=progress_bar(f"prepare {cfg.data.name}", "src"),
                      out=args.out)
    print(summary.format())
    return 0


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # what makes an existing prepare target "its own kind"


def _cmd_inspect(args) -> int:
    from radiodiff.data.summary import inspect_prepared

    out = Path(args.out) if args.out else Path("outputs") / "inspect" / Path(args.file).stem
    paths = inspect_prepared(args.file, out, n_per_class=args.n_per_class, seed=args.seed,
                             overwrite=args.overwrite)
    print(paths["summary.txt"].read_text(), end="")
    print("wrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return 0


def _cmd_sample(args) -> int:
    from radiodiff.pipeline.generate import generate
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import load_release
    from radiodiff.io.artifacts import check_output
    from radiodiff.io.samples import samples_nbytes, save_samples

    if (args.ra is None) != (args.dec is None):
        raise ValueError("give both --ra and --dec (the image centre, deg) or neither")
    if args.dec is not None and not -90.0 <= args.dec <= 90.0:
        raise ValueError(f"--dec must be in [-90, 90] deg, got {args.dec}")
    if args.ra is not None:
        if not math.isfinite(args.ra):
            raise ValueError(f"--ra must be a finite angle in deg, got {args.ra}")
        args.ra %= 360.0  # -30 is 330, as the sky map's centre
    release = load_release(resolve_model(args.model))
    out = Path(args.out) if args.out else Path("outputs") / "samples" / release.path.name
    # before the compute: a target we must not replace, cannot write or cannot fill
    check_output(out, "samples", args.overwrite, samples_nbytes(args.n, release.image_size))
    result = generate(release, args.n, label=args.label, peak_flux=args.peak_flux,
                      las_arcsec=args.las, spec=_spec(args, *_release_spec(release)),
                      seed=args.seed,
                      conditions=args.conditions, refine=False if args.no_refine else None,
                      islands=not args.no_islands, batch_size=args.batch_size,
                      batch_invariant=not args.batched,
                      allow_extrapolation=args.allow_extrapolation,
                      progress=progress_bar("sampled", "images"))
    paths = save_samples(out, release, result, ra=args.ra, dec=args.dec,
                         overwrite=args.overwrite)
    refined = " with the faint-end refiner" if result.settings.get("refine") else ""
    print(f"{len(result)} samples ({result.unit}, {int(result.nfe[0])} network evaluations "
          f"each{refined}) -> {out}/ ({len(paths['fits'])} FITS, samples.h5, preview.png)")
    if result.settings["conditions"] == "draw":  # "given": every condition was given
        print("conditions not given were drawn from the model's training rows "
              "(train_conditions.csv; --conditions null leaves them unset)")
    return 0


def _cmd_demo(args) -> int:
    from radiodiff.evaluation.demo import run_demo

    res = run_demo(args.reference, args.out, model=args.model, n_per_class=args.n_per_class,
                   spec=_spec(args, *_model_spec(args.model)), seed=args.seed,
                   batch_size=args.batch_size,
                   progress=progress_bar("sampled", "images"), overwrite=args.overwrite)
    print(res["summary"], end="")
    print("wrote:\n" + "\n".join(f"  {p}" for p in res["paths"].values()))
    return 0


def _cmd_export(args) -> int:
    from radiodiff.pipeline.checkpoint import FROM_RUN, export_checkpoint

    out = export_checkpoint(args.ckpt, args.out, ema_halflife_kimg=args.ema_halflife,
                            overwrite=args.overwrite, data=args.data,
                            projection_floor=_projection_floor(args.projection_floor),
                            projection_islands=_projection_islands(args.projection_islands),
                            projection_halo=FROM_RUN if args.projection_halo is None
                            else args.projection_halo,
                            fresh=args.fresh)
    print(f"release written to {out}")
    return 0


def _projection_floor(text: str):
    """``--projection-floor``: "run", "data", "none" or a number (the floor rule:
    :func:`radiodiff.data.projection.check_floor`)."""
    from radiodiff.data.projection import check_floor
    if text == "run":
        return text
    try:
        value = None if text == "none" else text if text == "data" else float(text)
    except ValueError:
        value = text
    return check_floor(value, "--projection-floor", data_ok=True)


def _projection_islands(text: str):
    """``--projection-islands``: "run", "none" or a JSON file of the island model's fields
    (or with them under ``best``, as ``radiodiff fit-islands --out`` writes)."""
    import json

    from radiodiff.data.projection import islands_from
    from radiodiff.pipeline.checkpoint import FROM_RUN
    if text in ("run", "none"):
        return FROM_RUN if text == "run" else None
    try:
        d = json.loads(Path(text).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--projection-islands {text}: not a readable JSON file "
                         f"({' '.join(str(exc).split())[:120]})") from None
    d = d.get("best", d) if isinstance(d, dict) else d
    return islands_from(d, f"--projection-islands {text}").to_dict()


def _cmd_fit_islands(args) -> int:
    import json

    from radiodiff.data.island_fit import FitSettings, fit_first_islands
    from radiodiff.io.artifacts import atomic_text, check_output_file

    settings = FitSettings(fields=args.fields, max_area=args.max_area, seed=args.seed)
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    if args.out:  # before the compute: a target we must not replace or cannot write
        check_output_file(args.out, "island fit", args.overwrite)
    fit = fit_first_islands(settings)
    print(fit.real_line())
    print(fit.table(args.top))
    print("best:", json.dumps(fit.best.to_dict()))
    if args.out:
        atomic_text(args.out, json.dumps(fit.to_dict(), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


def _cmd_attach_refiner(args) -> int:
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import attach_refiner

    out = attach_refiner(resolve_model(args.base), resolve_model(args.refiner), args.out,
                         sigma=args.sigma, steps=args.steps, rho=args.rho,
                         overwrite=args.overwrite)
    print(f"release with its faint-end refiner (sigma {args.sigma:g}, {args.steps} steps, "
          f"rho {args.rho:g}) written to {out}")
    return 0


def _eval_name(args) -> str:
    from radiodiff.io.release_files import DEFAULT_MODEL

    if args.real_split:
        return f"real-{args.real_split}-vs-{args.split}"
    path = Path(args.model or args.samples or DEFAULT_MODEL)
    if path.suffix == ".ckpt":  # <run>/last.ckpt -> <run>-last
        return f"{path.parent.name}-{path.stem}"
    return path.parent.name if path.suffix == ".h5" else path.name


def _cmd_evaluate(args) -> int:
    from radiodiff.evaluation.metrics import EvalSettings
    from radiodiff.evaluation.run import run_evaluation
    from radiodiff.evaluation.sets import Compared

    if args.real_split and args.reference is None:  # else the model would be loaded for it
        raise ValueError(f"--real-split {args.real_split} compares two splits of one prepared "
                         "file: name it with --reference <prepared .h5>")
    sampled = not (args.samples or args.real_split)
    if not sampled:  # options of drawing images, which this comparison does not do
        drawn = [f"--{o}" for k, o in _SPEC_OPTIONS.items() if k in _sampler_given(args)]
        drawn += [o for o, on in (("--n", args.n is not None), ("--tstr", args.tstr),
                                  ("--batch-size", args.batch_size != 32)) if on]
        if drawn:
            given = "--samples" if args.samples else "--real-split"
            raise ValueError(f"{', '.join(drawn)}: {given} compares images that exist, "
                             "none are drawn; leave them out (or give --model)")
    compared = Compared(model=args.model, samples=args.samples, real_split=args.real_split,
                        n=args.n, spec=_spec(args, *_model_spec(args.model)) if sampled
                        else None,
                        seed=args.seed, batch_size=args.batch_size,
                        allow_mismatch=args.allow_mismatch)
    settings = EvalSettings(seed=args.seed, sourcefinder=not args.no_sourcefinder,
                            tstr=args.tstr,
                            rvf_epochs=args.rvf_epochs, rvf_folds=args.rvf_folds,
                            classifier_epochs=args.classifier_epochs,
                            cache_dir=args.cache_dir)
    out = Path(args.out) if args.out else Path("outputs") / "eval" / _eval_name(args)
    reference = args.reference
    if reference is None:  # the data the model was trained on (checked by its hash)
        from radiodiff.evaluation.sets import find_reference
        reference, note = find_reference(compared.data_record())
        print(f"reference set: {note}")
    _, paths = run_evaluation(reference, compared, out, args.split, settings,
                              progress=lambda step: progress_bar(step, "images"),
                              overwrite=args.overwrite)
    print(paths["report.md"].read_text(), end="")
    print("wrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return 0


def _cmd_verify(args) -> int:
    from radiodiff.io.release_files import resolve_model
    from radiodiff.io.trust import verify_release

    report = verify_release(resolve_model(args.model))
    print(report.line())
    return 0 if report.vouched else 1


def _cmd_recommend(args) -> int:
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import recommend_sampler
    path = recommend_sampler(resolve_model(args.model),
                             _spec(args, *_model_spec(args.model)), force=args.force)
    print(f"recorded in {path / 'meta.json'} (and its SHA256SUMS)")
    return 0


def _sampler_args(p: argparse.ArgumentParser) -> None:
    """The options of :func:`_spec`; not given: the model's recommended setting."""
    rec = " (default: the model's recommended setting, its meta.json `sampler`)"
    p.add_argument("--sampler", default=None,
                   help="euler | heun | stochastic | dpmpp_2m" + rec)
    p.add_argument("--steps", type=int, default=None, help="solver steps (>= 1)" + rec)
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight (0 = unconditional, 1 = plain)" + rec)
    p.add_argument("--sigma-min", type=float, default=None, help="smallest noise level" + rec)
    p.add_argument("--sigma-max", type=float, default=None, help="largest noise level" + rec)
    p.add_argument("--rho", type=float, default=None,
                   help="schedule curvature (EDM Eq. 5)" + rec)
    p.add_argument("--churn", type=float, default=None,
                   help="S_churn of the stochastic sampler (EDM Algorithm 2)" + rec)


def _overwrite_arg(p: argparse.ArgumentParser, what: str, folder: bool = True) -> None:
    kept = ("; only the files it wrote (listed in its SHA256SUMS) are replaced, anything "
            "else there is kept") if folder else ""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing {what} at --out (written whole, then swapped "
                   f"in){kept}")


def _solver_args(p: argparse.ArgumentParser) -> None:
    """Sampler options shared by ``demo`` and ``evaluate``."""
    _sampler_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per solver call")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and of the metrics")


class _DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` once per option: not appended when the help text already says it,
    nor for a None default (whose meaning the help text states)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or "(default:" in text:
            return text
        return super()._get_help_string(action)


def _command(sub, name: str, func, help: str) -> argparse.ArgumentParser:
    """Add sub-command ``name`` running ``func(args)``; its help shows each default once."""
    p = sub.add_parser(name, help=help, formatter_class=_DefaultsOnceFormatter)
    p.set_defaults(func=func)
    return p


def _add_prepare(sub) -> None:
    p = _command(sub, "prepare", _cmd_prepare, "survey inputs -> data/<name>.h5 (Hydra overrides)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=mirabest "
                   "data.negatives=abs data.cuts.snr_min=null")
    p.add_argument("--cfg", action="store_true", help="print the composed data config and exit")
    p.add_argument("--out", default=None, help="output file (default: data.out)")
    _overwrite_arg(p, "prepared HDF5 file", folder=False)


def _add_inspect(sub) -> None:
    p = _command(sub, "inspect", _cmd_inspect,
                 "PNG grid per class and a summary of a prepared file")
    p.add_argument("file", help="prepared HDF5 file, e.g. data/first.h5")
    p.add_argument("--out", default=None, help="output folder (default outputs/inspect/<name>)")
    p.add_argument("--n-per-class", type=int, default=16, help="images per class grid")
    p.add_argument("--seed", type=int, default=0, help="seed of the image selection")
    _overwrite_arg(p, "inspect folder (one with summary.json)")


def _add_export(sub) -> None:
    p = _command(sub, "export", _cmd_export, "training checkpoint -> release folder (EMA weights)")
    p.add_argument("--ckpt", required=True, help="training checkpoint, e.g. .../last.ckpt")
    p.add_argument("--out", required=True, help="release folder to write")
    p.add_argument("--data", default=None,
                   help="prepared .h5 the run trained on: its train split's conditions go "
                   "into the release (train_conditions.csv) when the checkpoint predates "
                   "carrying them; refused unless its data_sha256 is the checkpoint's "
                   "(default: the checkpoint's own table, if any)")
    p.add_argument("--ema-halflife", type=float, default=None,
                   help="EMA half-life (k images) to export: the run's main EMA or one of "
                   "its train.ema_bank_kimg (default: the main one)")
    p.add_argument("--projection-floor", default="run",
                   help="output projection floor: 'run' (the run's data.projection_floor), "
                   "'data' (the largest floor that changes no training image, as recorded "
                   "by the run or measured on --data), 'none', or a fraction of the peak")
    p.add_argument("--projection-halo", type=int, default=None,
                   help="output projection halo in pixels: sub-floor pixels survive within "
                   "it of a pixel above the floor (0: a pixel-by-pixel clip); default the "
                   "run's data.projection_halo_px")
    p.add_argument("--projection-islands", default="run",
                   help="the data's noise islands in the output projection: 'run' (the "
                   "run's data.projection_islands), 'none', or a JSON file of the island "
                   "model's fields (radiodiff fit-islands --out writes them under 'best')")
    _overwrite_arg(p, "release folder")
    p.add_argument("--fresh", action="store_true",
                   help="replace the whole release folder at --out, its refiner/, model card "
                   "and anything else in it included (implies --overwrite)")


def _add_fit_islands(sub) -> None:
    from radiodiff.data.island_fit import FitSettings  # its defaults are the options'
    p = _command(sub, "fit-islands", _cmd_fit_islands,
                 "fit the noise-island model (data.projection_islands) to the FIRST "
                 "training split -> table + JSON")
    for option, text in (("fields", "noise fields drawn per model of the grid"),
                         ("max_area", "largest island counted, native pixels"),
                         ("seed", "seed of the noise fields and the bootstrap")):
        p.add_argument("--" + option.replace("_", "-"), type=int,
                       default=getattr(FitSettings, option), help=text)
    p.add_argument("--top", type=int, default=8, help="models shown in the table")
    p.add_argument("--out", default=None, help="JSON file of the real numbers, the whole "
                   "grid and the best model under 'best' (export --projection-islands reads "
                   "it) (default: print only)")
    _overwrite_arg(p, "JSON file", folder=False)


def _add_attach_refiner(sub) -> None:
    from radiodiff.pipeline.refine import RefineSpec  # its defaults are the options' defaults
    p = _command(sub, "attach-refiner", _cmd_attach_refiner,
                 "base release + faint-end refiner release -> one release (the "
                 "refiner in refiner/, checked as a pair)")
    p.add_argument("--base", required=True, help="base release folder or shipped model name")
    p.add_argument("--refiner", required=True,
                   help="refiner release (same classes and conditions; normally trained "
                   "with schedule=stretch)")
    p.add_argument("--out", required=True, help="release folder to write (may be --base "
                   "with --overwrite)")
    p.add_argument("--sigma", type=float, default=RefineSpec.sigma,
                   help="noise level, in the refiner's model space, the base image is taken to")
    p.add_argument("--steps", type=int, default=RefineSpec.steps,
                   help="refiner solver steps (DPM-Solver++)")
    p.add_argument("--rho", type=float, default=RefineSpec.rho,
                   help="curvature of the refiner's noise schedule (EDM Eq. 5)")
    _overwrite_arg(p, "release folder")


def _add_sample(sub) -> None:
    p = _command(sub, "sample", _cmd_sample,
                 "draw images from a release folder -> FITS + HDF5 + PNG")
    p.add_argument("--model", default=None,
                   help="release folder or shipped model name (default: the built-in "
                   "model, models/first)")
    p.add_argument("--n", type=int, default=100, help="number of images")
    p.add_argument("--class", dest="label", default=None,
                   help="class name to condition on (default: not fixed, see --conditions)")
    p.add_argument("--peak-flux", type=float, default=None,
                   help="peak surface brightness to condition on, Jy/beam (> 0); with a "
                   "per-image-scaled Jy/beam model the FITS files are then in Jy/beam "
                   "(default: not fixed, see --conditions)")
    p.add_argument("--las", type=float, default=None,
                   help="largest angular size to condition on, arcsec (> 0) "
                   "(default: not fixed, see --conditions)")
    p.add_argument("--conditions", choices=("draw", "null"), default=None,
                   help="what the model's conditions not given above become: draw = image k "
                   "takes them from a training row drawn with seed + k (the release's "
                   "train_conditions.csv; rows of the given class, nearest to the given "
                   "peak flux / LAS), so --n 1000 looks like the survey; null = no "
                   "condition (unconditional) (default: draw when the release has "
                   "train_conditions.csv, else null)")
    _sampler_args(p)
    p.add_argument("--no-refine", action="store_true",
                   help="skip the release's faint-end refiner (releases with a refiner/ "
                   "folder, e.g. models/first: its network re-draws the pixels below ~1 %% "
                   "of the peak in x^0.25 space, adding its steps to the network evaluations)")
    p.add_argument("--no-islands", action="store_true",
                   help="leave out the data's noise islands that the release's output "
                   "projection lays under each image (models/first: the FIRST images' "
                   "3-rms cut and 8 bit): a clean sky, e.g. to add your own noise")
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="sample a --peak-flux or --las more than 10x beyond the range of the "
                   "release's training rows (train_conditions.csv); refused without it")
    p.add_argument("--seed", type=int, default=0, help="seed of image 0 (image k: seed + k)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per solver call (image k is the same for any batch size)")
    p.add_argument("--batched", action="store_true",
                   help="evaluate the network on whole batches (faster on a GPU); image k then "
                        "depends on --batch-size by float round-off (~1e-5)")
    p.add_argument("--ra", type=float, default=None,
                   help="RA of the image centres in the FITS WCS, deg (ICRS); with --dec "
                   "(default: 0, a placeholder, not a real position: the FITS header then "
                   "says so in a COMMENT)")
    p.add_argument("--dec", type=float, default=None,
                   help="Dec of the image centres in the FITS WCS, deg (ICRS); with --ra "
                   "(default: 0, a placeholder like --ra)")
    p.add_argument("--out", default=None,
                   help="output folder (default: outputs/samples/<model folder name>)")
    _overwrite_arg(p, "samples folder (one with samples.h5)")


def _add_demo(sub) -> None:
    p = _command(sub, "demo", _cmd_demo,
                 "the built-in model in minutes: samples per class (FITS), real vs "
                 "generated PNG, short metrics report")
    p.add_argument("--reference", default="data/first.h5", help="prepared real data file")
    p.add_argument("--model", default=None, help="release folder or shipped model name "
                   "(default: the built-in model)")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    _overwrite_arg(p, "demo folder")
    p.add_argument("--n-per-class", type=int, default=16, help="images per class")
    _solver_args(p)


def _add_evaluate(sub) -> None:
    p = _command(sub, "evaluate", _cmd_evaluate, "metrics of generated vs real images -> report")
    p.add_argument("--reference", default=None,
                   help="prepared real data file (default: the one the model was trained "
                   "on: the run's data.out or data/<data.name>.h5, checked against the "
                   "model's data_sha256; with --samples, the file in data/ of that hash)")
    p.add_argument("--split", default="test", help="real split compared against")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="release folder, shipped model name or training "
                   "checkpoint (.ckpt) to sample (default: the built-in model)")
    g.add_argument("--samples", help="samples.h5 (or its folder) from `radiodiff sample`")
    g.add_argument("--real-split", help="compare against another real split of the prepared "
                   "file named by --reference (real-vs-real: shows the noise floor)")
    p.add_argument("--n", type=int, default=None,
                   help="images to generate (with --model; default: as many as the real split, "
                   "the equal sample size of the real-vs-real floors)")
    _solver_args(p)
    p.add_argument("--no-sourcefinder", action="store_true", help="skip PyBDSF")
    p.add_argument("--tstr", action="store_true",
                   help="train-synthetic-test-real: also draw one image per training row "
                   "(its class and conditions) and score class classifiers trained on real, "
                   "generated and both images on the real split")
    p.add_argument("--rvf-folds", type=int, default=5, help="real-vs-fake folds")
    p.add_argument("--rvf-epochs", type=int, default=10, help="real-vs-fake epochs per fold")
    p.add_argument("--classifier-epochs", type=int, default=30,
                   help="epochs of the class classifier (cached per data hash)")
    p.add_argument("--cache-dir", default="outputs/eval_cache",
                   help="cache of the class classifier and of the real set's statistics")
    p.add_argument("--out", default=None, help="report folder (default outputs/eval/<name>: "
                   "the model or samples folder, or real-<split>-vs-<split>)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare sets whose classes, image unit or geometry (image size, "
                   "pixel scale, beam) differ, classes mapped by name (a class the "
                   "reference lacks counts as none); refused without it")
    _overwrite_arg(p, "report folder (one with metrics.json)")


def _add_verify(sub) -> None:
    p = _command(sub, "verify", _cmd_verify,
                 "is a release one of the shipped models, unchanged? (exit 0: OK; "
                 "1: modified or unknown, cannot be vouched for)")
    p.add_argument("model", nargs="?", default=None, help="release folder or shipped model "
                   "name (default: the built-in model, models/first)")


def _add_recommend(sub) -> None:
    p = _command(sub, "recommend", _cmd_recommend,
                 "record a release's recommended sampler (meta.json `sampler`), "
                 "the default of sample / demo / evaluate / skymap")
    p.add_argument("model", help="release folder")
    _sampler_args(p)
    p.add_argument("--force", action="store_true",
                   help="change a shipped release too (its model card's numbers are for the "
                   "sampler it records)")


# --------------------------------------------------------------------------- skymap

def _cmd_skymap(args) -> int:
    from omegaconf import OmegaConf

    from radiodiff.skymap.build import merge_shards
    from radiodiff.skymap.config import load_skymap_config

    if args.merge:
        if args.overrides or args.shard or args.devices or args.preset != "first":
            raise ValueError("--merge takes only --out: the shards' config is in "
                             "<out>/shards/skymap_config.yaml")
        res = merge_shards(args.out, args.overwrite)
    else:
        cfg = load_skymap_config(args.preset, args.overrides)
        if args.cfg:
            print(OmegaConf.to_yaml(cfg, resolve=True), end="")
            return 0
        res = _render_skymap(cfg, args)
        if res is None:  # a rank other than 0 of --devices: rank 0 reports
            return 0
    prov = res["plan"].provenance
    skipped = {k: v for k, v in prov["skipped"].items() if v}
    print(f"{prov['n_sources']} sources on a {prov['map_shape'][1]} x {prov['map_shape'][0]} "
          f"px map" + (f"; skipped/noted: {skipped}" if skipped else "")
          + (" [model is shape-only: images scaled to the catalogue flux]"
             if prov["model"] and prov["model"]["shape_only"] else ""))
    print("wrote:\n" + "\n".join(f"  {p}" for p in res["paths"].values()))
    return 0


def _render_skymap(cfg, args):
    """One map or one shard in this process, or (``--devices``) all shards under
    Lightning then the merge; None on the ranks other than 0."""
    from radiodiff.skymap.build import build_skymap, parse_shard

    if args.devices is None:
        extra = [f"--{k}" for k in ("accelerator", "strategy", "shards") if getattr(args, k)]
        if extra:
            raise ValueError(f"{', '.join(extra)}: only with --devices N")
        shard = parse_shard(args.shard) if args.shard else None
        return build_skymap(cfg, args.out, shard,
                            progress=progress_bar("model cutouts", "batches"),
                            overwrite=args.overwrite)
    if args.shard:
        raise ValueError("--devices renders every shard of the map; --shard K/N renders "
                         "one: give one of them")
    from radiodiff.skymap.distributed import build_skymap_on_devices

    return build_skymap_on_devices(cfg, args.out, _devices(args.devices),
                                   args.accelerator or "auto", args.strategy or "ddp",
                                   args.shards, progress_bar=sys.stderr.isatty(),
                                   overwrite=args.overwrite)


def _devices(text: str) -> int | str:
    """``--devices``: a count >= 1, -1 (all) or auto."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1 and n != -1:
        raise ValueError(f"--devices must be a count >= 1, -1 (all) or auto, got {text!r}")
    return n


def _cmd_evaluate_map(args) -> int:
    from radiodiff.skymap.evaluate import evaluate_map

    out = Path(args.out) if args.out else Path(args.map_dir) / "evaluation"
    paths = evaluate_map(args.map_dir, out, radius_beams=args.radius_beams,
                         noise_free=not args.no_noise_free, thresh_isl=args.thresh_isl,
                         thresh_pix=args.thresh_pix, overwrite=args.overwrite)
    print("wrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return 0


def _add_skymap(sub) -> None:
    p = _command(sub, "skymap", _cmd_skymap,
                 "survey map (Jy/beam) + truth catalogue from a source catalogue or "
                 "a source-count model (overrides key=value)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. sky.ra_deg=150 "
                   "sky.size_deg=[0.5,0.5] sources.catalog=cat.fits render.model=first")
    p.add_argument("--preset", default="first", help="conf/skymap/<preset>.yaml: first | lotss")
    p.add_argument("--out", default="outputs/skymap", help="output folder")
    p.add_argument("--shard", default=None, help="render only shard K/N (horizontal strips, "
                   "0-based K) into <out>/shards; then --merge (default: the whole map)")
    p.add_argument("--merge", action="store_true",
                   help="assemble <out>/shards into the final files (bit-identical to one run)")
    p.add_argument("--devices", default=None, help="render the map's shards on N devices "
                   "under Lightning's predict loop (DDP), then merge them (default: one "
                   "process, no Lightning)")
    p.add_argument("--accelerator", default=None, choices=["auto", "cpu", "gpu"],
                   help="with --devices (default: auto)")
    p.add_argument("--strategy", default=None, help="with --devices: a Lightning strategy "
                   "(default: ddp; ddp_spawn where a script cannot be relaunched)")
    p.add_argument("--shards", type=int, default=None,
                   help="with --devices: number of shards (default: one per process)")
    p.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    _overwrite_arg(p, "map (its final files; a folder with skymap_config.yaml)")


def _add_evaluate_map(sub) -> None:
    p = _command(sub, "evaluate-map", _cmd_evaluate_map,
                 "PyBDSF on a skymap folder vs its truth: completeness, "
                 "reliability, flux, positions -> JSON + PNG")
    p.add_argument("map_dir", help="folder written by `radiodiff skymap`")
    p.add_argument("--out", default=None, help="report folder (default: <map_dir>/evaluation)")
    p.add_argument("--radius-beams", type=float, default=1.0,
                   help="cross-match radius in beam major axes")
    p.add_argument("--thresh-isl", type=float, default=3.0, help="PyBDSF island threshold (rms)")
    p.add_argument("--thresh-pix", type=float, default=5.0, help="PyBDSF peak threshold (rms)")
    p.add_argument("--no-noise-free", action="store_true",
                   help="skip PyBDSF on the noise-free model map")
    _overwrite_arg(p, "report (evaluation.json and .png)")


# The sub-commands in the order `radiodiff --help` lists them; each adds its parser and
# options (shared groups: _sampler_args, _solver_args, _overwrite_arg).
_COMMANDS = (_add_prepare, _add_inspect, _add_fit_islands, _add_export, _add_attach_refiner,
             _add_sample, _add_demo, _add_evaluate, _add_verify, _add_recommend, _add_skymap,
             _add_evaluate_map)


def build_parser() -> argparse.ArgumentParser:
    """The ``radiodiff`` parser: one sub-parser per entry of :data:`_COMMANDS`."""
    parser = argparse.ArgumentParser(prog="radiodiff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one rule for errors at the command line: one line and an exit code, 2 for bad
    input (config, data, files, values), 1 for anything else (a bug: say how to see more)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from radiodiff.config import ConfigError, _hydra_message
    from radiodiff.data.prepare import PrepareError
    from radiodiff.io.fits import InputError

    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return _hydra_message(exc), 2
    text = " ".join(str(exc).split())
    if isinstance(exc, (ConfigError, PrepareError, InputError, FileNotFoundError, ValueError)):
        return text, 2
    return f"{type(exc).__name__}: {text}", 1


# What an interrupted command leaves: the folder writers (artifact_dir) and the prepared
# file swap in a whole result at the end; the others write file by file, each atomically.
_WRITES_FILE_BY_FILE = ("skymap",)  # its --shard / --devices strips


def interrupted_line(command: str) -> str:
    """The one line of a command stopped by Ctrl-C (exit code 130)."""
    kept = ("files finished before it are kept, each whole (none half-written)"
            if command in _WRITES_FILE_BY_FILE else
            "nothing written (an earlier output there is left as it was)")
    return f"radiodiff {command}: interrupted; {kept}"


def _terminated(signum, frame):
    """SIGTERM as SystemExit, so that writers remove their temporaries on the way out."""
    raise SystemExit(128 + signum)


def _debug(args) -> bool:
    """Full tracebacks: ``--debug``, ``RADIODIFF_DEBUG=1`` or ``HYDRA_FULL_ERROR=1``."""
    import os
    return bool(getattr(args, "debug", False)) or os.environ.get(
        "RADIODIFF_DEBUG", "") not in ("", "0") or os.environ.get("HYDRA_FULL_ERROR") == "1"


def main(argv: list[str] | None = None) -> int:
    try:  # the imports behind the parser take a moment: Ctrl-C there is no traceback either
        parser = build_parser()
        parser.add_argument("--debug", action="store_true",
                            help="show the full traceback of an error (also RADIODIFF_DEBUG=1)")
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("radiodiff: interrupted; nothing written", file=sys.stderr)
        return 130
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: the writers have removed their temporaries
        if _debug(args):
            raise
        fresh = "\n" if getattr(sys.stderr, "isatty", lambda: False)() else ""  # after a bar
        print(f"{fresh}{interrupted_line(args.command)}", file=sys.stderr)
        return 130
    except Exception as exc:  # SystemExit passes
        if _debug(args):
            raise
        text, code = error_line(exc)
        if code == 1:
            text += " (--debug shows the traceback)"
        print(f"radiodiff {args.command}: error: {text}", file=sys.stderr)
        return code
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        from radiodiff.io.artifacts import release_locks
        release_locks()  # the outputs this command checked but did not get to write


if __name__ == "__main__":
    sys.exit(main())
