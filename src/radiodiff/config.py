"""Typed (structured) configs behind the Hydra groups in ``conf/``.

Every YAML file in ``conf/`` is merged onto these dataclasses, so a misspelt key or a
value of the wrong type fails when the config is composed, not in the middle of a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

__all__ = [
    "Source", "Negatives", "Scaling", "NanPolicy", "OnError", "Duplicates", "CutAction", "Outside", "Centre",
    "CutsConfig", "CutoutConfig", "SplitConfig", "AugmentConfig", "LoaderConfig", "DataConfig",
    "DATA_FLOOR", "IslandConfig", "ProjectionConfig",
    "ModelConfig", "ScheduleConfig", "SamplerConfig", "TrainerConfig", "TrainConfig",
    "LoggerConfig",
    "PathsConfig", "Config", "ConfigError", "register_configs", "conf_dir", "load_config",
    "dotted_leaves",
]


class Source(str, Enum):
    first = "first"          # Griese et al. 2023 FIRST set from the firstgalaxydata wheel
    mirabest = "mirabest"    # catalogue + one FITS field per source
    lotss = "lotss"          # LoTSS-DR2 value-added catalogue + mosaics


class Negatives(str, Enum):
    clip = "clip"
    abs = "abs"
    keep = "keep"


class Scaling(str, Enum):
    per_image = "per_image"  # each image divided by its own peak -> [0, 1]
    dataset = "dataset"      # one global offset/scale for the whole set


class NanPolicy(str, Enum):
    drop = "drop"  # cutouts containing NaN (blanked / off-survey pixels) are removed
    fill = "fill"  # NaN pixels are replaced by ``cuts.nan_fill``


class OnError(str, Enum):
    stop = "stop"    # stop with the error before anything is written
    error = "error"  # the same as stop (the name the hardening issue uses)
    skip = "skip"    # skip the source and count it under its reason (row id in the summary)


class Duplicates(str, Enum):
    drop = "drop"    # later rows with the same name or position (within a beam) are removed
    keep = "keep"    # all kept, reported; a duplicate takes the split of its first row
    error = "error"  # stop with the list of duplicates before anything is written


class CutAction(str, Enum):
    drop = "drop"  # sources failing a cut are not written
    flag = "flag"  # they are written with a non-zero ``flags`` bitmask (keeps published splits)


class Outside(str, Enum):
    drop = "drop"  # a cutout reaching past the field edge is removed (reason ``outside_field``)
    pad = "pad"    # the missing part is padded with NaN, then the NaN policy applies


class Centre(str, Enum):
    optical = "optical"  # optical host position, falling back to the radio position
    radio = "radio"


@dataclass
class CutsConfig:
    """Quality cuts (Vičánek Martínez et al. 2024, Sect. 2); ``null`` switches one off."""
    snr_min: Optional[float] = 5.0          # peak / sigma-clipped rms
    edge_max_frac: Optional[float] = 0.8    # max edge pixel / peak
    blank: bool = True                      # remove constant (e.g. all-zero) cutouts
    nan: NanPolicy = NanPolicy.drop
    nan_fill: float = 0.0
    action: CutAction = CutAction.drop


@dataclass
class CutoutConfig:
    """Cutout geometry for catalogue + field sources: side = max(k_las * LAS, min_size)."""
    k_las: float = 1.5
    min_size_arcsec: float = 60.0
    centre: Centre = Centre.optical
    outside: Outside = Outside.drop
    noise_box_factor: float = 3.0  # rms measured in a box this many cutout sides wide


@dataclass
class SplitConfig:
    """Seeded train/valid/test split for sets without a published one."""
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 0


@dataclass
class AugmentConfig:
    flips: bool = True
    rot90: bool = True
    rotate: bool = False  # continuous rotation (bilinear; not an exact symmetry)


@dataclass
class LoaderConfig:
    batch_size: int = 32
    num_workers: int = 0
    in_memory: bool = True
    train_split: str = "train"
    val_split: str = "valid"
    random_val_fraction: Optional[float] = None  # seeded split instead of the file's column
    conditions: list[str] = field(default_factory=lambda: ["label", "peak_flux", "las_arcsec"])
    augment: AugmentConfig = field(default_factory=AugmentConfig)


#: ``data.projection_floor`` value: the floor measured on the training images (the largest
#: that changes none of them, :func:`radiodiff.data.projection.largest_kept_floor`).
DATA_FLOOR = "data"


@dataclass
class IslandConfig:
    """The data's noise islands laid under generated images (``data.projection_islands``;
    validated and drawn by :class:`radiodiff.data.islands.IslandModel`, which has these
    fields): the cut ``k_mean`` +- ``k_std`` rms, the per-image rms as a fraction of the peak
    ``exp(ln_r_mean +- ln_r_std)`` (at most ``r_max``), the beam FWHM on the native grid
    (pixels), native pixels per output pixel, quantisation levels above 0 (255: 8 bit)."""
    # the cut, in rms: N(k_mean, k_std^2) per image
    k_mean: float = MISSING
    k_std: float = MISSING
    # ln(rms / peak) per image: N(ln_r_mean, ln_r_std^2), at most r_max
    ln_r_mean: float = MISSING
    ln_r_std: float = MISSING
    r_max: float = MISSING
    beam_fwhm_px: float = MISSING  # the beam on the native grid, pixels
    factor: int = MISSING          # native pixels per output pixel
    levels: int = 255              # quantisation levels above 0 (8 bit)


@dataclass
class ProjectionConfig:
    """The output projection generated images go through, as a release records it
    (``meta.json`` ``projection``; :mod:`radiodiff.data.projection` validates and applies
    it). Every projection default lives here: pixels below ``floor`` (a fraction of each
    image's peak; None: no floor) farther than ``halo_px`` pixels from emission at or above
    it are set to 0, ``peak_one`` puts each image's peak at exactly 1, ``islands`` lays the
    data's noise islands under each image (None: none)."""
    floor: Optional[float] = None
    halo_px: int = 2
    peak_one: bool = True
    islands: Optional[IslandConfig] = None


@dataclass
class DataConfig:
    name: str = MISSING
    source: Source = MISSING
    out: str = "${paths.data_dir}/${data.name}.h5"
    catalog: Optional[str] = None
    fields_dir: Optional[str] = None
    field_pattern: str = "{file}"  # formatted with the catalogue row
    columns: dict[str, str] = field(default_factory=dict)  # our name -> catalogue column
    catalog_flux_unit: str = "Jy"  # unit of the catalogue's flux columns
    # Pixel unit of a FITS field whose header has no BUNIT card or a blank one (a BUNIT that
    # is there is always read and converted to Jy/beam: mJy/beam, uJy/beam, JY/BEAM ...);
    # null: such a field is refused (a row error, data.on_error decides). The one place of
    # this default: the data presets and the code leave it to this.
    assume_bunit: Optional[str] = "Jy/beam"
    classes: list[str] = field(default_factory=list)
    beam_arcsec: Optional[list[float]] = None  # [bmaj, bmin] if the header has no BMAJ/BMIN
    pixel_scale_arcsec: Optional[float] = None  # for inputs without WCS (FIRST PNG-derived)
    crop_arcsec: Optional[float] = None  # central crop of fixed-size images before resizing
    image_size: int = 80
    negatives: Negatives = Negatives.clip
    scaling: Scaling = Scaling.per_image
    cuts: CutsConfig = field(default_factory=CutsConfig)
    cutout: CutoutConfig = field(default_factory=CutoutConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    on_error: OnError = OnError.skip
    # Catalogue rows naming the same source (same source_id, or centres closer than the
    # beam's major axis, data.beam_arcsec): one image each, never one per split.
    duplicates: Duplicates = Duplicates.drop
    limit: Optional[int] = None  # only the first N catalogue rows (quick looks, tests)
    # The release's output projection (ProjectionConfig) is built from these at export.
    # Generated images go through the data's last steps (data.projection.project_like_data):
    # below this fraction of the peak only a halo of projection_halo_px around brighter
    # emission is kept: a number, "data" (DATA_FLOOR: the largest floor that changes no
    # training image, measured when the run starts) or null (no floor, e.g. data that keep
    # their noise). A string field holding the number as text (OmegaConf 2.3 cannot compose
    # Union[float, str] under Hydra); data.projection.check_floor reads and checks it.
    projection_floor: Optional[str] = ProjectionConfig.floor
    projection_halo_px: int = ProjectionConfig.halo_px
    # The data's noise islands laid under generated images (fitted by `radiodiff
    # fit-islands`; null: none), e.g. FIRST's 3-rms cut + 8 bit.
    projection_islands: Optional[IslandConfig] = None
    loader: LoaderConfig = field(default_factory=LoaderConfig)


@dataclass
class ModelConfig:
    """U-Net hyper-parameters, read by :func:`radiodiff.diffusion.unet.build_unet`."""
    name: str = MISSING
    model_channels: int = 64      # channels at the first (full-resolution) level
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2])  # per level; side halves
    num_blocks: int = 2           # residual blocks per encoder level (decoder: one more)
    attn_resolutions: list[int] = field(default_factory=lambda: [20])  # feature-map sides, px
    num_heads: int = 1            # self-attention heads
    emb_mult: int = 4             # embedding width = emb_mult * model_channels
    dropout: float = 0.0          # inside the residual blocks
    label_dropout: float = 0.1    # P(all conditions of a sample nulled) in training, for CFG


@dataclass
class ScheduleConfig:
    """EDM training noise distribution, preconditioning and model space (EDM Table 1).

    ``relative``: ``P_mean`` is an offset from ``ln sigma_data`` (the noise levels follow
    the data's scale); EDM's own choice, -1.2 at sigma_data = 0.5, is the offset -0.51.
    ``stretch`` / ``stretch_param`` / ``range``: the intensity encoding of the images in
    model space (:class:`radiodiff.diffusion.intensity.IntensityTransform`).
    """
    P_mean: float = -1.2
    P_std: float = 1.2
    relative: bool = False
    sigma_data: Optional[float] = None  # measured on the encoded training set when null
    stretch: str = "linear"             # linear | power | asinh
    stretch_param: float = 0.25         # the power p, or the asinh softening (peak units)
    range: list[float] = field(default_factory=lambda: [0.0, 1.0])  # model space of [0, 1]


@dataclass
class SamplerConfig:
    name: str = "heun"
    steps: int = 25
    sigma_min: float = 0.002
    # EDM's 80 suits sigma_data = 0.5; for peak-scaled radio images (sigma_data ~ 0.03, peak
    # 1) 10 still drowns every source and covers the trained range (P_mean + 3 P_std ~ 12),
    # and it scored better for every solver (README, "The built-in model").
    sigma_max: float = 10.0
    rho: float = 7.0
    S_churn: float = 0.0
    guidance: float = 1.0


@dataclass
class TrainerConfig:
    """``lightning.Trainer`` arguments (instantiated with ``_target_``).

    The train entry adds what a run needs fixed: ``max_steps`` (from ``train.total_kimg``),
    the logger, the callbacks, the run folder, one endless epoch and no Lightning
    checkpointing or distributed sampler (the sample stream shards itself).
    """
    _target_: str = "lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32"
    max_time: Optional[str] = None  # "DD:HH:MM:SS": stop (and checkpoint) after this long
    gradient_clip_val: Optional[float] = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 50
    enable_progress_bar: bool = True  # false for log files (the bar also syncs every step)
    enable_model_summary: bool = False
    val_check_interval: Any = "${train.val_every_steps}"
    limit_val_batches: Any = "${train.val_batches}"
    num_sanity_val_steps: int = 0


@dataclass
class TrainConfig:
    """Optimisation, EMA, checkpoints and in-training sampling; lengths in images seen."""
    total_kimg: float = 100.0            # training length, thousands of images
    lr: float = 5e-4                      # AdamW peak learning rate
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    lr_rampup_kimg: float = 2.0           # linear warm-up
    # Optional linear cool-down to 0 over lr_decay_kimg from lr_decay_start_kimg (warmup-
    # stable-decay; 0: a constant rate after the warm-up). Lengths in thousands of images.
    lr_decay_start_kimg: Optional[float] = None
    lr_decay_kimg: float = 0.0
    ema_halflife_kimg: float = 5.0        # EMA half-life in images (EDM Sect. C.2)
    # Extra EMAs kept beside the main one, so the length is chosen on validation afterwards
    # (``radiodiff export --ema-halflife``); each costs one copy of the weights.
    ema_bank_kimg: list[float] = field(default_factory=list)
    ema_rampup_ratio: Optional[float] = 0.05  # half-life <= ratio * images seen, early on
    condition_transform: str = "log"      # log | boxcox, then standardised (train set)
    ckpt_dir: str = "${paths.ckpt_root}/${train.run_name}"
    # in a multirun (-m) each job adds its overrides: training.identity.sweep_run_name
    run_name: str = "${data.name}-${model.name}-s${seed}"
    ckpt_every_steps: int = 500
    ckpt_every_minutes: float = 10.0
    # auto (latest in ckpt_dir if any) | never | <path>; only a checkpoint of the same run
    # identity (radiodiff.training.identity) is resumed, unless resume_force is true
    resume: str = "auto"
    resume_force: bool = False
    init_from: Optional[str] = None       # release folder to warm-start from (no resume)
    # Wall-clock limit of this invocation (a session's piece); trainer.max_time is instead
    # Lightning's total over all resumed pieces.
    max_minutes: Optional[float] = None
    val_every_steps: int = 500
    val_batches: int = 4
    sample_every_steps: int = 1000        # 0 disables the sampling callback
    sample_count: int = 64
    sample_batch_size: int = 32


def _logger_kinds() -> dict[str, Any]:
    loggers = "lightning.pytorch.loggers"
    return {
        "wandb": {"_target_": f"{loggers}.WandbLogger", "project": "${logger.project}",
                  "name": "${train.run_name}", "offline": "${logger.offline}"},
        "csv": {"_target_": f"{loggers}.CSVLogger", "name": "csv"},
        "tensorboard": {"_target_": f"{loggers}.TensorBoardLogger", "name": "tensorboard"},
    }


@dataclass
class LoggerConfig:
    """``kind`` picks one of ``kinds`` (each a ``_target_`` node; ``save_dir`` is the run
    folder). W&B is offline by default: no account or network needed."""
    kind: str = "wandb"  # wandb | csv | tensorboard
    project: str = "radiodiff"
    offline: bool = True
    kinds: dict[str, Any] = field(default_factory=_logger_kinds)


def _callbacks() -> dict[str, Any]:
    fit = "radiodiff.training.fit"
    return {
        "resume_checkpoint": {"_target_": f"{fit}.ResumeCheckpoint",
                              "dirpath": "${train.ckpt_dir}",
                              "every_steps": "${train.ckpt_every_steps}",
                              "every_minutes": "${train.ckpt_every_minutes}"},
        "time_box": {"_target_": f"{fit}.TimeBox", "minutes": "${train.max_minutes}"},
        "progress": {"_target_": "radiodiff.training.progress.ProgressLog",
                     "every_minutes": 2.0, "total_kimg": "${train.total_kimg}",
                     "max_minutes": "${train.max_minutes}"},
    }


@dataclass
class PathsConfig:
    data_dir: str = "data"
    shared_data: str = "${oc.env:RADIODIFF_SHARED_DATA,../shared/data}"
    output_dir: str = "outputs"
    # Resume state of long runs; point it outside the git work tree for multi-session runs.
    ckpt_root: str = "${oc.env:RADIODIFF_CKPT_DIR,outputs/checkpoints}"


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    schedule: ScheduleConfig = MISSING
    sampler: SamplerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    # Lightning callbacks by name (``_target_`` nodes; null switches one off). The sampling
    # callback is added by the train entry when ``train.sample_every_steps > 0``.
    callbacks: dict[str, Any] = field(default_factory=_callbacks)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0


def register_configs() -> None:
    """Register the schemas so ``conf/config.yaml`` can list ``base_config`` first."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)


def dotted_leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of a config container (nested dicts; lists are leaves) by dotted key."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(dotted_leaves(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return out


def conf_dir() -> Path:
    """The directory holding ``config.yaml``: ``$RADIODIFF_CONF``, the wheel copy, or the repo."""
    env = os.environ.get("RADIODIFF_CONF")
    candidates = ([Path(env)] if env else []) + [
        Path(__file__).resolve().parent / "conf",        # installed wheel (force-included)
        Path(__file__).resolve().parents[2] / "conf",    # source checkout / editable install
    ]
    for c in candidates:
        if (c / "config.yaml").is_file():
            return c
    raise FileNotFoundError(
        "radiodiff: no Hydra config directory found (looked in "
        + ", ".join(str(c) for c in candidates) + "); set RADIODIFF_CONF")


class ConfigError(ValueError):
    """The requested config cannot be composed (unknown option, misspelt key, bad value)."""


def load_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config"):
    """Compose ``conf/config.yaml`` with Hydra overrides (``data=mirabest``, ``seed=1`` ...)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_hydra_message(exc)) from exc


def _hydra_message(exc: BaseException) -> str:
    """One readable line from a Hydra/OmegaConf error and its cause (no search-path dump)."""
    parts = []
    while exc is not None and len(parts) < 3:
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        text = text.split(" Config search path")[0].split(" full_key:")[0]
        if text and text not in parts:
            parts.append(text)
        exc = exc.__cause__
    return ": ".join(parts)
