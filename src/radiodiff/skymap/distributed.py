"""``radiodiff skymap --devices N``: the shards of one map under Lightning's predict loop.

Lightning owns the processes, the devices and the split: :func:`build_skymap_on_devices`
runs ``Trainer.predict`` (strategy ``ddp`` by default) over :class:`ShardIndices`, whose
items are shard numbers 0..N-1. Each rank gets its own shard numbers from the
distributed sampler Lightning puts in the loader (unrepeated for prediction), renders
them in :meth:`ShardRenderer.predict_step` and writes them with the shard writer of
``radiodiff skymap --shard K/N``; then global rank 0 merges them
(:func:`~radiodiff.skymap.build.merge_shards`). The map is bit-identical to a single run
(every stamp and noise pixel depends only on the seed and the source or pixel, and
``render.batch_invariant`` keeps the model images independent of the batches).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as L
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from radiodiff.pipeline.quiet import quiet_lightning
from radiodiff.pipeline.ranks import RankZeroLock
from radiodiff.skymap.build import (check_map_output, map_grid, merge_shards, plan_skymap,
                                    render_into)
from radiodiff.skymap.sky import tile_rows

__all__ = ["ShardIndices", "ShardRenderer", "build_skymap_on_devices"]

# Lightning's advice for data loaders of real data (a shard number needs no workers); its
# other noise: quiet_lightning.
_QUIET = (r".*does not have many workers.*",)


class ShardIndices(Dataset):
    """The shard numbers 0..n-1 of a map split into ``n`` shards."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> int:
        return int(k)


def _shard_list(batch: list[int]) -> list[int]:
    """Collate: a batch of shard numbers stays a list of ints."""
    return [int(k) for k in batch]


class ShardRenderer(L.LightningModule):
    """Renders and writes shards (K, ``n_shards``) of the map of ``cfg`` into ``out``.

    The plan (grid, sources, release) is made once per rank in :meth:`setup`; the
    release's denoiser becomes a submodule, so Lightning puts it on the rank's device.
    """

    def __init__(self, cfg: DictConfig, out: str | Path, n_shards: int) -> None:
        super().__init__()
        self.cfg, self.out, self.n_shards = cfg, Path(out), int(n_shards)
        self.plan = None

    def setup(self, stage: str) -> None:
        self.plan = plan_skymap(self.cfg)
        if self.plan.cutouts is not None:
            self.denoiser = self.plan.cutouts.release.denoiser

    def predict_step(self, batch: list[int], batch_idx: int) -> list[int]:
        for k in batch:
            render_into(self.plan, self.out, (k, self.n_shards))
        return batch

    def on_predict_end(self) -> None:
        self.trainer.strategy.barrier("skymap-shards-written")  # all shards, then merge


def build_skymap_on_devices(cfg: DictConfig, out: str | Path, devices: Any,
                            accelerator: str = "auto", strategy: str = "ddp",
                            shards: Optional[int] = None, num_nodes: int = 1,
                            progress_bar: bool = False,
                            overwrite: bool = False) -> Optional[dict[str, Any]]:
    """Render the map of ``cfg`` into ``out`` as shards over Lightning devices, then merge.

    Parameters
    ----------
    cfg : DictConfig
        The skymap config (:func:`~radiodiff.skymap.config.load_skymap_config`).
    out : str or Path
        Output folder: ``shards/`` and ``skymap_config.yaml``, then the final files.
    devices, accelerator, strategy, num_nodes
        Lightning's ``Trainer`` arguments (``devices=2, accelerator="cpu"``: two processes
        on this machine, gloo).
    shards : int, optional
        Number of shards (horizontal strips); default: one per process (world size).
    progress_bar : bool
        Lightning's progress bar over the shards (rank 0).
    overwrite : bool
        Replace an earlier map's own files in ``out`` (checked before any rendering by
        every process, as a single run checks it; the shards and the user's files are
        kept). Without it a folder that holds a map is refused before any rendering.

    Returns
    -------
    dict or None
        :func:`~radiodiff.skymap.build.merge_shards`'s result on global rank 0; None on
        the other ranks (under ``ddp`` every rank runs the caller's code).
    """
    quiet_lightning()
    lock = RankZeroLock(out)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy,
                        num_nodes=num_nodes, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=progress_bar,
                        default_root_dir=str(out), callbacks=[lock])
    n = trainer.world_size if shards is None else int(shards)
    if n < 1:
        raise ValueError(f"--shards must be >= 1, got {n}")
    if n < trainer.world_size:  # an idle rank would wait at the merge barrier forever
        raise ValueError(f"--shards {n} is fewer than the {trainer.world_size} processes of "
                         f"--devices: give at least one shard per process")
    tile_rows(map_grid(cfg).shape[0], 0, n)  # at most one shard per map row, said now
    loader = DataLoader(ShardIndices(n), batch_size=1, collate_fn=_shard_list)
    # Under ddp every process runs this code: each checks the output before any rendering
    # (under torchrun or srun a refusal on rank 0 alone would leave the others waiting);
    # global rank 0 holds its lock (a run writing it already is refused on every rank:
    # RankZeroLock), then merges.
    check_map_output(out, overwrite, lock=False)
    try:
        lock.acquire_before_launch(trainer)
        with warnings.catch_warnings():
            for text in _QUIET:
                warnings.filterwarnings("ignore", message=text)
            trainer.predict(ShardRenderer(cfg, out, n), dataloaders=loader,
                            return_predictions=False)
        return merge_shards(out, overwrite) if trainer.is_global_zero else None
    finally:
        lock.release()
