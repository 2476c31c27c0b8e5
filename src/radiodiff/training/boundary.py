"""Optimizer-step boundaries for callbacks (one rule, used by checkpointing, the time box,
the stop at a step's end and the in-training samples)."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

__all__ = ["StepBoundary"]


class StepBoundary(Callback):
    """Knows whether the batch that just ended closed an optimiser step (always without
    gradient accumulation). Stopping between the micro-batches of a step would drop their
    gradients and resume into a short step, so :class:`TimeBox` stops and
    :class:`ResumeCheckpoint` saves only at these boundaries (a kill between them resumes
    from the last one exactly: tested)."""

    def __init__(self) -> None:
        self._step_at_start = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_at_start = int(trainer.global_step)

    def at_boundary(self, trainer) -> bool:
        return int(trainer.global_step) != self._step_at_start
