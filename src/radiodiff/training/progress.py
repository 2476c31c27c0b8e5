"""Progress lines of a training piece: images/s, images seen of the total, and finish times.

After ``warmup_steps`` steps the callback logs the measured throughput and what it means
for the run: ``measured 8.4 images/s: 250,000 images to go take ~8 h 16 m; this piece
stops after 110 min``. Then every ``every_minutes`` a line with the images/s since the
last line, the loss and the estimated finish. ``train/images_per_s`` goes to the logger,
so a piece that shared the CPU shows as a dip in the curve.
"""

from __future__ import annotations

import logging
import time

from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

__all__ = ["ProgressLog", "duration"]


def duration(seconds: float) -> str:
    """``3 h 05 m``, ``12 m 30 s`` or ``45 s``."""
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} m"
    if s >= 60:
        return f"{s // 60} m {s % 60:02d} s"
    return f"{s} s"


class ProgressLog(Callback):
    """Throughput and estimated finish of the run and of this piece.

    Parameters
    ----------
    every_minutes : float
        Minutes between progress lines (<= 0: only the warm-up line).
    warmup_steps : int
        Steps timed before the first estimate (the first steps are slower: allocation).
    total_kimg : float
        The run's length, thousands of images.
    max_minutes : float or None
        This piece's wall-clock limit (``train.max_minutes``).
    """

    def __init__(self, every_minutes: float = 2.0, warmup_steps: int = 5,
                 total_kimg: float = 0.0, max_minutes: float | None = None) -> None:
        self.every = 60.0 * float(every_minutes)
        self.warmup = max(1, int(warmup_steps))
        self.total = 1000.0 * float(total_kimg)
        self.max_seconds = None if max_minutes is None else 60.0 * float(max_minutes)
        self._t0 = self._t_last = time.monotonic()
        self._seen0 = self._seen_last = 0
        self._steps = 0
        self.rate = float("nan")

    def on_train_start(self, trainer, pl_module) -> None:
        self._steps = 0
        self._seen0 = self._seen_last = int(pl_module.images_seen)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._steps += 1
        now, seen = time.monotonic(), int(pl_module.images_seen)
        if self._steps == 1:  # timing starts after the first (slow) step
            self._t0 = self._t_last = now
            self._seen0 = self._seen_last = seen
            return
        if self._steps == self.warmup + 1:
            self.rate = (seen - self._seen0) / max(now - self._t0, 1e-9)
            if trainer.is_global_zero:
                log.info(self._estimate(seen))
            self._t_last, self._seen_last = now, seen
        elif self.every > 0 and now - self._t_last >= self.every:
            self.rate = (seen - self._seen_last) / max(now - self._t_last, 1e-9)
            if trainer.is_global_zero:
                log.info(self._line(trainer, seen, now))
            self._t_last, self._seen_last = now, seen
        if self.rate == self.rate:  # not NaN
            pl_module.log("train/images_per_s", self.rate, on_step=True, on_epoch=False,
                          rank_zero_only=True)

    def _remaining(self, seen: int) -> float:
        return max(0.0, self.total - seen) / self.rate if self.rate > 0 else float("inf")

    def _estimate(self, seen: int) -> str:
        left = max(0.0, self.total - seen)
        text = (f"measured {self.rate:.2f} images/s: {left:,.0f} images to go take "
                f"~{duration(self._remaining(seen))}")
        if self.max_seconds is not None:
            text += (f"; this piece stops after {duration(self.max_seconds)} "
                     f"(~{self.rate * self.max_seconds:,.0f} images)")
        return text

    def _line(self, trainer, seen: int, now: float) -> str:
        loss = trainer.callback_metrics.get("train/loss")
        pct = 100.0 * seen / self.total if self.total > 0 else float("nan")
        text = (f"step {trainer.global_step}: {seen:,} / {self.total:,.0f} images "
                f"({pct:.1f} %), {self.rate:.2f} images/s")
        if loss is not None:
            text += f", loss {float(loss):.4f}"
        optimizers = getattr(trainer, "optimizers", None)
        if optimizers:  # the rate shows a warm-up or cool-down at work
            text += f", lr {optimizers[0].param_groups[0]['lr']:.3g}"
        text += f", run ends in ~{duration(self._remaining(seen))}"
        if self.max_seconds is not None:
            piece_left = self.max_seconds - (now - self._t0)
            text += f", piece in ~{duration(max(0.0, piece_left))}"
        return text
