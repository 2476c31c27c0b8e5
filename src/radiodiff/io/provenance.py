"""Provenance of an artifact: the code version (the git commit of radiodiff's own source
tree it was made from, marked ``-dirty`` when that tree had uncommitted changes), and the
one rule that keeps the machine's own folders out of what it records (``<local path>``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

__all__ = ["git_commit", "LOCAL_PATH", "is_local_path", "portable_path",
           "release_config_yaml"]

LOCAL_PATH = "<local path>"

# The source tree holding this file: <root>/src/radiodiff/io/provenance.py
_ROOT = Path(__file__).resolve().parents[3]


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=_ROOT,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def git_commit() -> Optional[str]:
    """The full commit hash of radiodiff's source tree, with ``-dirty`` appended when
    tracked files differ from it (``git describe --always --dirty``, no tag names); None
    when radiodiff does not run from its own checkout (an installed package, or a package
    copied into another repository: that repository's commit would say nothing)."""
    if not ((_ROOT / "pyproject.toml").is_file() and (_ROOT / "src" / "radiodiff").is_dir()):
        return None
    top = _git("rev-parse", "--show-toplevel")
    try:
        if top is None or Path(top).resolve() != _ROOT:
            return None
    except OSError:
        return None
    return _git("describe", "--always", "--dirty", "--abbrev=40", "--exclude=*")


def is_local_path(value: object) -> bool:
    """Whether ``value`` is an absolute path of this machine (POSIX, home, a Windows drive or
    UNC share), which an artifact records as :data:`LOCAL_PATH` instead."""
    return isinstance(value, str) and (value.startswith(("/", "~", "\\\\")) or
                                       (len(value) > 2 and value[1:3] in (":\\", ":/")))


def portable_path(path: str | Path) -> str:
    """A file as an artifact names it: a relative path as given, an absolute one by its
    name only (its SHA-256, recorded beside it, identifies it)."""
    text = str(path)
    return Path(text.replace("\\", "/")).name if is_local_path(text) else text


def release_config_yaml(cfg: DictConfig) -> str:
    """The resolved config as an artifact stores it: every absolute path of the machine that
    made it (checkpoint and output folders, an absolute data path) replaced by
    ``<local path>``, so it names no local folder. Nothing that rebuilds or describes the
    network or the data is a path."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return LOCAL_PATH if is_local_path(value) else value
    return OmegaConf.to_yaml(OmegaConf.create(clean(OmegaConf.to_container(cfg, resolve=True))))
