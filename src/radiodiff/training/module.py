"""LightningModule: EDM loss, condition dropout, EMA, AdamW with warm-up. No sampling maths.

Every schedule is measured in images seen (STYLE 14): the count saved in the checkpoint plus
the steps since, so a run can resume with another batch size or number of devices (e.g. a
CPU piece at batch 32, then a GPU piece at batch 128). A resumed run continues exactly: the
noise of step ``k`` on rank ``r`` comes from a generator seeded by ``(seed, k, r)`` instead
of a running RNG state.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric

from radiodiff.diffusion.edm import edm_loss, noise_distribution
from radiodiff.diffusion.factory import build_denoiser, network_args
from radiodiff.diffusion.intensity import IntensityTransform
from radiodiff.diffusion.sampling import seed_generator, seed_state
from radiodiff.diffusion.conditions import ConditionTransform
from radiodiff.diffusion.unet import drop_conditions

__all__ = ["DiffusionModule", "checkpoint_progress", "ema_beta", "ema_lengths",
           "step_generator"]

# Loss is also logged in these ln(sigma) bins (EDM Fig. 5a style).
SIGMA_BINS = (0.0, 0.005, 0.02, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0, math.inf)


def ema_beta(batch_images: int, images_seen: int, halflife_kimg: float,
             rampup_ratio: float | None) -> float:
    """EMA decay for one step of ``batch_images`` (EDM training_loop.py, Sect. C.2)."""
    halflife = halflife_kimg * 1000.0
    if rampup_ratio is not None:
        halflife = min(halflife, images_seen * rampup_ratio)
    return 0.5 ** (batch_images / max(halflife, 1e-8))


def ema_lengths(train_cfg) -> list[float]:
    """Half-lives (kimg) of the run's EMAs: the main one, then ``ema_bank_kimg``."""
    return [float(train_cfg.ema_halflife_kimg),
            *(float(h) for h in train_cfg.get("ema_bank_kimg", []))]


def checkpoint_progress(checkpoint: dict, batch_images: int) -> tuple[int, int]:
    """(images seen, global step) of a checkpoint; older ones lack the image count."""
    step = int(checkpoint.get("global_step", 0))
    return int(checkpoint.get("images_seen", step * batch_images)), step


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """A generator that depends only on (seed, step, rank): resumable without RNG state.

    The words ``(seed, 7, step, rank)`` hashed by :func:`radiodiff.diffusion.sampling.seed_state`,
    packed as ``(w0 << 31) | (w1 >> 1)`` (this packing, not ``word_seed``'s, is what runs
    resumed from existing checkpoints continue with).
    """
    w0, w1 = (int(w) for w in seed_state(seed, 7, step, rank, n=2))
    return seed_generator(w0 << 31 | w1 >> 1, device=device)


class DiffusionModule(L.LightningModule):
    """EDM denoiser ``D(x, sigma, cond)`` around the U-Net, trained with the EDM loss.

    Parameters
    ----------
    cfg : DictConfig or dict
        The resolved run config (``model``, ``schedule``, ``train``, ``data``, ``seed``).
    num_classes : int
        Classes of the label condition (0: no label conditioning).
    scalar_conditions : list of str
        Continuous conditions fed to the network (e.g. ``peak_flux``).
    transform : dict
        :meth:`ConditionTransform.to_dict` of the condition normalisation.
    sigma_data : float
        Standard deviation of the training images (model space).
    dataset : dict
        Metadata of the training file (classes, hashes, units) kept for export.
    intensity : dict, optional
        :meth:`IntensityTransform.to_dict` of the data -> model space encoding applied to
        every batch (None: identity).
    """

    def __init__(self, cfg: Any, num_classes: int, scalar_conditions: list[str],
                 transform: dict, sigma_data: float, dataset: dict | None = None,
                 intensity: dict | None = None) -> None:
        super().__init__()
        cfg = (OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
               if isinstance(cfg, DictConfig) else cfg)
        # Plain containers only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters({"cfg": cfg, "num_classes": int(num_classes),
                                   "scalar_conditions": list(scalar_conditions),
                                   "transform": transform, "sigma_data": float(sigma_data),
                                   "dataset": dataset or {},
                                   "intensity": IntensityTransform.from_dict(
                                       intensity).to_dict(),
                                   "model_args": network_args(
                                       cfg["model"], int(cfg["data"]["image_size"]),
                                       int(num_classes), scalar_conditions)})
        self.cfg = OmegaConf.create(cfg)
        self.transform = ConditionTransform.from_dict(transform)
        self.scalar_conditions = list(scalar_conditions)
        self.net = build_denoiser(self.hparams.model_args, float(sigma_data))
        # Never optimised; its mode follows the module's (Lightning warns about eval submodules).
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        # EMAs of other lengths, chosen among after training (STYLE: EMA length measured)
        self.ema_bank = torch.nn.ModuleList(
            copy.deepcopy(self.net).requires_grad_(False)
            for _ in ema_lengths(self.cfg.train)[1:])
        self.intensity = IntensityTransform.from_dict(self.hparams.intensity)
        self.P_mean, self.P_std = noise_distribution(
            float(self.cfg.schedule.P_mean), float(self.cfg.schedule.P_std), float(sigma_data),
            bool(self.cfg.schedule.get("relative", False)))
        self.bin_loss = torch.nn.ModuleList(
            MeanMetric(nan_strategy="ignore") for _ in SIGMA_BINS[:-1])
        # (images, global step) at the restored checkpoint; images_seen counts on from there.
        self._resumed_at = (0, 0)

    # ------------------------------------------------------------------------------ helpers
    @property
    def batch_images(self) -> int:
        """Images per optimiser step over all ranks."""
        t = self.trainer
        return (int(self.cfg.data.loader.batch_size) * t.world_size * t.accumulate_grad_batches)

    @property
    def images_seen(self) -> int:
        """Training images seen over all pieces, each piece at its own batch size."""
        images, step = self._resumed_at
        return images + (int(self.global_step) - step) * self.batch_images

    def encode_cond(self, cond_raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw loader conditions -> network conditions (label kept, scalars normalised)."""
        cond = {}
        if self.hparams.num_classes and "label" in cond_raw:
            cond["label"] = cond_raw["label"].long()
        for name in self.scalar_conditions:
            cond[name] = self.transform.encode_batch({name: cond_raw[name]})[name].to(
                cond_raw[name].device)
        return cond

    # ----------------------------------------------------------------------------- training
    def training_step(self, batch, batch_idx):
        x0, cond_raw = batch
        x0 = self.intensity.encode(x0)
        g = step_generator(int(self.cfg.seed), int(self.global_step), self.global_rank,
                           x0.device)
        cond = drop_conditions(self.encode_cond(cond_raw), float(self.cfg.model.label_dropout), g)
        loss, sigma = edm_loss(self.net, x0, cond, P_mean=self.P_mean, P_std=self.P_std,
                               generator=g)
        self.log("train/loss", loss.mean(), prog_bar=True, sync_dist=True)
        # Loss per sigma bin, averaged over the last log interval (training is one endless
        # epoch, so epoch-level logging would never fire); MeanMetric syncs across ranks.
        # Weights instead of boolean indexing: no device-to-host sync per step.
        per_image, s_flat = loss.detach().float().reshape(-1), sigma.detach().reshape(-1)
        for metric, lo, hi in zip(self.bin_loss, SIGMA_BINS[:-1], SIGMA_BINS[1:]):
            sel = ((s_flat >= lo) & (s_flat < hi)).float()
            metric.update(per_image, weight=sel)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            for metric, lo, hi in zip(self.bin_loss, SIGMA_BINS[:-1], SIGMA_BINS[1:]):
                if metric.weight > 0 or self.trainer.world_size > 1:
                    self.log(f"train/loss_sigma_{lo:g}-{hi:g}", metric.compute(),
                             on_step=True, on_epoch=False)
                metric.reset()
        self.log("train/kimg", self.images_seen / 1000.0, sync_dist=False)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss.mean()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        t = self.cfg.train
        params = [p.detach() for p in self.net.parameters()]
        lengths = ema_lengths(t)
        with torch.no_grad():
            for ema, halflife in zip([self.ema, *self.ema_bank], lengths):
                beta = ema_beta(self.batch_images, self.images_seen, halflife,
                                t.ema_rampup_ratio)
                # One fused launch; each EMA is a deep copy of the net (same dtypes, devices).
                torch._foreach_lerp_(list(ema.parameters()), params, 1.0 - beta)
                for b_ema, b in zip(ema.buffers(), self.net.buffers()):
                    b_ema.copy_(b)

    def validation_step(self, batch, batch_idx):
        x0, cond_raw = batch
        x0, cond = self.intensity.encode(x0), self.encode_cond(cond_raw)
        # Fixed draws per batch: the validation loss is comparable across the whole run.
        t = self.cfg.train
        lengths = ema_lengths(t)
        for k, (ema, halflife) in enumerate(zip([self.ema, *self.ema_bank], lengths)):
            g = step_generator(int(self.cfg.seed) + 1, batch_idx, self.global_rank, x0.device)
            loss, _ = edm_loss(ema, x0, cond, P_mean=self.P_mean, P_std=self.P_std,
                               generator=g)
            name = "val/loss" if k == 0 else f"val/loss_ema{halflife:g}k"
            self.log(name, loss.mean(), prog_bar=k == 0, sync_dist=True)

    def configure_optimizers(self):
        t = self.cfg.train
        opt = torch.optim.AdamW(self.net.parameters(), lr=t.lr, betas=tuple(t.betas),
                                weight_decay=t.weight_decay)

        def rampup(step: int) -> float:
            # linear warm-up in images seen (the one count, right across pieces of another
            # batch size); the scheduler steps after each optimiser step
            if t.lr_rampup_kimg <= 0:
                return 1.0
            seen = self.images_seen + self.batch_images if self._trainer else 0
            return min(1.0, seen / (t.lr_rampup_kimg * 1000.0))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, rampup)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["images_seen"] = self.images_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_at = checkpoint_progress(checkpoint, self.batch_images)
