"""LightningModule: EDM loss, condition dropout, EMA, AdamW with warm-up. No sampling maths.

Every schedule is measured in images seen (STYLE 14): the count saved in the checkpoint plus
the steps since, so a run can resume with another batch size or number of devices (e.g. a
CPU piece at batch 32, then a GPU piece at batch 128). A resumed run continues exactly: the
noise of step ``k`` on rank ``r`` comes from a generator seeded by ``(seed, k, r)`` (and the
micro-batch, with gradient accumulation) instead of a running RNG state; so do the dropout
masks (``model.dropout`` > 0: the global generator is seeded per step).

Resume guarantee: resuming from a ``last.ckpt`` taken at step ``k`` (at the end of a piece,
or mid-run by ``ckpt_every_steps`` / ``ckpt_every_minutes`` before a crash or kill -9)
gives, at every later step, network, EMA and optimiser tensors bit-identical to the
uninterrupted run, provided batch size, number of devices, precision, hardware and library
versions are the same (tested on CPU, fp32). Steps after ``k`` that the crash lost are
recomputed. A piece with another batch size or device count continues every schedule by
images seen but is, by design, a different run.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric

from radiodiff.config import ConfigError
from radiodiff.diffusion.edm import edm_loss, noise_distribution
from radiodiff.diffusion.factory import build_denoiser, network_args
from radiodiff.diffusion.intensity import IntensityTransform
from radiodiff.seeds import dropout_seed, step_generator, validation_step_generator
from radiodiff.diffusion.condition_table import ConditionTable
from radiodiff.diffusion.conditions import ConditionTransform
from radiodiff.diffusion.unet import drop_conditions
from radiodiff.pipeline.checkpoint import ema_lengths
from radiodiff.training.identity import run_identity

__all__ = ["DiffusionModule", "OptimSettings", "optim_settings", "EMASettings", "Conditioning",
           "DataStats", "module_from_config", "checkpoint_progress", "ema_beta",
           "sigma_loss_line"]

log = logging.getLogger(__name__)

# Loss is also logged in these ln(sigma) bins (EDM Fig. 5a style).
SIGMA_BINS = (0.0, 0.005, 0.02, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0, math.inf)


def ema_beta(batch_images: int, images_seen: int, halflife_kimg: float,
             rampup_ratio: float | None) -> float:
    """EMA decay for one step of ``batch_images`` (EDM Sect. C.2; half-life in images)."""
    halflife = halflife_kimg * 1000.0
    if rampup_ratio is not None:
        halflife = min(halflife, images_seen * rampup_ratio)
    return 0.5 ** (batch_images / max(halflife, 1e-8))


def checkpoint_progress(checkpoint: dict, batch_images: int) -> tuple[int, int]:
    """(images seen, global step) of a checkpoint; older ones lack the image count."""
    step = int(checkpoint.get("global_step", 0))
    return int(checkpoint.get("images_seen", step * batch_images)), step


@dataclass(frozen=True)
class DataStats:
    """What the module needs to know of the training data (measured by the train entry)."""
    sigma_data: float
    transform: ConditionTransform
    scalar_conditions: tuple[str, ...] = ()
    num_classes: int = 0
    dataset: dict = field(default_factory=dict)  # file metadata kept for export
    # the training rows' conditions (drawn from at sampling), None: nothing to record
    train_conditions: ConditionTable | None = None


@dataclass(frozen=True)
class OptimSettings:
    """AdamW with a linear warm-up and an optional linear cool-down, both measured in images
    (``train.lr*``, ``betas``, ...).

    The cool-down (``lr_decay_kimg`` > 0) takes the rate linearly from ``lr`` at
    ``lr_decay_start_kimg`` thousand images to 0 ``lr_decay_kimg`` thousand images later, and
    holds it at 0 after (a run should end there: ``train.total_kimg`` = start + length): the
    warmup-stable-decay schedule, whose cool-down can branch from any checkpoint of a
    constant-rate run (``train.resume=<ckpt> train.resume_force=true``). A cool-down that
    starts within the warm-up multiplies with it. The step that brings the count to ``n``
    images runs at ``lr * factor(n)``.
    """
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_rampup_kimg: float = 2.0
    lr_decay_start_kimg: float | None = None
    lr_decay_kimg: float = 0.0

    def __post_init__(self) -> None:
        for key in ("lr", "lr_rampup_kimg", "lr_decay_kimg"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"train.{key}={value}: must be a finite number >= 0")
        start = self.lr_decay_start_kimg
        if self.lr_decay_kimg > 0 and (start is None or not math.isfinite(start) or start < 0):
            raise ConfigError(f"train.lr_decay_start_kimg={start}: a cool-down "
                              f"(train.lr_decay_kimg={self.lr_decay_kimg:g}) needs where it "
                              "starts, in thousands of images >= 0")
        if self.lr_decay_kimg <= 0 and start is not None:
            raise ConfigError(f"train.lr_decay_start_kimg={start}: no cool-down length; set "
                              "train.lr_decay_kimg > 0 (thousands of images) or leave both out")

    @property
    def decay_end_kimg(self) -> float | None:
        """Where the cool-down reaches 0 (thousands of images); None without one."""
        return None if self.lr_decay_kimg <= 0 else self.lr_decay_start_kimg + self.lr_decay_kimg

    def factor(self, images: float) -> float:
        """The learning rate over ``lr`` after ``images`` training images (any rank count or
        batch size: the one count that pieces share)."""
        ramp = 1.0 if self.lr_rampup_kimg <= 0 else min(1.0, images / (self.lr_rampup_kimg * 1e3))
        if self.lr_decay_kimg <= 0:
            return ramp
        past = (images - self.lr_decay_start_kimg * 1e3) / (self.lr_decay_kimg * 1e3)
        return ramp * min(1.0, max(0.0, 1.0 - past))


@dataclass(frozen=True)
class EMASettings:
    """Half-lives (kimg) of the main EMA then the bank, and the early ramp-up ratio."""
    halflives_kimg: tuple[float, ...] = (5.0,)
    rampup_ratio: float | None = 0.05


@dataclass(frozen=True)
class Conditioning:
    """Loader conditions -> network conditions, and their dropout for guidance."""
    transform: ConditionTransform
    scalars: tuple[str, ...] = ()
    num_classes: int = 0
    label_dropout: float = 0.0


class DiffusionModule(L.LightningModule):
    """Trains an EDM denoiser ``D(x, sigma, cond)`` with the EDM loss, EMAs and AdamW.

    Parameters
    ----------
    denoiser : EDMDenoiser
        From :func:`radiodiff.diffusion.factory.build_denoiser`; the EMAs are copies of it.
    optim, ema : OptimSettings, EMASettings
    noise : tuple of float
        ``(P_mean, P_std)`` of the training ln(sigma) distribution (EDM Table 1).
    intensity : IntensityTransform
        Data -> model space encoding applied to every batch.
    conditioning : Conditioning
    batch_size : int
        Images per batch on one rank (images seen = steps * batch * ranks * accumulation).
    seed : int
        Seed of the per-step noise (:func:`~radiodiff.seeds.step_generator`).
    hparams : dict, optional
        Plain containers saved in the checkpoint for export and resume (see
        :func:`module_from_config`).
    """

    def __init__(self, denoiser: torch.nn.Module, optim: OptimSettings, ema: EMASettings,
                 noise: tuple[float, float], intensity: IntensityTransform,
                 conditioning: Conditioning, batch_size: int, seed: int = 0,
                 hparams: dict | None = None) -> None:
        super().__init__()
        if hparams:  # plain containers only: checkpoints load with weights_only=True
            self.save_hyperparameters(hparams)
        self.optim, self.ema_settings, self.conditioning = optim, ema, conditioning
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.net = denoiser
        # Never optimised; its mode follows the module's (Lightning warns about eval submodules).
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.ema_bank = torch.nn.ModuleList(
            copy.deepcopy(self.net).requires_grad_(False) for _ in ema.halflives_kimg[1:])
        self.intensity = intensity
        self.P_mean, self.P_std = (float(v) for v in noise)
        self.bin_loss = torch.nn.ModuleList(
            MeanMetric(nan_strategy="ignore") for _ in SIGMA_BINS[:-1])
        # [sum, count] per sigma bin since the last report and over this piece
        self._sigma_sums = {k: torch.zeros(2, len(SIGMA_BINS) - 1, dtype=torch.float64)
                            for k in ("interval", "piece")}
        # (images, global step) at the restored checkpoint; images_seen counts on from there.
        self._resumed_at = (0, 0)
        self._micro_step, self._micro = -1, 0  # micro-batch count within the optimiser step
        self._dropout = any(isinstance(m, torch.nn.Dropout) and m.p > 0
                            for m in denoiser.modules())
        self._ema_step = 0  # global step of the last EMA update (none due at step 0)
        self.warm_start: dict | None = None  # lineage of a warm start (fit.warm_start)
        self.training_code: list[dict] = []  # the code of each piece: record_training_code

    # ------------------------------------------------------------------------------ helpers
    @property
    def batch_images(self) -> int:
        """Images per optimiser step over all ranks."""
        t = self.trainer
        return self.batch_size * t.world_size * t.accumulate_grad_batches

    @property
    def images_seen(self) -> int:
        """Training images seen over all pieces, each piece at its own batch size."""
        images, step = self._resumed_at
        return images + (int(self.global_step) - step) * self.batch_images

    def encode_cond(self, cond_raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw loader conditions -> network conditions (label kept, scalars normalised)."""
        c, cond = self.conditioning, {}
        if c.num_classes and "label" in cond_raw:
            cond["label"] = cond_raw["label"].long()
        for name in c.scalars:
            cond[name] = c.transform.encode_batch({name: cond_raw[name]})[name].to(
                cond_raw[name].device)
        return cond

    # ----------------------------------------------------------------------------- training
    def training_step(self, batch, batch_idx):
        x0, cond_raw = batch
        x0 = self.intensity.encode(x0)
        micro = self._next_micro_batch()
        g = step_generator(self.seed, int(self.global_step), self.global_rank, x0.device,
                           micro)
        if self._dropout:  # nn.Dropout draws from the global generator: seed it per step
            torch.manual_seed(dropout_seed(self.seed, int(self.global_step), self.global_rank,
                                           micro))
        cond = drop_conditions(self.encode_cond(cond_raw), self.conditioning.label_dropout, g)
        loss, sigma = edm_loss(self.net, x0, cond, P_mean=self.P_mean, P_std=self.P_std,
                               generator=g)
        self._check_loss(loss)
        self.log("train/loss", loss.mean(), prog_bar=True, sync_dist=True)
        self._log_sigma_bins(loss.detach().float().reshape(-1), sigma.detach().reshape(-1))
        self.log("train/kimg", self.images_seen / 1000.0, sync_dist=False)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss.mean()

    def _next_micro_batch(self) -> int:
        """The index of this training step's micro-batch within its optimiser step (0
        without gradient accumulation), counted from the optimiser step: a resumed run
        replays a step cut short from its first micro-batch (the data from the images
        seen), so it starts at 0 as the uninterrupted one did."""
        step = int(self.global_step)
        self._micro = self._micro + 1 if self._micro_step == step else 0
        self._micro_step = step
        return self._micro

    def _check_loss(self, loss: torch.Tensor) -> None:
        """Stop at the first non-finite loss, before the optimiser step spreads it into the
        weights (and before any checkpoint holds them). One device sync per step; under DDP
        also one all-reduce of one number, summing the verdict over the ranks so that all
        stop together (a rank that stopped alone would leave the others waiting in the
        gradient all-reduce)."""
        bad = (~torch.isfinite(loss)).any().float()
        if self._trainer is not None:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if bool(bad > 0):
            from radiodiff.io.integrity import IntegrityError
            raise IntegrityError(
                f"training: the loss is NaN or inf at step {int(self.global_step)} "
                f"({self.images_seen} images seen); the last checkpoint was kept as it was. "
                "Lower train.lr, check the data (radiodiff inspect) or resume from prev.ckpt")

    def _log_sigma_bins(self, per_image: torch.Tensor, sigma: torch.Tensor) -> None:
        # Averaged over the last log interval (training is one endless epoch, so epoch-level
        # logging would never fire); MeanMetric syncs across ranks. Weights instead of
        # boolean indexing: no device-to-host sync per step.
        sums = []
        for metric, lo, hi in zip(self.bin_loss, SIGMA_BINS[:-1], SIGMA_BINS[1:]):
            sel = ((sigma >= lo) & (sigma < hi)).float()
            metric.update(per_image, weight=sel)
            sums.append(torch.stack([(per_image * sel).sum(), sel.sum()]))
        self._add_sigma_sums(torch.stack(sums, dim=1))
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            for metric, lo, hi in zip(self.bin_loss, SIGMA_BINS[:-1], SIGMA_BINS[1:]):
                if metric.weight > 0 or self.trainer.world_size > 1:
                    self.log(f"train/loss_sigma_{lo:g}-{hi:g}", metric.compute(),
                             on_step=True, on_epoch=False)
                metric.reset()

    def _add_sigma_sums(self, sums: torch.Tensor) -> None:
        for key, acc in self._sigma_sums.items():
            if acc.device != sums.device:
                acc = self._sigma_sums[key] = acc.to(sums.device)
            acc += sums.double()

    def report_sigma_loss(self, which: str) -> str:
        """Log the mean loss per sigma bin since the last report (``interval``) or over this
        piece (``piece``): one console line and ``loss_sigma/<lo>-<hi>`` metrics.

        Collective under DDP: every rank must call it.
        """
        acc = self._sigma_sums[which]
        total = self.trainer.strategy.reduce(acc.to(self.device, copy=True), reduce_op="sum")
        acc.zero_()
        line = sigma_loss_line(total.cpu())
        if self.trainer.is_global_zero:
            log.info("loss by sigma (%s, step %d): %s", "since last validation"
                     if which == "interval" else "this run", self.global_step, line)
            metrics = {f"loss_sigma/{lo:g}-{hi:g}": float(s / n) for lo, hi, (s, n) in
                       zip(SIGMA_BINS[:-1], SIGMA_BINS[1:], total.T.tolist()) if n > 0}
            for logger in self.trainer.loggers:
                logger.log_metrics(metrics, step=int(self.global_step))
        return line

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.update_ema()

    def update_ema(self) -> None:
        """One EMA step for the optimiser step just taken (EDM Sect. C.2); idempotent per
        global step. Lightning calls callbacks' ``on_train_batch_end`` before the module's,
        so :class:`~radiodiff.training.fit.ResumeCheckpoint` calls this first: a checkpoint
        taken mid-run then holds this step's EMA, and a resume from it is bit-identical to
        the uninterrupted run (it used to miss one update, visible only as ~1e-10 because
        the early EMA ramp-up makes beta small)."""
        if self._ema_step == int(self.global_step):
            return
        self._ema_step = int(self.global_step)
        params = [p.detach() for p in self.net.parameters()]
        e = self.ema_settings
        with torch.no_grad():
            for ema, halflife in zip([self.ema, *self.ema_bank], e.halflives_kimg):
                beta = ema_beta(self.batch_images, self.images_seen, halflife, e.rampup_ratio)
                # One fused launch; each EMA is a deep copy of the net (same dtypes, devices).
                torch._foreach_lerp_(list(ema.parameters()), params, 1.0 - beta)
                for b_ema, b in zip(ema.buffers(), self.net.buffers()):
                    b_ema.copy_(b)

    def validation_step(self, batch, batch_idx):
        x0, cond_raw = batch
        x0, cond = self.intensity.encode(x0), self.encode_cond(cond_raw)
        # Fixed draws per batch: the validation loss is comparable across the whole run.
        lengths = self.ema_settings.halflives_kimg
        for k, (ema, halflife) in enumerate(zip([self.ema, *self.ema_bank], lengths)):
            g = validation_step_generator(self.seed, batch_idx, self.global_rank, x0.device)
            loss, _ = edm_loss(ema, x0, cond, P_mean=self.P_mean, P_std=self.P_std,
                               generator=g)
            name = "val/loss" if k == 0 else f"val/loss_ema{halflife:g}k"
            self.log(name, loss.mean(), prog_bar=k == 0, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.report_sigma_loss("interval")

    def on_train_end(self) -> None:
        self.report_sigma_loss("piece")

    def configure_optimizers(self):
        o = self.optim
        opt = torch.optim.AdamW(self.net.parameters(), lr=o.lr, betas=tuple(o.betas),
                                weight_decay=o.weight_decay)

        def schedule(step: int) -> float:
            # in images seen (the one count, right across pieces of another batch size);
            # the scheduler steps after each optimiser step
            return o.factor(self.images_seen + self.batch_images if self._trainer else 0)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        record_training_code(self.training_code, self.images_seen)
        # The first step of a resumed piece at this run's schedule and peak rate: the
        # checkpoint holds its own run's (base_lrs and the next step's rate), which a branch
        # (train.resume_force) or another batch size changes; an exact resume gets the same
        # numbers.
        for config in self.trainer.lr_scheduler_configs:
            s = config.scheduler
            if isinstance(s, torch.optim.lr_scheduler.LambdaLR):
                s.base_lrs = [self.optim.lr] * len(s.optimizer.param_groups)
                for group, rate in zip(s.optimizer.param_groups, s.lr_lambdas):
                    group["initial_lr"] = self.optim.lr
                    group["lr"] = self.optim.lr * rate(s.last_epoch)
                s._last_lr = [group["lr"] for group in s.optimizer.param_groups]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["images_seen"] = self.images_seen
        if "cfg" in self.hparams:  # what resume checks (training.identity.check_resume)
            checkpoint["run_identity"] = run_identity(self.hparams["cfg"])
        if self.warm_start:  # survives resumes: the export records it (pipeline.checkpoint)
            checkpoint["warm_start"] = dict(self.warm_start)
        checkpoint["training_code"] = [dict(piece) for piece in self.training_code]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.warm_start = checkpoint.get("warm_start")
        self.training_code = [dict(p) for p in checkpoint.get("training_code") or []]
        self._resumed_at = checkpoint_progress(checkpoint, self.batch_images)
        self._ema_step = self._resumed_at[1]  # the checkpoint's EMA is up to date


def record_training_code(pieces: list[dict], images_seen: int) -> None:
    """Append this process's code (git commit, package version) to ``pieces`` when it
    differs from the last piece's: a checkpoint, and the release exported from it, name
    the code of every stretch of training (a run resumed across commits included), where
    the release's own ``git_commit`` is the exporter's."""
    import radiodiff
    from radiodiff.io.provenance import git_commit

    code = dict(git_commit=git_commit(), package_version=radiodiff.__version__)
    if not pieces or {k: pieces[-1].get(k) for k in code} != code:
        pieces.append(dict(code, from_images=int(images_seen)))


def sigma_loss_line(sums: torch.Tensor) -> str:
    """``[0.02,0.05) 0.0312 | ...`` from ``[sum, count]`` per bin (empty bins left out)."""
    parts = [f"[{lo:g},{hi:g}) {s / n:.4g}" for lo, hi, (s, n) in
             zip(SIGMA_BINS[:-1], SIGMA_BINS[1:], sums.T.tolist()) if n > 0]
    return " | ".join(parts) or "no training steps"


def optim_settings(train_cfg) -> OptimSettings:
    """``train.lr*``, ``betas`` and ``weight_decay`` of a run's config, checked."""
    t = train_cfg
    start = t.get("lr_decay_start_kimg")
    return OptimSettings(float(t.lr), tuple(float(b) for b in t.betas), float(t.weight_decay),
                         float(t.lr_rampup_kimg), None if start is None else float(start),
                         float(t.get("lr_decay_kimg", 0.0)))


def module_from_config(cfg: DictConfig, data: DataStats) -> DiffusionModule:
    """The one place a run's config becomes the module's parts (network, optimiser, EMA,
    noise distribution, intensity encoding, conditioning) and its saved hyper-parameters."""
    container = (OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
                 if isinstance(cfg, DictConfig) else cfg)
    cfg = OmegaConf.create(container)
    sigma_data = float(data.sigma_data)
    model_args = network_args(cfg.model, int(cfg.data.image_size), int(data.num_classes),
                              list(data.scalar_conditions))
    intensity = IntensityTransform.from_config(cfg.schedule)
    hparams = {"cfg": container, "num_classes": int(data.num_classes),
               "scalar_conditions": list(data.scalar_conditions),
               "transform": data.transform.to_dict(), "sigma_data": sigma_data,
               "dataset": dict(data.dataset), "intensity": intensity.to_dict(),
               "model_args": model_args,
               # CSV text (exact floats): export writes it as the release's table
               "train_conditions": (data.train_conditions.to_csv()
                                    if data.train_conditions is not None else None)}
    t, s = cfg.train, cfg.schedule
    return DiffusionModule(
        build_denoiser(model_args, sigma_data),
        optim_settings(t),
        EMASettings(tuple(ema_lengths(t)), t.ema_rampup_ratio),
        noise_distribution(float(s.P_mean), float(s.P_std), sigma_data,
                           bool(s.get("relative", False))),
        intensity,
        Conditioning(data.transform, tuple(data.scalar_conditions), int(data.num_classes),
                     float(cfg.model.label_dropout)),
        batch_size=int(cfg.data.loader.batch_size), seed=int(cfg.seed), hparams=hparams)
