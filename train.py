"""Train a radiodiff model: ``python train.py model=unet_attn data=lotss`` (Hydra; ``-m`` sweeps).

Thin entry point: Hydra composes ``conf/`` onto the typed configs and saves the resolved
config in the run folder under ``outputs/``; :func:`radiodiff.training.fit.train` does the work.
In a multirun (``-m``) each job is its own run: its name gets the job's overrides of the
keys the sweep varies and of the keys that shape the run
(:func:`radiodiff.training.identity.sweep_run_name`), e.g. ``tiny-unet_tiny-s5-train.lr=0.002``.

An error ends in one line on stderr, ``radiodiff train: error: <message>``, with exit code 2
for bad input (config, data, paths) and 1 for anything else; a run that failed before it
wrote anything leaves no run folder (one that did keeps the traceback in its log file).
``HYDRA_FULL_ERROR=1`` or ``RADIODIFF_DEBUG=1`` shows the full traceback instead. Ctrl-C
ends in one line too (exit code 130) naming the last checkpoint, which stays (a multirun
stops there). Two runs of one name at a time: the second is refused (the checkpoint
folder's lock names the first one's pid).
"""

import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from radiodiff.config import register_configs
from radiodiff.cli import error_line
from radiodiff.training.fit import drop_unused_run_dir, train
from radiodiff.training.identity import sweep_keys, sweep_run_name

register_configs()

PROG = "radiodiff train"
# Set when this script (not the user) turned HYDRA_FULL_ERROR on; child processes (DDP
# ranks re-run this script) inherit both, so they still know the user did not ask for it.
_OURS = "RADIODIFF_TRAIN_RAISES"
# Jobs of this invocation: exit codes of the failed ones (a multirun goes on with the next
# job), how many succeeded, and the multirun's sweep folder with its root.
_jobs: dict = {"failed": [], "ok": 0, "sweep": None}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training (Lightning returned instead of raising): ``checkpoint`` is
    the run's ``last.ckpt``, kept as the last save left it (absent: none was written)."""

    def __init__(self, checkpoint: str) -> None:
        super().__init__(checkpoint)
        self.checkpoint = Path(checkpoint)

    def line(self) -> str:
        if self.checkpoint.is_file():
            return (f"interrupted; the last checkpoint ({self.checkpoint}) is kept: rerun "
                    "the same command to resume")
        return ("interrupted before the first checkpoint was written; nothing is kept: "
                "rerun the same command to start again")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir, root = Path(hc.runtime.output_dir), Path(cfg.paths.output_dir)
    if str(getattr(hc.mode, "name", hc.mode)) == "MULTIRUN":
        _jobs["sweep"] = (Path(hc.sweep.dir), root)
        # one run per job: named after the overrides the sweep varies (and identity keys)
        cfg.train.run_name = sweep_run_name(cfg, hc.overrides.task, _swept_keys(hc))
    try:
        summary = train(cfg, run_dir=run_dir)
    except BaseException as exc:
        log_file = run_dir / f"{hc.job.name}.log"
        drop_unused_run_dir(run_dir, root, log_file.name)
        if _debug() or not isinstance(exc, Exception):
            raise
        kept = run_dir.is_dir()
        if kept:  # the run had started: keep the traceback with its files
            try:
                with open(log_file, "a") as f:
                    f.write(traceback.format_exc())
            except OSError:
                kept = False
        # Reported here: raised, Hydra would first print "Error executing job ..." itself.
        _jobs["failed"].append(_report(exc, log_file if kept else None))
        return
    if summary.get("interrupted"):
        raise Interrupted(summary["checkpoint"])  # past Hydra: ends a multirun too
    _jobs["ok"] += 1
    print(f"trained {summary['steps']} steps ({summary['images_seen']} images); "
          f"checkpoint {summary['checkpoint']}")
    if summary.get("wandb_offline"):
        print(f"W&B offline run in {summary['wandb_offline']}; to upload it and see it "
              f"online: wandb sync {summary['wandb_offline']}")


def _swept_keys(hc) -> set[str]:
    """The keys this multirun varies: its command line's overrides (as Hydra's own parser
    reads them) and ``hydra.sweeper.params``; every key of the job's overrides when the
    command line cannot be read."""
    from hydra._internal.utils import get_args_parser  # the parser hydra.main used
    params = hc.sweeper.get("params") or {}
    try:
        given = get_args_parser().parse_args(sys.argv[1:]).overrides
        return sweep_keys([*given, *(f"{k}={v}" for k, v in params.items())])
    except (Exception, SystemExit):  # naming a job must not fail it
        return {o.lstrip("+~").partition("=")[0] for o in hc.overrides.task}


def _debug() -> bool:
    """Whether the user asked for full tracebacks (RADIODIFF_DEBUG or HYDRA_FULL_ERROR)."""
    return os.environ.get("RADIODIFF_DEBUG", "") not in ("", "0") or (
        os.environ.get("HYDRA_FULL_ERROR") == "1" and _OURS not in os.environ)


def _report(exc: BaseException, log_file: Path | None = None) -> int:
    """Print the error's line on stderr; return the exit code (2 bad input, 1 other)."""
    text, code = error_line(exc)
    if log_file is not None:
        text += f" (traceback in {log_file})"
    elif code == 1:
        text += " (RADIODIFF_DEBUG=1 shows the traceback)"
    print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)
    return code


def cli() -> int:
    """Run :func:`main`; errors become one line on stderr unless debugging is asked for."""
    if not _debug():
        os.environ[_OURS] = "1"
    # Hydra re-raises instead of printing its own report: the full traceback when debugging
    # (the exception leaves this function), else one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if _debug():
        main()
        return 0
    try:
        main()
    except Interrupted as exc:  # Ctrl-C while training: one line, no traceback
        print(f"{PROG}: {exc.line()}", file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:  # Ctrl-C before training: one line, no traceback
        print(f"{PROG}: interrupted; checkpoints already written are kept (train.resume=auto "
              "continues from them)", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # composing the config; SystemExit passes
        return _report(exc)
    if _jobs["failed"] and not _jobs["ok"] and _jobs["sweep"]:
        drop_unused_run_dir(*_jobs["sweep"], "multirun.yaml")  # a sweep that never ran
    return max(_jobs["failed"], default=0)


if __name__ == "__main__":
    sys.exit(cli())
