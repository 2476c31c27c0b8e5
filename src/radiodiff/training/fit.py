"""Training entry: config -> DataModule + DiffusionModule + Lightning Trainer -> checkpoints.

Runs are time-boxed pieces that resume exactly: ``train.resume=auto`` continues from
``<train.ckpt_dir>/last.ckpt``, rewritten atomically every ``ckpt_every_steps`` steps, every
``ckpt_every_minutes`` minutes and when training stops. Each new ``last.ckpt`` is read back
and checked (loadable, finite) before it replaces the old one, which is kept as
``prev.ckpt``; ``SHA256SUMS`` beside them records both hashes, checked before a resume.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from radiodiff.config import ConfigError
from radiodiff.io.artifacts import (atomic_text, clear_stale_temps, link_or_copy,
                                   save_torch, temp_name, write_manifest)
from radiodiff.data.datamodule import CutoutDataModule
from radiodiff.data.prepared import declared_sha256, read_prepared
from radiodiff.data.projection import (DATA_FLOOR, HALO, check_projection_config,
                                       read_kept_floor)
from radiodiff.io.integrity import read_manifest, sha256_file
from radiodiff.pipeline.checkpoint import LAST, PREV, read_checkpoint
from radiodiff.pipeline.quiet import quiet_lightning
from radiodiff.pipeline.ranks import RankZeroLock, on_rank_zero
from radiodiff.training.boundary import StepBoundary
from radiodiff.training.identity import (check_resume, check_resume_data,
                                         recorded_data_sha256)
from radiodiff.training.module import (DataStats, DiffusionModule, checkpoint_progress,
                                       module_from_config, optim_settings)
from radiodiff.diffusion.condition_table import ConditionTable
from radiodiff.diffusion.conditions import ConditionTransform
from radiodiff.diffusion.intensity import IntensityTransform

__all__ = ["train", "check_schedule", "ResumeCheckpoint", "AtomicCheckpointIO", "TimeBox",
           "build_trainer", "build_callbacks", "data_stats", "resume_path", "make_logger",
           "warm_start", "warm_start_lineage", "adapt_state", "check_image_size",
           "check_prepared_options", "wandb_offline_dir"]

log = logging.getLogger(__name__)


class ResumeCheckpoint(StepBoundary):
    """Rewrite ``dirpath/last.ckpt`` atomically every N steps, every M minutes and at the end
    (a save due between the micro-batches of a step waits for its end: :class:`StepBoundary`).

    The decision to save is taken on rank 0 and broadcast, so ranks whose clocks differ
    never disagree about entering the (collective) save. A save goes: write
    ``.rdtmp-<pid>@<host>-last.ckpt`` (:func:`~radiodiff.io.artifacts.temp_name`), read it
    back (:func:`~radiodiff.pipeline.checkpoint.read_checkpoint`: loadable, finite), record
    its SHA-256 in ``SHA256SUMS`` (next to those of the files it rotates, so a crash at
    any point leaves every file verifiable), make ``prev.ckpt`` a second name (hard link)
    of the old ``last.ckpt`` and rename the new file to ``last.ckpt`` (which therefore
    never goes missing). An old ``last.ckpt`` that no longer matches its hash (a run
    resumed from ``prev.ckpt``) is replaced without becoming ``prev.ckpt``. A save that
    fails the check raises and leaves ``last.ckpt`` and ``prev.ckpt`` as they were.

    The module's EMA update of the step is applied before saving (``update_ema``), so a
    checkpoint taken mid-run holds the same EMA as an uninterrupted run at that step.
    """

    def __init__(self, dirpath: str | Path, every_steps: int, every_minutes: float) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.every_steps, self.every_minutes = int(every_steps), float(every_minutes)
        self._last = time.monotonic()
        self._saved_step: int | None = None  # global step of this piece's last save

    def save(self, trainer: L.Trainer) -> Path:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / LAST
        clear_stale_temps(self.dirpath)  # a killed run's saves, links and manifests
        tmp = temp_name(path)
        if self._saved_step == trainer.global_step and path.is_file():
            return path  # saved at this step already: keep prev.ckpt one save older
        update_ema = getattr(trainer.lightning_module, "update_ema", None)
        if update_ema is not None:
            update_ema()  # idempotent per step: the module's own hook runs after callbacks
        io = getattr(trainer.strategy, "checkpoint_io", None)
        held = (io.holding_failures() if isinstance(io, AtomicCheckpointIO)
                and trainer.is_global_zero else nullcontext())
        with held as failure:  # rank 0's write failure waits for the shared step below
            trainer.save_checkpoint(tmp, weights_only=False)  # full state, rank 0 writes

        def rotate() -> None:
            if failure and failure[0] is not None:
                raise failure[0]
            self._rotate(tmp, path)
        on_rank_zero(trainer, rotate)  # a failure stops every rank
        trainer.strategy.barrier("resume_checkpoint")
        self._last, self._saved_step = time.monotonic(), int(trainer.global_step)
        return path

    def _rotate(self, tmp: Path, path: Path) -> None:
        """Verify ``tmp``, then ``last.ckpt`` -> ``prev.ckpt`` and ``tmp`` -> ``last.ckpt``."""
        try:
            read_checkpoint(tmp, alternative=False, check_hash=False)
        except ValueError as exc:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"the checkpoint just written did not verify, {path} is kept "
                             f"as it was ({exc})") from exc
        new = sha256_file(tmp)
        known = read_manifest(self.dirpath) or {}
        prev = self.dirpath / PREV
        last_sha = sha256_file(path) if path.is_file() else None
        # A save killed mid-rotation (kill -9) left the manifest naming the next prev.ckpt
        # (and, when there was one, the ".old" entry): prev.ckpt is then hashed afresh, and
        # a last.ckpt recorded as the next prev.ckpt is rotated as planned.
        torn = f"{PREV}.old" in known
        # A last.ckpt that no longer matches its hash (the run resumed from prev.ckpt) is
        # moved aside, not rotated over the good prev.ckpt.
        rotate = last_sha is not None and last_sha in (known.get(LAST, last_sha),
                                                       known.get(PREV))
        prev_sha = None if not prev.is_file() else (
            None if torn else known.get(PREV)) or sha256_file(prev)
        keep = last_sha if rotate else prev_sha
        # During the renames every file present has its hash listed (read with accept_any).
        write_manifest(self.dirpath, [], {k: v for k, v in (
            (LAST, new), (PREV, keep), (f"{PREV}.old", prev_sha)) if v})
        if rotate:  # prev.ckpt: a second name of the old file; last.ckpt never goes missing
            link_or_copy(path, prev)
        elif last_sha is not None:
            log.warning("%s did not match its recorded hash: replaced, %s kept", path, PREV)
        os.replace(tmp, path)  # a crash before this leaves the previous last.ckpt intact
        write_manifest(self.dirpath, [], {k: v for k, v in ((LAST, new), (PREV, keep)) if v})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        due = self.at_boundary(trainer) and (
            (self.every_steps > 0 and step % self.every_steps == 0)
            or (self.every_minutes > 0
                and time.monotonic() - self._last >= 60 * self.every_minutes))
        if trainer.strategy.broadcast(bool(due), src=0):
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written by :func:`radiodiff.io.artifacts.save_torch`: a temporary
    sibling ``.rdtmp-<pid>@<host>-last.ckpt`` (fsynced, then renamed; written in place when the
    path is already that temporary, as :class:`ResumeCheckpoint`'s is), never a copy in the
    system temp folder (Lightning's fsspec transaction stages one there), and stale
    temporaries of a killed run removed by the next save."""

    def __init__(self) -> None:
        super().__init__()
        self._held: list | None = None

    @contextmanager
    def holding_failures(self) -> Iterator[list]:
        """Within: a failed write (a full disk) is kept in the yielded one-item list instead
        of raised, so that rank 0 still reaches Lightning's barrier after the save and the
        caller raises it where every rank hears it
        (:func:`~radiodiff.pipeline.ranks.on_rank_zero`). Rank 0 only: the caller raises
        it there."""
        outer, self._held = self._held, [None]
        try:
            yield self._held
        finally:
            self._held = outer

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        try:
            save_torch(checkpoint, Path(path))
        except Exception as exc:
            if self._held is None:
                raise
            self._held[0] = exc  # held for the caller (holding_failures)


class TimeBox(StepBoundary):
    """Stop this invocation after ``minutes`` of wall clock (None: never), at the end of an
    optimiser step (:class:`StepBoundary`).

    Lightning's ``max_time`` counts all resumed pieces together; a session of fixed length
    needs a limit on the piece itself.
    """

    def __init__(self, minutes: float | None) -> None:
        super().__init__()
        self.seconds = None if minutes is None else 60.0 * float(minutes)
        self._start = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.seconds is None or not self.at_boundary(trainer):
            return
        if trainer.strategy.broadcast(time.monotonic() - self._start >= self.seconds, src=0):
            trainer.should_stop = True


class StopAtStepEnd(StepBoundary):
    """Hold a stop asked for between the micro-batches of a step (Lightning's
    ``trainer.max_time``, whose timer checks after every batch) until the step's end, so
    the checkpoint written at the end is a step boundary and resumes exactly. Appended
    after Lightning's own callbacks (it must see what they set)."""

    def __init__(self) -> None:
        super().__init__()
        self._held = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.at_boundary(trainer):
            self._held = self._held or bool(trainer.should_stop)
            trainer.should_stop = False
        elif self._held:
            trainer.should_stop, self._held = True, False


def drop_unused_run_dir(run_dir: Path, output_dir: Path, log_name: str) -> None:
    """Remove a run folder inside ``output_dir`` that holds only Hydra's bookkeeping
    (``.hydra/`` and ``log_name``), and its emptied parents."""
    try:
        run_dir, root = run_dir.resolve(), output_dir.resolve()
        if root not in run_dir.parents or not run_dir.is_dir():
            return
        for entry in run_dir.iterdir():
            if entry.name == log_name and entry.is_file():
                continue
            if entry.name == ".hydra" and entry.is_dir() and all(
                    f.is_file() for f in entry.iterdir()):
                continue
            return
        shutil.rmtree(run_dir)
        parent = run_dir.parent
        while parent != root and root in parent.parents and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    except OSError:
        pass  # cleaning up is a courtesy; the error being reported matters more


def resume_path(cfg: DictConfig) -> str | None:
    """Checkpoint to resume from: ``train.resume`` = auto | never | a path (resumed only
    when it is the same run: :func:`radiodiff.training.identity.check_resume`).

    A path outside the run's own checkpoint folder (a branch's start) is where the run
    begins: once the run has a ``last.ckpt`` of its own, that is resumed instead (with a
    warning), so rerunning the command continues the branch rather than restarting it. A
    path inside the folder (``prev.ckpt``: recovery, a deliberate step back) is honoured.
    """
    mode = str(cfg.train.resume)
    if mode == "never":
        return None
    last = Path(cfg.train.ckpt_dir) / LAST
    if mode == "auto":
        return str(last) if last.is_file() else None
    if last.is_file() and Path(mode).resolve().parent != last.resolve().parent:
        log.warning("train.resume=%s: this run (train.run_name=%s) has a checkpoint of its "
                    "own, %s; resuming that (a new run name starts again from %s)", mode,
                    cfg.train.run_name, last, mode)
        return str(last)
    if not Path(mode).is_file():
        raise FileNotFoundError(f"train.resume={mode}: checkpoint not found (expected auto, "
                                f"never or the path of a {LAST})")
    return mode


def make_logger(cfg: DictConfig, run_dir: Path):
    """The ``logger.kinds`` entry named by ``logger.kind``, saving into ``run_dir``."""
    kind = str(cfg.logger.kind)
    kinds = cfg.logger.kinds
    if kind not in kinds or kinds[kind] is None:
        raise ConfigError(f"logger.kind={kind!r}: expected "
                          f"{' | '.join(k for k in kinds if kinds[k] is not None)}")
    where = f"logger.kinds.{kind}"
    make = _instantiate(kinds[kind], where, _partial_=True, save_dir=str(run_dir))
    extra = {}
    if kind == "wandb":
        os.environ.setdefault("WANDB_SILENT", "true")
        # not through instantiate, whose own first argument is called ``config``
        extra["config"] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    try:
        return make(**extra)
    except TypeError as exc:  # an argument the logger does not take
        raise ConfigError(f"{where}: {' '.join(str(exc).split())}") from exc


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks listed under ``callbacks`` (null entries left out)."""
    return [_instantiate(node, f"callbacks.{name}") for name, node in cfg.callbacks.items()
            if node is not None]


def build_trainer(cfg: DictConfig, run_dir: Path, max_steps: int,
                  callbacks: list[Callback]) -> L.Trainer:
    """``trainer`` instantiated, with what every run needs fixed."""
    t = cfg.trainer
    for key in ("accumulate_grad_batches", "log_every_n_steps"):
        if int(t[key]) < 1:
            raise ConfigError(f"trainer.{key}={t[key]}: must be >= 1")
    every = {}
    if OmegaConf.is_interpolation(t, "val_check_interval") and isinstance(
            t.val_check_interval, int) and not isinstance(t.val_check_interval, bool):
        # Lightning counts batches; train.val_every_steps counts optimizer steps (a
        # trainer.val_check_interval given as such is Lightning's own, in batches)
        every["val_check_interval"] = t.val_check_interval * int(t.accumulate_grad_batches)
    return _instantiate(
        t, "trainer", precision=resolve_precision(t.precision, t.accelerator), **every,
        max_steps=max_steps, max_epochs=-1, check_val_every_n_epoch=None,
        use_distributed_sampler=False,  # the sample stream shards itself per rank
        enable_checkpointing=False,     # ResumeCheckpoint writes atomically instead
        plugins=[AtomicCheckpointIO()],
        logger=make_logger(cfg, run_dir), callbacks=callbacks, default_root_dir=str(run_dir))


def _instantiate(node: DictConfig, where: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with a bad ``_target_`` or argument as a one-line
    :class:`ConfigError` naming the config node."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        text = " ".join(str(cause).split())
        raise ConfigError(f"{where}: {text}") from exc


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX); Linux flags only."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16-mixed where the hardware has it, else 32.

    Measured on a 2-core AMD EPYC without bf16 instructions: unet_small trains at 6.5
    images/s in fp32 and 0.6 in bf16-mixed (emulated); CPUs with AVX512-BF16 gain instead.
    """
    if str(precision) != "auto":
        return str(precision)
    if str(accelerator) == "cpu":
        return "bf16-mixed" if cpu_has_bf16() else "32"
    return "bf16-mixed"


# Where the inputs of the catalogue + fields sets come from (one line in the error).
_DATA_SOURCES = {
    "lotss": ("LoTSS-DR2 (value-added catalogue and mosaics): "
              "https://lofar-surveys.org/dr2_release.html, see data/README.md"),
    "mirabest": ("the MiraBest catalog.csv and FITS fields: the shared data folder "
                 "(RADIODIFF_SHARED_DATA or paths.shared_data), see README"),
}


def check_data_inputs(cfg: DictConfig) -> None:
    """Fail in one line, before anything is written, when the data cannot be had.

    Only for catalogue + fields sets not yet prepared (``mirabest``, ``lotss``): the message
    names what is missing, where to get it and the options that point at it.

    Raises
    ------
    radiodiff.data.prepare.PrepareError
        When ``data.out`` is missing and so are its inputs.
    """
    d = cfg.data
    if Path(d.out).is_file():
        return
    source = str(getattr(d.source, "value", d.source))
    if source not in ("mirabest", "lotss"):
        return
    missing = []
    for key, what, exists in (("catalog", "catalogue", Path.is_file),
                              ("fields_dir", "fields folder", Path.is_dir)):
        value = d.get(key)
        if not value:
            missing.append(f"{what} (data.{key} is not set)")
        elif not exists(Path(value)):
            missing.append(f"{what} {value}")
    if missing:
        from radiodiff.data.prepare import PrepareError
        where = _DATA_SOURCES.get(str(d.name), _DATA_SOURCES.get(source, "the survey"))
        raise PrepareError(
            f"data={d.name}: {d.out} is not prepared and its inputs are missing: "
            f"{'; '.join(missing)}. Get {where}; then point data.catalog=<catalogue file> "
            f"data.fields_dir=<fields folder> at them (or put them at the paths above)")


def _ensure_prepared(cfg: DictConfig) -> bool:
    """Prepare ``data.out`` when it is missing; returns whether it was prepared now."""
    check_data_inputs(cfg)
    if Path(cfg.data.out).is_file():
        return False
    from radiodiff.data.prepare import prepare
    log.info("%s missing: preparing data=%s first", cfg.data.out, cfg.data.name)
    log.info(prepare(cfg).format())
    return True


def quiet_libraries(cfg: DictConfig | None = None) -> None:
    """Silence library noise that is not the user's business; real warnings stay.

    Lightning's advertisement and ``LeafSpec`` warning
    (:func:`~radiodiff.pipeline.quiet.quiet_lightning`); its warning that a mid-epoch resume
    "can cause unreliable results" (not so here: the sample stream restarts at the
    checkpoint's global sample number, :class:`~radiodiff.data.datamodule.StreamSampler`, so
    a resumed run equals an uninterrupted one bit for bit); and with ``logger.kind=wandb``
    and ``WANDB_SILENT`` (default true) wandb's terminal, before Lightning's ``wandb.init``
    prints "The anonymous setting has no effect".
    """
    import warnings

    quiet_lightning()
    warnings.filterwarnings("ignore", message=r".*checkpoint that ended before the epoch ended")
    if cfg is not None and str(cfg.logger.kind) == "wandb":
        os.environ.setdefault("WANDB_SILENT", "true")
        if os.environ["WANDB_SILENT"].strip().lower() in ("true", "1", "yes"):
            import wandb
            # wandb's terminal goes silent now, not only once wandb.init has read the env
            wandb.termsetup(wandb.Settings(silent=True), None)


def check_schedule(train_cfg: DictConfig) -> None:
    """Refuse a learning-rate schedule that cannot run (:func:`optim_settings`, one line);
    warn of a run that goes on past the end of its cool-down, at rate 0."""
    end = optim_settings(train_cfg).decay_end_kimg
    if end is not None and float(train_cfg.total_kimg) > end * (1 + 1e-9):
        log.warning("train.total_kimg=%g goes past the end of the cool-down at %g kimg "
                    "(train.lr_decay_start_kimg + train.lr_decay_kimg): the rest trains at "
                    "rate 0", float(train_cfg.total_kimg), end)


def train(cfg: DictConfig, run_dir: str | Path | None = None,
          extra_callbacks: list[Callback] = ()) -> dict[str, Any]:
    """Train (or resume) the run described by ``cfg``; returns a short summary.

    The inputs are checked first, so a run that cannot start creates no folder. Rank 0
    holds the output lock of ``train.ckpt_dir`` while it trains (a second run of the same
    name is refused on every rank, naming this one's pid:
    :class:`~radiodiff.pipeline.ranks.RankZeroLock`). A run stopped by Ctrl-C returns with
    ``"interrupted": True`` (Lightning would exit the process with status 1) and the
    checkpoints already written kept.
    """
    check_schedule(cfg.train)  # a schedule that cannot run is refused before anything
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    ckpt, state = _resume_state(cfg)
    if _ensure_prepared(cfg) and state is not None:  # prepared just now: check it too
        check_resume_data(cfg, state, ckpt, declared_sha256(cfg.data.out))
    quiet_libraries(cfg)
    run_dir = Path(run_dir or Path(cfg.paths.output_dir) / str(cfg.train.run_name))
    run_dir.mkdir(parents=True, exist_ok=True)
    dm = CutoutDataModule.from_config(cfg.data, seed=int(cfg.seed))
    dm.setup("fit")
    if state is not None:
        _accept_forced_data(dm, state)
    module = module_from_config(cfg, data_stats(cfg, dm))
    callbacks = build_callbacks(cfg)
    if int(cfg.train.sample_every_steps) > 0:
        from radiodiff.training.callbacks import SampleCallback
        callbacks.append(SampleCallback.from_config(cfg, run_dir))
    callbacks += list(extra_callbacks)
    ckpt_dir = Path(cfg.train.ckpt_dir)
    lock = RankZeroLock(ckpt_dir, f"train.run_name={cfg.train.run_name}: ",
                        then=lambda: _write_run_config(cfg, ckpt_dir))
    trainer = build_trainer(cfg, run_dir, -1, [lock, *callbacks])
    trainer.callbacks.append(StopAtStepEnd())  # after Lightning's timer
    # the length in steps at the world size Lightning resolved (devices=auto, "0,1", [0, 1])
    batch_images = int(cfg.data.loader.batch_size) * trainer.world_size * int(
        cfg.trainer.accumulate_grad_batches)
    trainer.fit_loop.epoch_loop.max_steps = _max_steps(float(cfg.train.total_kimg) * 1000,
                                                       batch_images, state)
    del state
    try:
        if ckpt and trainer.is_global_zero:
            log.info("resuming from %s", ckpt)
        elif ckpt is None and cfg.train.init_from:
            warm_start(module, cfg.train.init_from)  # a refusal here leaves no folder
        lock.acquire_before_launch(trainer)
        try:
            _fit(trainer, module, dm, ckpt)
        finally:
            wandb_offline = _finish_wandb(cfg, trainer)
    finally:
        lock.release()
    return {"steps": int(trainer.global_step), "images_seen": module.images_seen,
            "checkpoint": str(ckpt_dir / LAST), "run_dir": str(run_dir),
            "resumed_from": ckpt, "wandb_offline": wandb_offline,
            "interrupted": bool(trainer.interrupted),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}}


def _write_run_config(cfg: DictConfig, ckpt_dir: Path) -> None:
    """The resolved config beside the checkpoints (rank 0, once it holds the folder's lock)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    atomic_text(ckpt_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _fit(trainer: L.Trainer, module: DiffusionModule, dm: CutoutDataModule,
         ckpt: str | None) -> None:
    """``trainer.fit``; Ctrl-C returns with ``trainer.interrupted`` set.

    Lightning catches the KeyboardInterrupt, tears down and calls ``sys.exit(1)``, leaving
    SIGINT ignored: that exit is turned back into a return here, and the SIGINT handler
    restored, so the caller can say what was kept (and a multirun stops cleanly).
    """
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


def _resume_state(cfg: DictConfig) -> tuple[str | None, dict | None]:
    """The checkpoint to resume (or None) and its state, checked before anything is
    written: hash, layout, finite weights, that it is this run (its identity) and, when
    ``data.out`` is prepared already, that it holds the data the checkpoint was trained on
    (its ``data_sha256``; :func:`~radiodiff.training.identity.check_resume`)."""
    ckpt = resume_path(cfg)
    if ckpt is None:
        return None, None
    state = read_checkpoint(ckpt, usage="resume from it with train.resume={}")
    data = Path(cfg.data.out)
    check_resume(cfg, state, ckpt, declared_sha256(data) if data.is_file() else None)
    return ckpt, state


def _accept_forced_data(dm: CutoutDataModule, state: dict) -> None:
    """Resume on other data when ``train.resume_force`` let it through
    (:func:`~radiodiff.training.identity.check_resume_data`): the DataModule's own check of
    the checkpoint's ``data_sha256`` would refuse it, so it is shown this file's hash."""
    recorded = recorded_data_sha256(state)
    current = dm.data_sha256
    if recorded is None or current is None or recorded == current:
        return
    load = dm.load_state_dict

    def load_state_dict(saved: dict) -> None:
        load({**saved, "data_sha256": current})

    dm.load_state_dict = load_state_dict


def _finish_wandb(cfg: DictConfig, trainer: L.Trainer) -> str | None:
    """End the W&B run (else the next job of a multirun would log into it); returns its
    folder when it is offline (:func:`wandb_offline_dir`)."""
    if str(cfg.logger.kind) != "wandb" or not trainer.is_global_zero:
        return None
    import wandb
    offline = wandb_offline_dir(wandb.run)
    wandb.finish()
    return offline


def wandb_offline_dir(run: Any) -> str | None:
    """The folder of an offline W&B run (``.../wandb/offline-run-<time>-<id>``, what
    ``wandb sync`` uploads), or None for no run or an online one."""
    if run is None:
        return None
    offline = getattr(run, "offline", None)
    if offline is None:
        offline = getattr(run.settings, "_offline", False)
    return str(Path(run.dir).parent) if offline else None


def data_stats(cfg: DictConfig, dm: CutoutDataModule) -> DataStats:
    """Conditions, their transform (fitted on the training rows), the training rows'
    condition table, sigma_data and the file's metadata, from a set-up DataModule."""
    scalars = [c for c in dm.conditions if c != "label"]
    meta = read_prepared(dm.path, images=False, verify=True)  # layout, chunks, data_sha256
    check_image_size(meta.image_size, int(cfg.data.image_size), dm.path)
    check_prepared_options(meta.attrs.get("config_yaml"), cfg.data, dm.path)
    rows = dm.train_dataset.indices
    transform = ConditionTransform.fit({n: meta.columns[n][rows] for n in scalars}, scalars,
                                       method=str(cfg.train.condition_transform))
    sigma_data = cfg.schedule.sigma_data
    if sigma_data is None:  # measured on the encoded training images (STYLE 5)
        sigma_data = _measure_sigma_data(dm, IntensityTransform.from_config(cfg.schedule))
    dataset = {k: meta.attrs.get(k) for k in ("name", "classes", "image_unit", "scaling",
                                               "negatives", "data_sha256", "inputs_sha256")}
    dataset.update(meta.geometry())
    floor = cfg.data.get("projection_floor")
    check_projection_config(cfg.data)  # before training, not first at export
    if floor == DATA_FLOOR:  # recorded for the release's output projection (export)
        dataset["projection_floor_max"] = read_kept_floor(
            dm.path, rows, int(cfg.data.get("projection_halo_px", HALO)))
    num_classes = len(dm.classes) if "label" in dm.conditions else 0
    table = ConditionTable.from_rows(meta.columns, rows, bool(num_classes), scalars)
    return DataStats(float(sigma_data), transform, tuple(scalars), num_classes, dataset,
                     table)


def check_image_size(file_size: int | None, config_size: int, path: str | Path) -> None:
    """The one rule: a run trains at ``data.image_size``, so the prepared file must hold
    images of that side (checkpoint and release record the config's size).

    Raises
    ------
    ConfigError
        Naming both sizes and the two ways out.
    """
    if file_size is not None and file_size != config_size:
        raise ConfigError(f"{path}: images are {file_size}x{file_size} pixels but "
                          f"data.image_size={config_size}; set data.image_size={file_size} "
                          f"or prepare the data again at {config_size} pixels")


def check_prepared_options(stored_yaml: str | None, d: DictConfig, path: str | Path) -> None:
    """The one rule: a run trains on data prepared with its own ``data`` options (a
    changed cut, scaling or split seed on the same ``data.out`` would otherwise train on the
    old file while the checkpoint records the new options).

    Raises
    ------
    ConfigError
        Naming the options that differ and the two ways out.
    """
    from radiodiff.data.prepare import preparation_changes
    changed = preparation_changes(stored_yaml, d)
    if changed:
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(f"{path} was prepared with other data options than this run's: "
                          f"{'; '.join(changed[:4])}{more}; prepare it again (`radiodiff "
                          f"prepare data={d.name} <these options> --overwrite`) or give this "
                          "run its own file (data.out=<new .h5>)")


def _max_steps(total_images: float, batch_images: int, state: dict | None) -> int:
    """Global step at which ``total_images`` are reached, resuming (``state``: the
    checkpoint) at this batch size (earlier pieces may have used another: the rest is
    counted from ``images_seen``)."""
    if not state:
        return math.ceil(total_images / batch_images)
    seen, step = checkpoint_progress(state, batch_images)
    return step + math.ceil(max(0.0, total_images - seen) / batch_images)


def _measure_sigma_data(dm: CutoutDataModule, intensity: IntensityTransform | None = None,
                        max_rows: int = 4096) -> float:
    """Standard deviation of the encoded training images (all, or a seeded sample)."""
    import torch
    intensity = intensity or IntensityTransform()
    ds = dm.train_dataset
    if ds.images is not None:
        return float(intensity.encode(ds.images.double()).std(correction=0))
    import h5py
    rows = np.sort(np.random.default_rng(dm.seed).permutation(ds.indices)[:max_rows])
    with h5py.File(dm.path, "r") as f:
        x = torch.from_numpy(np.asarray(f["images"][rows], np.float64))
    return float(intensity.encode(x).std(correction=0))


def warm_start(module: DiffusionModule, release_dir: str | Path) -> None:
    """Initialise network and EMAs from a release's weights (a new run: optimiser, step
    and schedules start afresh).

    The release may differ from this run in its conditions only (e.g. ``models/first``,
    class-conditioned, into a peak-flux/LAS/class model of the same survey):
    :func:`adapt_state` carries classes over by name and starts new condition paths at
    zero, so step 0 computes what the release computed unconditionally. Any other
    difference (channels, blocks, resolution) is an error.
    """
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import load_release
    release = load_release(resolve_model(release_dir))  # a folder or a shipped name
    target = module.net.state_dict()
    try:
        state, notes = adapt_state(release.denoiser.state_dict(), target,
                                   list(release.meta.get("classes") or []),
                                   list(module.hparams.get("dataset", {}).get("classes") or []))
    except ValueError as exc:
        model = module.hparams.cfg["model"]["name"]
        raise ValueError(f"train.init_from={release_dir}: weights do not fit model={model} "
                         f"({exc})") from exc
    lineage = warm_start_lineage(release.meta, release.weights_sha256,
                                 (release.config.get("data") or {}).get("name"))
    before = release.meta.get("warm_start")
    _warn_across_sets(release_dir, lineage["data_seen"], module.hparams.cfg,
                      unrecorded=bool(before) and "data_seen" not in before)
    # sigma_data stays this run's (measured on its own encoding of the data)
    state["sigma_data"] = module.net.sigma_data.clone()
    for net in (module.net, module.ema, *module.ema_bank):
        net.load_state_dict(state, strict=True)
    module.warm_start = lineage
    log.info("warm-started from %s (%s images seen)%s", release_dir,
             release.meta.get("images_seen"), "; " + "; ".join(notes) if notes else "")


def _warn_across_sets(release_dir: str | Path, data_seen: list[str], cfg: Any,
                      unrecorded: bool = False) -> None:
    """One warning when a release along the warm-start chain was trained on another data set
    than this run: catalogues of one survey share sources (FIRST and MiraBest: docs/data.md,
    "Shared sources"), and a shared source in this run's validation or test split is no
    longer unseen. ``unrecorded``: the release was warm-started itself and exported before
    the chain's data sets were recorded (no ``warm_start.data_seen``), so they are unknown."""
    ours = (cfg.get("data") or {}).get("name")
    others = [name for name in data_seen if name != ours]
    if unrecorded:
        log.warning("train.init_from=%s was warm-started itself, and the data sets before it "
                    "are not recorded (exported before warm_start.data_seen): sources of this "
                    "run's validation and test splits may have been seen (docs/data.md, "
                    "'Shared sources')", release_dir)
    if ours and others:
        log.warning("train.init_from=%s has seen data=%s, this run trains on data=%s: sources "
                    "the sets share are seen before this run's validation and test splits "
                    "(count them: python bench/source_overlap.py data/%s.h5 data/%s.h5; "
                    "docs/data.md, 'Shared sources')",
                    release_dir, ",".join(others), ours, others[0], ours)


def warm_start_lineage(meta: dict[str, Any], weights_sha256: str,
                       data_name: str | None = None) -> dict:
    """What a warm-started run starts from, for its checkpoints and releases: the start
    release's weights hash, the images seen along the whole chain of warm starts before
    this run (its own ``images_seen`` plus its ``warm_start`` entry's, if any) and the data
    sets seen along it (``data_name``, the release's own, and its entry's)."""
    before = meta.get("warm_start") or {}
    seen = set(before.get("data_seen") or []) | ({data_name} if data_name else set())
    return {"weights_sha256": weights_sha256,
            "images_seen_total": int(before.get("images_seen_total", 0) or 0)
            + int(meta.get("images_seen") or 0),
            "data_seen": sorted(seen)}


LABEL_KEY = "net.map_label.weight"


def adapt_state(source: dict, target: dict, source_classes: list[str],
                target_classes: list[str]) -> tuple[dict, list[str]]:
    """Fit a release's state dict to a network that differs only in its conditions.

    Tensors of the same name and shape are copied. Class-embedding rows are copied by class
    name and the null row (the last) to the null row; a class the release never saw starts
    from the release's null row (its unconditional behaviour). Scalar-condition layers the
    release lacks start at zero (weights, bias and null vector), so they add nothing to the
    embedding until trained. Returns the new state and one note per adapted tensor; raises
    ValueError for any other missing, extra or reshaped tensor.
    """
    out, notes, problems = {}, [], []
    for key, t in target.items():
        s = source.get(key)
        if s is not None and s.shape == t.shape and (key != LABEL_KEY
                                                     or source_classes == target_classes):
            out[key] = s.clone()
        elif key == LABEL_KEY and s is not None and s.shape[1:] == t.shape[1:]:
            out[key], note = _adapt_labels(s, t, source_classes, target_classes)
            notes.append(note)
        elif s is None and (".map_scalar." in key or ".scalar_null." in key):
            out[key] = torch.zeros_like(t)
            notes.append(f"{key.split('.', 1)[1]} new, zero")
        else:
            problems.append(f"{key}: release {tuple(s.shape) if s is not None else 'none'}, "
                            f"model {tuple(t.shape)}")
    unused = sorted(set(source) - set(target))
    problems += [f"{k}: not in this model" for k in unused]
    if problems:
        raise ValueError("; ".join(problems[:4]) + (" ..." if len(problems) > 4 else ""))
    return out, notes


def _adapt_labels(s: torch.Tensor, t: torch.Tensor, source_classes: list[str],
                  target_classes: list[str]) -> tuple[torch.Tensor, str]:
    if len(source_classes) + 1 != s.shape[0] or len(target_classes) + 1 != t.shape[0]:
        raise ValueError(f"{LABEL_KEY}: {s.shape[0]} rows for classes {source_classes}, "
                         f"{t.shape[0]} for {target_classes}")
    null = s[-1]
    rows = [s[source_classes.index(c)] if c in source_classes else null
            for c in target_classes]
    kept = [c for c in target_classes if c in source_classes]
    new = [c for c in target_classes if c not in source_classes]
    return (torch.stack([*rows, null]).clone(),
            f"classes {kept} by name, {new or 'none'} from the null token")
