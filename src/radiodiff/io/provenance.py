"""Code version of an artifact: the git commit of radiodiff's own source tree it was made
from, marked ``-dirty`` when that tree had uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

__all__ = ["git_commit"]

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
