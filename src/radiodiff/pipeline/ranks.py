"""Decisions global rank 0 takes alone in a multi-process Lightning run, heard by every rank.

:func:`on_rank_zero` runs an action on rank 0 (a checkpoint's rotation, taking a lock) and
broadcasts its failure, so every rank stops with the same line instead of waiting in a
collective for a rank 0 that has gone.

A run of several processes (``--devices``, ``trainer=ddp``) writes one output (a checkpoint
folder, a sky map), so one process holds its lock (:func:`~radiodiff.io.artifacts.lock_output`):
global rank 0 (:class:`RankZeroLock`). Where rank 0 starts the other processes itself
(Lightning's launcher) or runs alone, it takes the lock before anything starts, and a refusal
is one line with nothing made. Where an external launcher (``torchrun``, ``srun``) started
every rank, the others cannot hear of rank 0's refusal before the process group exists: the
lock is then taken in the trainer's ``setup`` hook, through :func:`on_rank_zero`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from radiodiff.io.artifacts import OutputError, lock_output, unlock_output

__all__ = ["RankZeroLock", "launched_externally", "on_rank_zero"]


def launched_externally(trainer: L.Trainer) -> bool:
    """True when every process of ``trainer`` was started by an outside launcher."""
    env = getattr(trainer.strategy, "cluster_environment", None)
    return env is not None and bool(env.creates_processes_externally)


def on_rank_zero(trainer: L.Trainer, action: Callable[[], None]) -> None:
    """Run ``action`` on global rank 0 only; a failure there stops every rank.

    Rank 0 re-raises its exception; the other ranks raise :class:`OutputError` with its text.
    Every rank must call this at the same point (it is a collective, a broadcast).
    """
    failure: Exception | None = None
    text: str | None = None
    if trainer.is_global_zero:
        try:
            action()
        except Exception as exc:  # any failure: the other ranks must hear of it
            failure, text = exc, str(exc) or type(exc).__name__
    text = trainer.strategy.broadcast(text, src=0)
    if failure is not None:
        raise failure
    if text is not None:
        raise OutputError(text)


class RankZeroLock(Callback):
    """Rank 0 holds the output lock of ``target`` from :meth:`acquire_before_launch` (or the
    trainer's ``setup``) until :meth:`release`; a refusal stops every rank.

    Parameters
    ----------
    target : str or Path
        The output the run writes.
    prefix : str
        Put before a refusal's text (e.g. ``"train.run_name=NAME: "``).
    then : callable, optional
        Run on rank 0 right after the lock is taken (e.g. write the run's config there); a
        failure is broadcast like a refusal.
    """

    def __init__(self, target: str | Path, prefix: str = "",
                 then: Callable[[], None] | None = None) -> None:
        self.target, self.prefix, self.then = Path(target), prefix, then
        self.held = False

    def acquire(self) -> None:
        """Take the lock now (a refusal is :class:`OutputError`), then run ``then``."""
        if self.held:
            return
        try:
            lock_output(self.target)
        except OutputError as exc:
            raise OutputError(f"{self.prefix}{exc}") from None
        self.held = True
        if self.then is not None:
            self.then()

    def acquire_before_launch(self, trainer: L.Trainer) -> None:
        """On rank 0 when no outside launcher started the processes: :meth:`acquire` before
        ``fit``/``predict`` starts the others (nothing to tell them yet)."""
        if trainer.is_global_zero and not launched_externally(trainer):
            self.acquire()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        on_rank_zero(trainer, self.acquire)

    def release(self) -> None:
        """Give the lock back (nothing where this process does not hold it)."""
        if self.held:
            unlock_output(self.target)
            self.held = False
