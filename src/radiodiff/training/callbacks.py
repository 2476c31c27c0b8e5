"""Sample-and-log callback: samples from the EMA weights every N steps (``cfg.sampler``).

Each rank draws its share of ``count`` samples (sample k uses seed ``base + k`` whatever the
number of ranks, :func:`radiodiff.seeds.callback_sample_seed`), pixel and shape statistics
of samples and of real validation images are gathered across ranks with torchmetrics, and
rank 0 logs Wasserstein-1 distances, histograms and an image grid to the run's logger (W&B,
TensorBoard; CSV gets the scalars) and saves the grid as PNG in the run folder.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from radiodiff.config import ConfigError
from radiodiff.io.artifacts import save_image_grid
from radiodiff.evaluation.collect import StatsCollector, histogram_distance
from radiodiff.diffusion.loop import sample_batches
from radiodiff.diffusion.sampling import SamplerSpec, seeded_noise
from radiodiff.seeds import callback_sample_seed, churn_generator
from radiodiff.training.boundary import StepBoundary

__all__ = ["SampleCallback"]


class SampleCallback(StepBoundary):
    """Every ``every_steps`` steps: ``count`` samples vs real validation images."""

    def __init__(self, every_steps: int, count: int = 64, spec: SamplerSpec = SamplerSpec(),
                 batch_size: int = 32, run_dir: str | Path = ".", seed: int = 0) -> None:
        self.every_steps, self.count, self.spec = int(every_steps), int(count), spec
        self.batch_size, self.run_dir, self.seed = int(batch_size), Path(run_dir), int(seed)
        self._real: dict[str, torch.Tensor] | None = None
        self.last: dict[str, float] = {}
        super().__init__()

    @classmethod
    def from_config(cls, cfg, run_dir) -> "SampleCallback":
        t = cfg.train
        if int(t.sample_count) < 1:
            raise ConfigError(f"train.sample_count={t.sample_count}: must be >= 1 while "
                              f"train.sample_every_steps={t.sample_every_steps} (0: no "
                              "in-training samples)")
        return cls(t.sample_every_steps, t.sample_count, SamplerSpec.from_config(cfg.sampler),
                   t.sample_batch_size, run_dir, int(cfg.seed))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # once per optimizer step (not per accumulated micro-batch)
        if self.every_steps > 0 and self.at_boundary(trainer) \
                and trainer.global_step % self.every_steps == 0:
            self.run(trainer, pl_module)

    # ---------------------------------------------------------------------------------
    def _my_share(self, trainer) -> np.ndarray:
        return np.arange(self.count)[trainer.global_rank::trainer.world_size]

    def _real_stats(self, trainer, module) -> dict[str, torch.Tensor]:
        if self._real is None:  # reference statistics once, compared many times
            val = trainer.datamodule.val_dataset
            collector = StatsCollector().to(module.device)
            for k in self._my_share(trainer):
                image, _ = val[int(k) % len(val)]
                collector.update(image[None].to(module.device))
            self._real = {k: v.cpu() for k, v in collector.compute().items()}
        return self._real

    @torch.no_grad()
    def sample(self, trainer, module) -> torch.Tensor:
        """This rank's samples (n_k, 1, H, W), conditions taken from validation rows: the one
        sampling loop (:func:`~radiodiff.diffusion.loop.sample_batches`) over the EMA. A
        churning sampler draws image by image, each with its own churn generator, so that
        the samples do not depend on the batch (slower than batches on a GPU)."""
        val = trainer.datamodule.val_dataset
        share = self._my_share(trainer)
        shape = tuple(val[0][0].shape)
        if not len(share):
            return torch.zeros((0, *shape), device=module.device)
        items = [val[int(k) % len(val)] for k in share]
        cond = module.encode_cond({name: torch.stack([c[name] for _, c in items]).to(
            module.device) for name in items[0][1]})
        seeds = [callback_sample_seed(self.seed, int(k)) for k in share]
        images, _ = sample_batches(module.ema, self.spec,
                                   lambda lo, hi: seeded_noise(seeds[lo:hi], shape),
                                   len(share), decode=module.intensity.decode, cond=cond,
                                   batch_size=self.batch_size, device=module.device,
                                   churn=lambda k: churn_generator(seeds[k]))
        return images.to(module.device).clone()  # a plain tensor, not an inference one

    def run(self, trainer: L.Trainer, module: L.LightningModule) -> dict[str, float]:
        was_training = module.training
        module.eval()
        try:
            fake = self.sample(trainer, module)
        finally:
            module.train(was_training)
        collector = StatsCollector().to(module.device)
        if len(fake):
            collector.update(fake)
        fake_stats = {k: v.cpu() for k, v in collector.compute().items()}
        real_stats = self._real_stats(trainer, module)
        self.last = {f"sample/w1_{k}": histogram_distance(fake_stats[k], real_stats[k])
                     for k in fake_stats}
        if trainer.is_global_zero:
            step = trainer.global_step
            images = fake.cpu().numpy()
            grid = save_image_grid(self.run_dir / "samples" / f"step_{step:08d}.png",
                                   images[:64],
                                   f"step {step}: {self.spec.name} {self.spec.steps} steps, EMA")
            self._log(trainer, step, fake_stats, real_stats, grid)
        return self.last

    def _log(self, trainer, step, fake_stats, real_stats, grid: Path) -> None:
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in self.last.items() if np.isfinite(v)}, step)
            kind = type(logger).__name__
            if kind == "WandbLogger":
                import wandb
                payload = {f"samples/{k}": wandb.Histogram(_finite(v)) for k, v in
                           fake_stats.items() if len(_finite(v))}
                payload.update({f"real/{k}": wandb.Histogram(_finite(v)) for k, v in
                                real_stats.items() if len(_finite(v))})
                payload["samples/grid"] = wandb.Image(str(grid))
                logger.experiment.log(payload, step=step)
            elif kind == "TensorBoardLogger":
                exp = logger.experiment
                for k, v in fake_stats.items():
                    if len(_finite(v)):
                        exp.add_histogram(f"samples/{k}", _finite(v), step)
                for k, v in real_stats.items():
                    if len(_finite(v)):
                        exp.add_histogram(f"real/{k}", _finite(v), step)


def _finite(v: torch.Tensor) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]
