"""Lightning's noise that is not the user's business, silenced wherever a Trainer runs
(training, ``radiodiff skymap --devices``); Lightning's real messages and warnings stay."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_lightning"]


class _DropMessages(logging.Filter):
    """Drop log records whose message contains one of ``needles`` (advertising, not news)."""

    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.needles)


def quiet_lightning() -> None:
    """Drop Lightning's "litlogger" advertisement and its ``LeafSpec`` FutureWarning
    (Lightning 2.6 with torch 2.13, on every loop). Idempotent."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)",
                            category=FutureWarning,
                            module=r"lightning\.pytorch\.utilities\._pytree")
    import lightning_utilities.core.rank_zero as rank_zero
    loggers = {rank_zero.log, *(logging.getLogger(name) for name in (
        "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
        "lightning_fabric.utilities.rank_zero"))}
    for logger in loggers:
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages("litlogger"))
