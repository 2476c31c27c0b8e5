"""A run's identity: which settings make two training runs the same experiment.

The identity is the SHA-256 of the resolved config (canonical JSON) without the keys in
:data:`NOT_IDENTITY`, which only say how long a run trains, where it writes, how it is
watched or on what hardware its steps are computed (a run may continue on a GPU at another
batch size: its schedules count images). Checkpoints record it (``run_identity``) and the
hash of the prepared data they were trained on; ``train.resume`` continues a checkpoint
only when both match (:func:`check_resume`), and each job of a Hydra multirun is named
after its overrides that change the identity or vary across the sweep
(:func:`sweep_run_name`), so the jobs of a sweep never share a checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
import typing
from typing import Any, Iterable, Mapping

from radiodiff.config import ConfigError, dotted_leaves

__all__ = ["NOT_IDENTITY", "is_identity_key", "identity_view", "run_identity",
           "identity_changes", "check_resume", "check_resume_data", "recorded_data_sha256",
           "sweep_keys", "sweep_run_name", "MAX_RUN_NAME"]

log = logging.getLogger(__name__)

# Keys (and everything under them) that are not part of a run's identity: the one list.
# A trailing ``*`` matches every key that starts with what precedes it.
NOT_IDENTITY = (
    "hydra", "paths", "logger", "callbacks", "sampler",  # where / what is logged / previews
    "data.out", "data.catalog", "data.fields_dir",        # where the data lie
    "data.projection_*",                                  # read at export only
    "data.loader.batch_size", "data.loader.num_workers", "data.loader.in_memory",
    "train.total_kimg", "train.max_minutes",              # how long
    "trainer.max_steps", "trainer.max_epochs",            # (set from total_kimg by fit)
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
    return not any(key.startswith(k[:-1]) if k.endswith("*") else
                   key == k or key.startswith(k + ".") for k in NOT_IDENTITY)


def identity_view(cfg: Any) -> dict[str, Any]:
    """The identity keys of a resolved config (a DictConfig or plain container), flat."""
    from omegaconf import DictConfig, OmegaConf
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return {k: v for k, v in dotted_leaves(cfg).items() if is_identity_key(k)}


def run_identity(cfg: Any) -> str:
    """SHA-256 (hex) of :func:`identity_view` as canonical JSON."""
    text = json.dumps(identity_view(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def identity_changes(old: Any, new: Any) -> list[str]:
    """``key old→new`` for each identity key the configs give different values. A key one of
    them lacks (added to the schema since, e.g. ``train.lr_decay_kimg``) stands for its
    schema default, which keeps what runs did before the key existed: it is a change only
    where the other config sets something else; a key without a schema default is none."""
    a, b = identity_view(old), identity_view(new)
    defaults, unknown = schema_defaults(), object()
    changes = []
    for k in sorted(a.keys() | b.keys()):
        was, now = a.get(k, defaults.get(k, unknown)), b.get(k, defaults.get(k, unknown))
        if unknown not in (was, now) and was != now:
            changes.append(f"{k} {_show(was)}→{_show(now)}")
    return changes


@functools.lru_cache(maxsize=1)
def _schema_defaults() -> tuple[tuple[str, Any], ...]:
    from omegaconf import OmegaConf

    from radiodiff.config import Config
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        kind = hints[f.name]
        if not dataclasses.is_dataclass(kind):
            continue
        leaves = dotted_leaves(
            OmegaConf.to_container(OmegaConf.structured(kind), resolve=False), f.name)
        out.update({k: v for k, v in leaves.items() if v != "???" and not (
            isinstance(v, str) and "${" in v) and is_identity_key(k)})
    return tuple(out.items())


def schema_defaults() -> dict[str, Any]:
    """Identity keys of the config schema (:class:`radiodiff.config.Config`) with their
    defaults, flat (keys without one, or whose default is an interpolation, left out)."""
    return dict(_schema_defaults())


def _show(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def check_resume(cfg: Any, state: Mapping[str, Any], ckpt: str,
                 data_sha256: str | None = None) -> None:
    """Refuse to resume ``ckpt`` (its loaded ``state``) for a run of another identity or,
    when ``data_sha256`` (the prepared file's) is given, on other data
    (:func:`check_resume_data`).

    A checkpoint written before identities were recorded is resumed with a warning;
    ``train.resume_force=true`` resumes despite differences (with a warning).

    Raises
    ------
    ConfigError
        One line naming the differing keys (old→new) and the ways out.
    """
    _check_identity(cfg, state, ckpt)
    if data_sha256 is not None:
        check_resume_data(cfg, state, ckpt, data_sha256)


def _forced(cfg: Any) -> bool:
    return bool(cfg.train.get("resume_force", False))


def _check_identity(cfg: Any, state: Mapping[str, Any], ckpt: str) -> None:
    recorded = state.get("run_identity")
    if recorded is None:
        log.warning("%s records no run identity (written before radiodiff checked them): "
                    "resuming without checking that it is the same experiment", ckpt)
        return
    current = run_identity(cfg)
    if recorded == current:
        return
    old = state["hyper_parameters"]["cfg"]
    if run_identity(old) == current:  # recorded under an older NOT_IDENTITY list
        return
    changes = identity_changes(old, cfg)
    if not changes:  # only keys one side lacks: an older or newer config schema
        log.warning("%s: run identity differs only in keys one config lacks; resuming", ckpt)
        return
    shown = ", ".join(changes[:6]) + (f" (+{len(changes) - 6} more)" if len(changes) > 6
                                      else "")
    if _forced(cfg):
        log.warning("resuming %s despite different settings (train.resume_force): %s",
                    ckpt, shown)
        return
    raise ConfigError(
        f"train.resume={cfg.train.resume}: {ckpt} is another run ({shown}); give this one "
        f"its own train.run_name, start over with train.resume=never, or continue that run "
        f"with these settings with train.resume_force=true")


def recorded_data_sha256(state: Mapping[str, Any]) -> str | None:
    """The ``data_sha256`` of the prepared file a checkpoint was trained on (its
    ``hyper_parameters["dataset"]``), None when it records none."""
    dataset = (state.get("hyper_parameters") or {}).get("dataset") or {}
    return dataset.get("data_sha256") if isinstance(dataset, Mapping) else None


def check_resume_data(cfg: Any, state: Mapping[str, Any], ckpt: str,
                      data_sha256: str) -> None:
    """Refuse to resume ``ckpt`` on a prepared file (``data.out``, content hash
    ``data_sha256``) other than the one it was trained on.

    A checkpoint that records no data hash is resumed with a warning;
    ``train.resume_force=true`` resumes on other data (with a warning).

    Raises
    ------
    ConfigError
        One line naming both hashes and the ways out.
    """
    recorded = recorded_data_sha256(state)
    if recorded is None:
        log.warning("%s records no data_sha256 of its training data: resuming without "
                    "checking that %s holds the same data", ckpt, cfg.data.get("out"))
        return
    if recorded == data_sha256:
        return
    shown = (f"{cfg.data.get('out')} has data_sha256 {data_sha256[:12]}…, the checkpoint's "
             f"data {recorded[:12]}…")
    if _forced(cfg):
        log.warning("resuming %s on other data (train.resume_force): %s", ckpt, shown)
        return
    raise ConfigError(
        f"train.resume={cfg.train.resume}: {ckpt} was trained on other data ({shown}); "
        f"point data.out at the file it was trained on, give this run its own "
        f"train.run_name or start over with train.resume=never, or continue it on these "
        f"data with train.resume_force=true")


#: Longest run name of a multirun job (:func:`sweep_run_name`), in characters.
MAX_RUN_NAME = 120
_HASH_CHARS = 10


def sweep_keys(arguments: Iterable[str]) -> set[str]:
    """The keys a multirun sweeps among its Hydra ``arguments`` (the command line's
    overrides and ``hydra.sweeper.params`` as ``key=value``): those given several values
    (``train.lr=0.001,0.002``, ``seed=range(3)``, ``choice(…)``, ``glob(…)``,
    ``interval(…)``)."""
    return {o.key_or_group for o in _parse(arguments) if o.is_sweep_override()}


def _parse(overrides: Iterable[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    return OverridesParser.create().parse_overrides(list(overrides))


def _in_name(cfg: Any) -> set[str]:
    """Keys whose value ``train.run_name`` holds: those it interpolates (``${seed}``), and
    the config group of a ``${<group>.name}`` (``data``, ``model``)."""
    from omegaconf import DictConfig, OmegaConf
    raw = (OmegaConf.to_container(cfg.train, resolve=False).get("run_name")
           if isinstance(cfg, DictConfig) else cfg["train"]["run_name"])
    refs = set(re.findall(r"\$\{([^}]+)\}", str(raw)))
    return refs | {r.removesuffix(".name") for r in refs if r.endswith(".name")}


def sweep_run_name(cfg: Any, overrides: Iterable[str], swept: Iterable[str] = ()) -> str:
    """The run name of one job of a Hydra multirun, so no two jobs share a checkpoint.

    ``train.run_name`` followed by ``-`` and the job's ``overrides`` (Hydra's task
    overrides of the job) whose key either varies across the sweep (``swept``:
    :func:`sweep_keys`) or shapes the run (:func:`is_identity_key`), as sorted
    ``key=value`` joined by ``,`` (Hydra's ``override_dirname``). Left out: keys whose
    value the name holds already (the default ``${data.name}-${model.name}-s${seed}``
    holds ``data``, ``model`` and ``seed``), ``train.run_name`` itself and ``hydra.*``.
    Characters other than ASCII letters, digits and ``_.=,+-[]`` become ``_``; a name
    longer than :data:`MAX_RUN_NAME` characters is cut there, its tail replaced by ``-``
    and 10 hex digits of the SHA-256 of the whole name. E.g. ``tiny-unet_tiny-s5-train.lr=0.002``,
    ``tiny-unet_tiny-s5-data.loader.batch_size=32``.
    """
    swept, skip = set(swept), _in_name(cfg) | {"train.run_name"}
    parts = sorted(f"{o.key_or_group}={o.get_value_element_as_str()}"
                   for o in _parse(overrides)
                   if o.key_or_group not in skip and not o.key_or_group.startswith("hydra.")
                   and (o.key_or_group in swept or is_identity_key(o.key_or_group)))
    name = str(cfg.train.run_name)
    if not parts:
        return name
    full = f"{name}-" + ",".join(parts)
    name = re.sub(r"[^\w.=,+\-\[\]]", "_", full, flags=re.ASCII)
    if len(name) <= MAX_RUN_NAME:
        return name
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_CHARS]
    return f"{name[:MAX_RUN_NAME - _HASH_CHARS - 1]}-{digest}"
