"""Integrity of the files radiodiff reads back: content hashes and finite numbers.

One manifest format for every folder of results (``SHA256SUMS``, as ``sha256sum`` writes
it: ``<64 hex>  <file name>`` per line, checkable with ``sha256sum -c SHA256SUMS``; read
here, written by :func:`radiodiff.io.artifacts.write_manifest` with the other atomic
writes, which this module does not import), one
check that a state_dict holds only finite numbers, and one error type,
:class:`IntegrityError`, whose message names the file, what is wrong and what to do.

A release folder lists its ``config.yaml``, ``model.safetensors`` and ``meta.json`` (and
``train_conditions.csv`` when it has one); a
checkpoint folder lists ``last.ckpt`` and ``prev.ckpt`` (see
:class:`radiodiff.training.fit.ResumeCheckpoint`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Mapping

__all__ = ["MANIFEST", "IntegrityError", "sha256_file", "read_manifest", "verify_file",
           "nonfinite_tensors", "check_finite", "content_digest"]

MANIFEST = "SHA256SUMS"
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


class IntegrityError(ValueError):
    """A file is corrupt, truncated, changed since it was written, or holds NaN/inf.

    A ``ValueError``: the command line reports it in one line with exit code 2.
    """


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_digest(settings: list, *arrays) -> str:
    """Hex SHA-256 of ``settings`` (as JSON), then of each array's dtype, shape and bytes
    (C order): the key of a cache of results computed from arrays of images and labels, so
    no two different inputs share one (the arrays' boundaries are part of it)."""
    import json

    import numpy as np
    h = hashlib.sha256(json.dumps(settings).encode())
    for a in map(np.ascontiguousarray, arrays):
        h.update(json.dumps([a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_manifest(folder: str | Path) -> dict[str, str] | None:
    """``{file name: sha256}`` of ``folder/SHA256SUMS``; None when there is none.

    Raises
    ------
    IntegrityError
        The manifest exists but is not a ``sha256sum`` listing.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    entries = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path}: unreadable hash manifest ({exc})") from exc
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            raise IntegrityError(f"{path}: line {k} is not '<sha256>  <file>'; the manifest "
                                 "is damaged (delete it to skip the hash check)")
        entries.setdefault(m.group(2), m.group(1))
    return entries


def verify_file(path: str | Path, what: str, fix: str, accept_any: bool = False) -> str | None:
    """Check ``path`` against the ``SHA256SUMS`` of its folder; return its SHA-256.

    ``accept_any``: any hash listed in the manifest is good (files rotated under another
    name, e.g. ``last.ckpt`` -> ``prev.ckpt``). No manifest, or the file not listed in it:
    nothing to check (older folders), None is returned.

    Raises
    ------
    IntegrityError
        ``"<path>: <what> does not match its SHA-256 in SHA256SUMS (corrupt or changed
        since it was written); <fix>"``.
    """
    path = Path(path)
    manifest = read_manifest(path.parent)
    if manifest is None or (path.name not in manifest and not accept_any):
        return None
    sha = sha256_file(path)
    good = set(manifest.values()) if accept_any else {manifest[path.name]}
    if sha not in good:
        raise IntegrityError(f"{path}: {what} does not match its SHA-256 in {MANIFEST} "
                             f"(corrupt or changed since it was written); {fix}")
    return sha


def nonfinite_tensors(state: Mapping) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding NaN or infinity."""
    import torch

    bad = []
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            bad.append(str(name))
    return bad


def check_finite(state: Mapping, where: str, fix: str) -> None:
    """Raise :class:`IntegrityError` when a tensor of ``state`` holds NaN or infinity.

    The message: ``"<where>: N of M tensors hold NaN or inf (e.g. a, b); <fix>"``.
    """
    bad = nonfinite_tensors(state)
    if bad:
        raise IntegrityError(f"{where}: {len(bad)} of {len(state)} tensors hold NaN or inf "
                             f"(e.g. {', '.join(bad[:3])}); {fix}")


def open_h5(path: Path, redo: str):
    """``h5py.File(path, "r")``, or one line: not readable, truncated or corrupt; ``redo``."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file, truncated or corrupt "
                         f"({' '.join(str(exc).split())[:160]}); {redo}") from exc
