"""A run's identity: which settings make two training runs the same experiment.

The identity is the SHA-256 of the resolved config (canonical JSON) without the keys in
:data:`NOT_IDENTITY`, which only say how long a run trains, where it writes, how it is
watched or on what hardware its steps are computed (a run may continue on a GPU at another
batch size: its schedules count images). Checkpoints record it (``run_identity``);
``train.resume`` continues a checkpoint only when it matches (:func:`check_resume`), and
each job of a Hydra multirun is named after its overrides that change it
(:func:`sweep_run_name`), so the jobs of a sweep never share a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any, Iterable, Mapping

from radiodiff.config import ConfigError

__all__ = ["NOT_IDENTITY", "is_identity_key", "identity_view", "run_identity",
           "identity_changes", "check_resume", "sweep_run_name"]

log = logging.getLogger(__name__)

# Keys (and everything under them) that are not part of a run's identity: the one list.
NOT_IDENTITY = (
    "hydra", "paths", "logger", "callbacks", "sampler",  # where / what is logged / previews
    "data.out", "data.catalog", "data.fields_dir",        # where the data lie
    "data.loader.batch_size", "data.loader.num_workers", "data.loader.in_memory",
    "train.total_kimg", "train.max_minutes",              # how long
    "train.run_name", "train.ckpt_dir", "train.resume", "train.resume_force",
    "train.ckpt_every_steps", "train.ckpt_every_minutes", "train.val_every_steps",
    "train.val_batches", "train.sample_every_steps", "train.sample_count",
    "train.sample_batch_size",
    # trainer: devices, precision and bookkeeping (trainer.gradient_clip_val stays)
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
    "trainer.precision", "trainer.max_time", "trainer.accumulate_grad_batches",
    "trainer.log_every_n_steps", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.val_check_interval",
    "trainer.limit_val_batches", "trainer.num_sanity_val_steps",
)


def is_identity_key(key: str) -> bool:
    """Whether the dotted ``key`` (or a config group such as ``model``) shapes training."""
    return not any(key == k or key.startswith(k + ".") for k in NOT_IDENTITY)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of nested dicts (lists are leaves)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return out


def identity_view(cfg: Any) -> dict[str, Any]:
    """The identity keys of a resolved config (a DictConfig or plain container), flat."""
    from omegaconf import DictConfig, OmegaConf
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return {k: v for k, v in _flat(cfg).items() if is_identity_key(k)}


def run_identity(cfg: Any) -> str:
    """SHA-256 (hex) of :func:`identity_view` as canonical JSON."""
    text = json.dumps(identity_view(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def identity_changes(old: Any, new: Any) -> list[str]:
    """``key old→new`` for each identity key both configs hold with different values (a key
    one of them lacks, e.g. added to the schema since, is not a change)."""
    a, b = identity_view(old), identity_view(new)
    return [f"{k} {_show(a[k])}→{_show(b[k])}" for k in sorted(a.keys() & b.keys())
            if a[k] != b[k]]


def _show(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def check_resume(cfg: Any, state: Mapping[str, Any], ckpt: str) -> None:
    """Refuse to resume ``ckpt`` (its loaded ``state``) for a run of another identity.

    A checkpoint written before identities were recorded is resumed with a warning;
    ``train.resume_force=true`` resumes despite differences (with a warning).

    Raises
    ------
    ConfigError
        One line naming the differing keys (old→new) and the ways out.
    """
    recorded = state.get("run_identity")
    if recorded is None:
        log.warning("%s records no run identity (written before radiodiff checked them): "
                    "resuming without checking that it is the same experiment", ckpt)
        return
    if recorded == run_identity(cfg):
        return
    changes = identity_changes(state["hyper_parameters"]["cfg"], cfg)
    if not changes:  # only keys one side lacks: an older or newer config schema
        log.warning("%s: run identity differs only in keys one config lacks; resuming", ckpt)
        return
    shown = ", ".join(changes[:6]) + (f" (+{len(changes) - 6} more)" if len(changes) > 6
                                      else "")
    if bool(cfg.train.get("resume_force", False)):
        log.warning("resuming %s despite different settings (train.resume_force): %s",
                    ckpt, shown)
        return
    raise ConfigError(
        f"train.resume={cfg.train.resume}: {ckpt} is another run ({shown}); give this one "
        f"its own train.run_name, start over with train.resume=never, or continue that run "
        f"with these settings with train.resume_force=true")


def sweep_run_name(cfg: Any, overrides: Iterable[str]) -> str:
    """The run name of one job of a Hydra multirun: ``train.run_name`` followed by the
    job's overrides of identity keys (sorted, ``key=value`` joined by ``,`` as Hydra's
    ``override_dirname``), e.g. ``tiny-unet_tiny-s5-train.lr=0.002``. With the default
    name, ``data``, ``model`` and ``seed`` are left out (the name holds them already)."""
    pairs = [o.lstrip("+~").partition("=") for o in overrides]
    keys = {k for k, _, _ in pairs}
    in_name = () if "train.run_name" in keys else ("data", "model", "seed")
    parts = sorted(f"{k}={v}" for k, _, v in pairs if k not in in_name and is_identity_key(k))
    name = str(cfg.train.run_name)
    if not parts:
        return name
    return f"{name}-" + re.sub(r"[^\w.=,+\-\[\]]", "_", ",".join(parts))
