"""Writing artifacts safely: atomic files and folders, JSON-safe values, figures, PNG grids.

Every file radiodiff writes goes through :func:`atomic_write`: the content is written to a
temporary sibling and renamed over the target, so an interrupted run never leaves a
half-written file and never damages an earlier one. Every output folder (release, samples,
report, demo) is written by :func:`artifact_dir`: assembled whole in a temporary sibling
folder and swapped in only when complete. Figures are made with :func:`new_figure`
(matplotlib's object API on an Agg canvas, pyplot's global state untouched) and written
with :func:`save_figure`.

Temporaries have one naming rule, :func:`temp_name` (``.rdtmp-<pid>@<host>-<name>``, and
``.rdold-<pid>@<host>-<name>`` for an artifact being replaced), and one clean-up,
:func:`clear_stale_temps`, which removes those of dead processes of this host (kill -9,
power cut) and runs before every write to the same target; on a shared file system another
node's temporaries and locks are never touched (its pids mean nothing here). A full disk or
an I/O error is one line naming the file (:func:`write_error`).

What an output folder is ("its own kind") is recognised by the files that only that
writer makes (:data:`KINDS`): a release has ``meta.json`` and ``model.safetensors``, a
samples folder ``samples.h5``, a report ``metrics.json``, a demo ``summary.md`` and
``report/metrics.json``, an inspect folder ``summary.json``, a sky map (and its shards'
folder) ``skymap_config.yaml``, a sky map's evaluation ``evaluation.json``. A writer refuses
an existing non-empty target that is not its own kind (whatever ``overwrite`` says), and
replaces its own kind only with ``overwrite`` and then only the files it wrote (listed in
the folder's ``SHA256SUMS``; in a folder written by an older version, which has none, the
files its writer makes, :data:`WRITES`): anything else there stays. One writer at a time
per target: :func:`check_output` takes a lock (``.rdlock-<name>`` holding
``<pid>@<host>``) that a second writer meets and names.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import math
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

from radiodiff.io.integrity import MANIFEST, IntegrityError, read_manifest, sha256_file

__all__ = ["OutputError", "KINDS", "atomic_write", "atomic_text", "artifact_dir",
           "write_manifest", "WRITES", "check_output", "hard_link", "check_output_file",
           "clear_stale_temps",
           "link_or_copy", "lock_output", "made_here", "unlock_output", "release_locks",
           "relocated", "read_or_compute", "save_torch", "temp_name", "write_error",
           "to_plain", "new_figure", "save_figure", "save_image_grid"]

log = logging.getLogger(__name__)
T = TypeVar("T")

TEMP_PREFIX = ".rdtmp-"   # .rdtmp-<pid>@<host>-<name>: a file or folder being written
OLD_PREFIX = ".rdold-"    # .rdold-<pid>@<host>-<name>: an artifact being replaced
LOCK_PREFIX = ".rdlock-"  # .rdlock-<name>, holding <pid>@<host>: an output being written
# This host as it appears in owner names: no "-" (the end of the owner) and no "@"
_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "localhost"
_OWNER = r"(\d+)(?:@([A-Za-z0-9._]+))?"  # pid, and host (absent in names of old versions)
_TEMP_RE = re.compile(rf"\.rd(?:tmp|old)-{_OWNER}-")  # .match: a temporary's own prefix
_LOCK_TEXT = re.compile(rf"^{_OWNER}$")
_LEGACY_RE = re.compile(r"^(SHA256SUMS)\.tmp-(\d+)$")  # what write_manifest made before
_LOCK_GRACE_S = 60.0  # a lock holding no pid this old: its writer died creating it
# The umask, read once at import: os.umask can only be read by setting it, which is not
# thread-safe (another thread creating a file meanwhile would get the wrong mode).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

# kind -> files (relative paths) that mark a folder as that writer's output
KINDS: dict[str, tuple[str, ...]] = {
    "release": ("meta.json", "model.safetensors"),
    "samples": ("samples.h5",),
    "report": ("metrics.json",),
    "demo": ("summary.md", "report/metrics.json"),
    "inspect": ("summary.json",),
    "skymap": ("skymap_config.yaml",),  # written by single runs, shards and merges alike
    "map_evaluation": ("evaluation.json",),  # evaluate-map's report
}
_MARGIN = 16 * 2**20  # bytes kept free beyond an output's estimated size
# How full disks read: errno, h5py ("errno = 28"), safetensors ("os error 28", StorageFull)
_FULL_TEXTS = ("No space left on device", "errno = 28", "os error 28", "StorageFull",
               "Disk quota exceeded")
# PyTorch's zip writer after a short write (full disk or I/O error): no errno is kept
_TORCH_SHORT_WRITE = ("inline_container.cc", "PytorchStreamWriter failed")
# this process's output locks: lock file -> (pid, thread, folders made to hold it)
_HELD: dict[Path, tuple[int, int, list[Path]]] = {}
# artifact folders this process wrote (resolved path -> kind): see made_here
_MADE: dict[Path, str] = {}

# kind -> the files its writer makes (regular expressions over paths relative to the folder):
# in a folder written before SHA256SUMS recorded the writer's files (older versions), these
# are the writer's own and an overwrite replaces them; anything else there stays.
_SAMPLES_FILES = (r"sample_\d{5,}\.fits", r"samples\.h5", r"preview\.png")
_REPORT_FILES = (r"metrics\.json", r"report\.(?:md|html)",
                 r"(?:histograms|centres|grid_real|grid_generated|noise|confusion_real"
                 r"|confusion_generated)\.png",
                 r"(?:tstr/)?release/.+")  # the export of an evaluated checkpoint
WRITES: dict[str, tuple[str, ...]] = {
    "release": (r"config\.yaml", r"model\.safetensors", r"meta\.json",
                r"train_conditions\.csv"),
    "samples": _SAMPLES_FILES,
    "report": _REPORT_FILES,
    "demo": (r"summary\.md", r"real_vs_generated\.png",
             *(rf"samples/[^/]+/{p}" for p in _SAMPLES_FILES),
             *(rf"report/{p}" for p in _REPORT_FILES)),
    "inspect": (r"summary\.(?:json|txt)", r"grid_[^/]+\.png"),
    "skymap": (r"(?:map|model|truth)\.fits", r"preview\.png", r"provenance\.json",
               r"skymap_config\.yaml"),  # not shards/: a merge keeps its inputs
    "map_evaluation": (r"evaluation\.(?:json|png)",),
}


class OutputError(ValueError):
    """An output cannot or must not be written (exists, not writable, disk full, being
    written by another run); the message is one line naming the path. A ValueError: exit
    status 2 at the command line."""


def _target_name(name: str) -> str:
    """The name a temporary stands for (``.rdtmp-7@h-.rdtmp-7@h-last.ckpt`` -> ``last.ckpt``)."""
    while (m := _TEMP_RE.match(name)) is not None:
        name = name[m.end():]
    m = _LEGACY_RE.match(name)
    return m.group(1) if m else name


def _owner() -> str:
    """This process as temporaries and locks name it: ``<pid>@<host>``."""
    return f"{os.getpid()}@{_HOST}"


def temp_name(path: str | Path, prefix: str = TEMP_PREFIX) -> Path:
    """The one naming rule of temporaries: ``<prefix><pid>@<host>-<name>`` beside ``path``,
    owned by this process (the suffix is kept, so writers that infer the format from it
    work; the host, so that on a shared file system each node cleans up only its own).

    Built from the name ``path`` stands for, so the temporary of a temporary is itself
    (``temp_name(temp_name(p)) == temp_name(p)``): never a doubled prefix.
    """
    path = Path(path)
    return path.with_name(f"{prefix}{_owner()}-{_target_name(path.name)}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _lock_owner(lock: Path) -> tuple[int | None, str | None]:
    """``(pid, host)`` written in a lock (host None: an old version's lock, or none yet)."""
    try:
        m = _LOCK_TEXT.match(lock.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError):
        m = None
    return (int(m.group(1)), m.group(2)) if m else (None, None)


def _temp_owner(folder: Path, name: str) -> tuple[int | None, str | None, str] | None:
    """``(pid, host, target name)`` of the temporary or lock ``name`` in ``folder`` (pid
    None: a lock holding no pid yet; host None: a name without one, an old version's), None
    for any other file."""
    m = _TEMP_RE.match(name)
    if m:
        return int(m.group(1)), m.group(2), _target_name(name)
    m = _LEGACY_RE.match(name)
    if m:
        return int(m.group(2)), None, m.group(1)
    if name.startswith(LOCK_PREFIX) and len(name) > len(LOCK_PREFIX):
        return (*_lock_owner(folder / name), name[len(LOCK_PREFIX):])
    return None


def _is_stale(path: Path, pid: int | None, host: str | None) -> bool:
    """Whether the temporary or lock ``path`` of ``pid`` on ``host`` was left by a dead
    process. Another host's is never stale here: its pid cannot be checked on this one (a
    shared file system; each node cleans up its own). No host (an old version's name): as
    before, judged on this host."""
    if host is not None and host != _HOST:
        return False
    if pid == os.getpid() and path.name.startswith(LOCK_PREFIX):
        # our pid, but not a lock this process holds: a previous life of the pid (a
        # restarted container's pid 1, killed mid-write), which would otherwise block forever
        return Path(os.path.abspath(path)) not in _HELD
    if pid is not None:
        return not _pid_alive(pid)
    try:
        return time.time() - path.lstat().st_mtime > _LOCK_GRACE_S
    except OSError:
        return False


def clear_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """The one clean-up: remove the temporaries and locks in ``folder`` (of the target
    ``name``, or all) whose process, on this host, is dead; returns what was removed.

    It matches every name :func:`temp_name` and :func:`lock_output` make, and those of
    earlier versions (``.rdtmp-<pid>-<name>`` without a host, ``SHA256SUMS.tmp-<pid>``, the
    doubled ``.rdtmp-<pid>-.rdtmp-<pid>-`` of a checkpoint); those of live processes, and
    all of other hosts (every rank of a multi-node run may call it on a shared folder), are
    kept.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    want = None if name is None else _target_name(str(name))
    for e in entries:
        owner = _temp_owner(Path(folder), e.name)
        p = Path(e.path)
        if owner is None or (want is not None and owner[2] != want) \
                or not _is_stale(p, owner[0], owner[1]):
            continue
        if e.name.startswith(OLD_PREFIX) and _swap_cut(folder, entries, owner) \
                and _restored(p, Path(folder) / owner[2]):
            continue  # killed between the two renames of a swap: the old artifact is back
        try:
            shutil.rmtree(p) if e.is_dir(follow_symlinks=False) else p.unlink()
            removed.append(p)
        except OSError:
            pass  # cleaning up is a courtesy
    return removed


def _swap_cut(folder, entries, owner) -> bool:
    """Whether the new artifact of the same writer is still a temporary beside its old one
    set aside: a swap cut between its two renames (not one killed while deleting the old
    copy after the swap, which left a partial ``.rdold``)."""
    return any(e.name.startswith(TEMP_PREFIX) and _temp_owner(Path(folder), e.name) == owner
               for e in entries)


def _restored(old: Path, target: Path) -> bool:
    """Put an artifact set aside by a swap cut between its renames back where nothing took
    its place."""
    if os.path.lexists(target):
        return False
    try:
        os.replace(old, target)
    except OSError:
        return False
    return True


def write_error(exc: BaseException, path: str | Path) -> OutputError | None:
    """The one line for a write that failed for want of space or an I/O error, as errno,
    h5py, PyTorch's zip writer or safetensors word it, naming the file (the exception's, else
    ``path``; temporary names stripped); None for any other error and for an
    :class:`OutputError` (already one line)."""
    if isinstance(exc, OutputError):
        return None
    text = " ".join(str(exc).split())
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or any(t in text for t in _FULL_TEXTS):
        why = "no space left on device"
    elif any(t in text for t in _TORCH_SHORT_WRITE):
        why = f"no space left on device or an I/O error (PyTorch: {text[:100]})"
    elif code == errno.EIO:
        why = "I/O error"
    else:
        return None
    name = _TEMP_RE.sub("", str(getattr(exc, "filename", None) or path))
    return OutputError(f"{name}: {why}; the partial output was removed")


@contextlib.contextmanager
def _named_failures(path: Path) -> Iterator[None]:
    """A full disk or I/O error in the block becomes :func:`write_error`'s one line."""
    try:
        yield
    except Exception as exc:
        err = write_error(exc, path)
        if err is not None:
            raise err from exc
        raise


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; where folders cannot be opened
    (Windows) or synced, nothing."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any], fsync: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it to ``path``.

    A failed write removes the temporary file and leaves ``path`` as it was; a full disk or
    an I/O error raises :class:`OutputError` naming ``path`` (:func:`write_error`). Stale
    temporaries of ``path`` left by a dead process are removed first. A ``path`` that is
    itself this process's temporary (a checkpoint its caller checks, then renames) is
    written in place: there is no temporary of a temporary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_temps(path.parent, path.name)
    tmp, done = temp_name(path), False
    try:
        with _named_failures(path):
            write(tmp)
            _default_mode(tmp)
            if fsync:
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            if tmp != path:
                os.replace(tmp, path)
                if fsync:  # the rename itself, across a power cut
                    _fsync_dir(path.parent)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    return path


def read_or_compute(path: str | Path | None, what: str, read: Callable[[Path], T],
                    compute: Callable[[], T], write: Callable[[Path, T], Any],
                    errors: tuple[type[BaseException], ...] = ()) -> tuple[T, bool]:
    """``read(path)`` when the file is there, else ``compute()``, written to ``path``
    atomically by ``write(tmp, value)`` (``path`` None: computed, no file). Returns the value
    and whether it came from the file.

    The one rule of radiodiff's caches: a cache file is not data, so one that does not read
    (``read`` raises an :class:`OSError`, :class:`ValueError`, :class:`EOFError`,
    :class:`RuntimeError` or one of ``errors``: truncated, foreign, of another architecture)
    is named in a warning (``"<what> cache <path> does not read (<why>); computing it
    again"``), computed again and replaced. The caller's ``path`` names everything the value
    depends on (:func:`radiodiff.io.integrity.content_digest`).
    """
    if path is not None and Path(path).is_file():
        try:
            return read(Path(path)), True
        except (OSError, ValueError, EOFError, RuntimeError, *errors) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("%s cache %s does not read (%s); computing it again", what, path, why)
    value = compute()
    if path is not None:
        atomic_write(path, lambda tmp: write(tmp, value))
    return value, False


def write_manifest(folder: str | Path, names: Iterable[str],
                   extra: Mapping[str, str] | None = None) -> Path:
    """Write ``folder/SHA256SUMS`` (:mod:`radiodiff.io.integrity`'s format) for the files
    ``names`` (hashed now) and ``extra`` (``{name: sha256}`` already known), atomically and
    fsynced (:func:`atomic_write`: the one temporary-name rule)."""
    folder = Path(folder)
    entries = {name: sha256_file(folder / name) for name in names}
    for name, sha in (extra or {}).items():
        entries.setdefault(name, sha)
    text = "".join(f"{sha}  {name}\n" for name, sha in entries.items())
    return atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                        fsync=True)


def _default_mode(path: Path) -> None:
    """Give a written file the mode a plain ``open`` would (0644 under umask 022): some
    writers (safetensors) create theirs 0600, and a release must be readable by others."""
    if path.is_file() and not path.is_symlink():
        os.chmod(path, 0o666 & ~_UMASK)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """``dst`` becomes a second name of ``src`` (a hard link; a copy where the file system
    has none), replaced atomically."""
    src, dst = Path(src), Path(dst)

    def link(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
    atomic_write(dst, link)


# --------------------------------------------------------------------------- locks

def _lock_file(target: Path) -> Path:
    target = Path(os.path.abspath(target))
    return target.with_name(f"{LOCK_PREFIX}{target.name}")


def _locked(target: Path, owner: tuple[int | None, str | None], lock: Path) -> OutputError:
    pid, host = owner
    who = f"pid {pid}" if pid is not None else "a process just starting"
    if pid is not None and host not in (None, _HOST):
        who += f" on {host}"
    return OutputError(f"{target}: being written by another radiodiff run ({who}); wait for "
                       f"it to end or choose another output (if {who} is not running, "
                       f"remove {lock})")


def _remove_empty(folders: Sequence[Path]) -> None:
    for p in folders:  # deepest first
        with contextlib.suppress(OSError):
            p.rmdir()


def lock_output(target: str | Path) -> Path:
    """Hold the write lock of the output ``target`` for this thread until
    :func:`unlock_output` (re-entrant); returns the lock file.

    The lock is ``.rdlock-<name>`` beside ``target``, created with ``O_EXCL`` and holding
    ``<pid>@<host>``. Held by a live process or by another thread: :class:`OutputError` naming the
    pid; left by a dead process: taken over (:func:`clear_stale_temps`). Folders made to
    hold it are removed with it when they are still empty.
    """
    target = Path(os.path.abspath(target))
    lock, me = _lock_file(target), (os.getpid(), threading.get_ident())
    held = _HELD.get(lock)
    if held is not None and held[0] == me[0]:
        if held[1] != me[1]:
            raise _locked(target, (me[0], _HOST), lock)
        return lock
    made = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]
    lock.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if attempt or lock not in clear_stale_temps(lock.parent, target.name):
                _remove_empty(made)
                raise _locked(target, _lock_owner(lock), lock) from None
    _HELD[lock] = (*me, made)  # before its text: another thread's clean-up sees it held
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(f"{_owner()}\n")
    return lock


def _give_back(lock: Path) -> None:
    _, _, made = _HELD.pop(lock)
    lock.unlink(missing_ok=True)
    _remove_empty(made)


def unlock_output(target: str | Path) -> None:
    """Give back this thread's lock of ``target`` (:func:`lock_output`); nothing if not held."""
    lock = _lock_file(Path(target))
    held = _HELD.get(lock)
    if held is not None and held[:2] == (os.getpid(), threading.get_ident()):
        _give_back(lock)


def release_locks(all_threads: bool = False) -> None:
    """Give back this thread's (or every thread's) output locks: at the end of a command and
    at exit, so that a command that failed between its check and its write frees its output."""
    me = (os.getpid(), threading.get_ident())
    for lock, held in list(_HELD.items()):
        if held[0] == me[0] and (all_threads or held[1] == me[1]):
            _give_back(lock)


atexit.register(release_locks, True)


# --------------------------------------------------------------------------- checks

def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable(target: Path, nbytes: int) -> None:
    """The folder that will hold ``target`` can be made, written and has room."""
    base = _nearest_existing(target.parent.absolute())
    if not base.is_dir():
        raise OutputError(f"{target}: cannot write here, {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: cannot write here, {base} is not writable")
    need = int(nbytes) + _MARGIN if nbytes else 0
    free = shutil.disk_usage(base).free
    if need and free < need:
        raise OutputError(f"{target}: not enough free space on {base} (needs about "
                          f"{need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free)")


def _is_kind(path: Path, kind: str) -> bool:
    return all((path / f).is_file() for f in KINDS[kind])


def check_output(target: str | Path, kind: str, overwrite: bool = False,
                 nbytes: int = 0, lock: bool = True) -> Path:
    """Refuse, before any compute, an output folder that must not or cannot be written,
    then hold its write lock (:func:`lock_output`) until the write ends
    (:func:`artifact_dir`), :func:`unlock_output` or the command ends.

    Refused (:class:`OutputError`, one line naming the path): ``target`` is a file; a
    non-empty folder that is not a ``kind`` artifact (:data:`KINDS`); a ``kind`` artifact
    without ``overwrite``; a place that is not writable or has less than ``nbytes`` (plus
    a margin) free; an output another run is writing (its pid named). ``lock=False``: the
    other refusals, the lock neither checked nor taken (writers that add files one by
    one, several at once: the shards of a sky map).
    """
    target = Path(target)
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r} (one of {sorted(KINDS)})")
    clear_stale_temps(target.parent, target.name)  # a swap cut short is undone before judging
    if target.is_symlink() or target.exists():
        if not target.is_dir():
            raise OutputError(f"{target}: exists and is not a folder; refusing to replace it "
                              f"with a {kind} folder")
        if any(target.iterdir()):
            if not _is_kind(target, kind):
                raise OutputError(f"{target}: exists, is not empty and is not a {kind} folder "
                                  f"(no {', '.join(KINDS[kind])}); refusing to touch it")
            if not overwrite:
                raise OutputError(f"{target}: is already a {kind} folder; give --overwrite "
                                  "to replace it")
    _check_writable(target, nbytes)
    if lock:
        lock_output(target)
    return target


def check_output_file(target: str | Path, what: str, overwrite: bool = False,
                      magic: bytes | None = None, nbytes: int = 0) -> Path:
    """:func:`check_output` for a single-file artifact (e.g. a prepared HDF5 file): an
    existing file is its own kind when it starts with ``magic`` (None: any file). The
    target's lock is held until :func:`unlock_output` or the command ends."""
    target = Path(target)
    if target.exists():
        if not target.is_file():
            raise OutputError(f"{target}: exists and is not a file; refusing to replace it "
                              f"with a {what}")
        if magic is not None:
            with open(target, "rb") as fh:
                own = fh.read(len(magic)) == magic
            if not own:
                raise OutputError(f"{target}: exists and is not a {what}; refusing to "
                                  "replace it")
        if not overwrite:
            raise OutputError(f"{target}: already exists; give --overwrite to replace it")
    _check_writable(target, nbytes)
    lock_output(target)
    return target


# --------------------------------------------------------------------------- folders

def _walk(folder: Path) -> tuple[list[str], list[str]]:
    """Relative paths of the files (links included, not followed) and of the folders under
    ``folder``, temporaries and locks left out."""
    files: list[str] = []
    dirs: list[str] = []
    for root, ds, fs in os.walk(folder):
        rel = os.path.relpath(root, folder)
        for d in list(ds):
            if os.path.islink(os.path.join(root, d)):
                files.append(os.path.normpath(os.path.join(rel, d)))
            if os.path.islink(os.path.join(root, d)) or _temp_owner(Path(root), d):
                ds.remove(d)
            else:
                dirs.append(os.path.normpath(os.path.join(rel, d)))
        files += [os.path.normpath(os.path.join(rel, f)) for f in fs
                  if _temp_owner(Path(root), f) is None]
    return files, dirs


def _seal(tmp: Path, kind: str, target: Path) -> None:
    """The written folder is a ``kind`` artifact and records what it wrote: ``SHA256SUMS``
    of all its files, unless the writer wrote its own (a release lists its model files)."""
    if not _is_kind(tmp, kind):
        raise RuntimeError(f"{target}: the {kind} writer did not write "
                           f"{', '.join(KINDS[kind])}")
    if not (tmp / MANIFEST).is_file():
        write_manifest(tmp, sorted(_walk(tmp)[0]))


def _writes(kind: str, rel: str) -> bool:
    """Whether the ``kind`` writer makes the file ``rel`` (:data:`WRITES`)."""
    rel = rel.replace(os.sep, "/")
    return any(re.fullmatch(p, rel) for p in WRITES[kind])


def _owned(target: Path, new: Path, kind: str) -> set[str]:
    """Files of the ``kind`` artifact at ``target`` as its writer recorded them: those listed
    in its ``SHA256SUMS``, and in those of its subfolders that the new artifact ``new``
    writes too (a re-attached ``refiner/``), with the manifests themselves. A folder without
    ``SHA256SUMS`` (written by an older version): the files the ``kind`` writer makes
    (:data:`WRITES`), so that an overwrite never mixes two runs' files (the old run's
    ``sample_00010.fits`` beside a new 10-image ``samples.h5``)."""
    owned: set[str] = set()
    for rel in (".", *_walk(new)[1]):
        try:
            listed = read_manifest(target / rel)
        except IntegrityError:
            listed = ()  # a damaged manifest claims nothing: all is kept
        if listed is None and rel == ".":  # an older version's folder
            owned |= {f for f in _walk(target)[0] if _writes(kind, f)}
        elif listed:
            owned |= {os.path.normpath(os.path.join(rel, n)) for n in (*listed, MANIFEST)}
    return owned


def hard_link(src: str | Path, dst: str | Path) -> None:
    """A second name of ``src`` at ``dst`` (a copy where the file system has no hard
    links); the file itself is not touched (its mode stays: unlike :func:`link_or_copy`)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _keep_foreign(target: Path, new: Path, kind: str) -> list[str]:
    """Carry into ``new`` what in the old ``kind`` artifact ``target`` its writer did not
    write (:func:`_owned`) and ``new`` does not rewrite: as hard links (the same files, no
    copy; copies where the file system has no links), links as links. Returns what was
    kept."""
    owned, (files, dirs) = _owned(target, new, kind), _walk(target)
    kept = []
    for rel in files:
        if rel in owned or os.path.lexists(new / rel):
            continue
        src, dst = target / rel, new / rel
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                hard_link(src, dst)
        except (FileExistsError, NotADirectoryError):
            continue  # the new artifact has a file where this one's folder was
        except PermissionError as exc:
            raise OutputError(f"{src}: cannot be kept in the new folder ({exc.strerror}); "
                              "move it away, or give --fresh where offered") from exc
        kept.append(rel)
    for rel in dirs:  # the user's empty folders
        if not os.listdir(target / rel):
            with contextlib.suppress(OSError):
                (new / rel).mkdir(parents=True, exist_ok=True)
    return kept


def _swap(tmp: Path, target: Path) -> None:
    """``tmp`` becomes ``target``. The old one is renamed aside first (a folder cannot be
    renamed over a non-empty one) and deleted only once ``tmp`` is in place; if that second
    rename fails it is put back (:func:`_put_back`)."""
    old = temp_name(target, OLD_PREFIX)
    had_old = target.is_symlink() or target.exists()
    if had_old:
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException as exc:
        if had_old:
            _put_back(old, target, exc)
        raise
    if old.is_symlink():  # the target was a link to a folder: drop the link only
        old.unlink()
    shutil.rmtree(old, ignore_errors=True)


def _put_back(old: Path, target: Path, exc: BaseException) -> None:
    """Rename the artifact set aside as ``old`` back to ``target`` after a failed swap.
    Where that fails too (something appeared at ``target`` meanwhile), it is renamed to
    ``<target>.previous-<pid>``, out of reach of the clean-up of temporaries, and an
    :class:`OutputError` says where it is; it is never deleted."""
    if not os.path.lexists(target):  # else os.replace could drop what appeared there
        try:
            os.replace(old, target)
            return
        except OSError:
            pass
    kept = target.with_name(f"{target.name}.previous-{os.getpid()}")
    try:
        os.replace(old, kept)
    except OSError:
        kept = old
    raise OutputError(f"{target}: could not be replaced ({type(exc).__name__}: {exc}) and "
                      f"something else is there now; the previous {target.name} is kept "
                      f"as {kept}") from exc


def made_here(path: str | Path, kind: str | None = None) -> bool:
    """Whether this process wrote the artifact folder ``path`` (of ``kind``, or any) with
    :func:`artifact_dir`, e.g. a release exported from a checkpoint to be evaluated."""
    try:
        made = _MADE.get(Path(path).resolve())
    except OSError:
        return False
    return made is not None and (kind is None or made == kind)


@contextlib.contextmanager
def artifact_dir(target: str | Path, kind: str, overwrite: bool = False,
                 nbytes: int = 0, fresh: bool = False) -> Iterator[Path]:
    """Write a whole output folder atomically: ``with artifact_dir(out, "samples") as tmp``.

    :func:`check_output` first, which takes the target's lock for the whole write (a second
    writer of the same target refuses, naming this pid). The body writes into ``tmp``, a
    fresh sibling ``.rdtmp-<pid>@<host>-<name>``; its files are recorded in ``SHA256SUMS``
    (unless the body wrote one). ``overwrite`` replaces an existing artifact's own files only:
    those its ``SHA256SUMS`` lists go, anything else there (a model card, a refiner, the
    user's notes) is carried into ``tmp`` as hard links (a folder of an older version,
    without ``SHA256SUMS``: the files the ``kind`` writer makes, :data:`WRITES`, go);
    ``fresh`` (implies ``overwrite``) carries nothing over. Then the old folder is renamed
    to ``.rdold-<pid>@<host>-<name>``, ``tmp`` to ``target`` and the old one deleted (put
    back if the second rename fails). The folder is then :func:`made_here`. On any failure
    ``tmp`` is removed and ``target`` is as it was; a full disk raises
    :class:`OutputError` naming the file.
    """
    target = Path(target)
    check_output(target, kind, overwrite or fresh, nbytes)
    tmp = temp_name(target)
    try:
        clear_stale_temps(target.parent, target.name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with _named_failures(tmp):
            yield tmp
            _seal(tmp, kind, target)
            if not fresh and target.is_dir() and not target.is_symlink():
                _keep_foreign(target, tmp, kind)
        check_output(target, kind, overwrite or fresh)  # nothing else appeared meanwhile
        _swap(tmp, target)
        _MADE[target.resolve()] = kind
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        unlock_output(target)


def relocated(paths: Any, tmp: Path, target: Path) -> Any:
    """``paths`` (a path, or a dict/list of them) with ``tmp`` replaced by ``target``."""
    if isinstance(paths, Mapping):
        return {k: relocated(v, tmp, target) for k, v in paths.items()}
    if isinstance(paths, (list, tuple)):
        return type(paths)(relocated(v, tmp, target) for v in paths)
    if isinstance(paths, Path):
        try:
            return target / paths.relative_to(tmp)
        except ValueError:
            return paths
    return paths


def atomic_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically and durably (fsync before the rename):
    the writer of training checkpoints. The temporary file is a sibling of ``path``, never
    in the system temp folder."""
    import torch
    return atomic_write(path, lambda tmp: torch.save(obj, tmp), fsync=True)


def to_plain(value: Any) -> Any:
    """JSON-serialisable plain types (tensors, arrays, enums...); non-finite floats -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # torch.Tensor
        return to_plain(value.detach().cpu().tolist())
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_plain(v) for v in value]
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(getattr(value, "value", None), str):  # Enum members
        return value.value
    return str(value)


def new_figure(figsize: tuple[float, float], dpi: float | None = None):
    """A ``matplotlib.figure.Figure`` of ``figsize`` inches on its own Agg canvas.

    No pyplot: nothing global (backend, current figure) is touched, and the figure is freed
    with its last reference. ``dpi`` None: matplotlib's default (``figure.dpi``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, **savefig_kw: Any) -> Path:
    """Write ``fig`` to ``path`` atomically (:func:`atomic_write`; the format follows the
    suffix unless ``format`` is given); ``savefig_kw`` goes to ``Figure.savefig``."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, **savefig_kw))


def save_image_grid(path: str | Path, images: np.ndarray, title: str = "",
                    titles: Sequence[str] | None = None, ncols: int = 8,
                    cmap: str = "inferno") -> Path:
    """PNG grid of model-space images (N, 1, H, W) or (N, H, W) on a fixed [0, 1] scale.

    North up (``origin="lower"``, the FITS convention). A preview, not science output.
    """
    images = np.asarray(images)
    images = images[:, 0] if images.ndim == 4 else images
    k = len(images)
    if k == 0:
        raise ValueError(f"{path}: no images to plot")
    ncols = min(ncols, k)
    nrows = math.ceil(k / ncols)
    panel = 1.25  # inches per panel
    fig = new_figure((panel * ncols, panel * nrows + 0.45), dpi=100)
    top = 1 - 0.45 / (panel * nrows + 0.45)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top - 0.02,
                        wspace=0.05, hspace=0.25)
    for i in range(k):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(images[i], cmap=cmap, vmin=0.0, vmax=1.0, origin="lower",
                  interpolation="nearest")
        if titles is not None:
            ax.set_title(str(titles[i])[:24], fontsize=5, pad=2)
        ax.set_axis_off()
    if title:
        _fit_width(fig, fig.suptitle(title, fontsize=9, y=0.995))
    return save_figure(fig, path, format="png")


def _fit_width(fig, text, pad_in: float = 0.1) -> None:
    """Widen ``fig`` until ``text`` (centred) fits whole: a grid of one 1.25-inch panel is
    narrower than its two-line title, which was cut at both sides."""
    need = text.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 2 * pad_in
    width, height = fig.get_size_inches()
    if need > width:
        fig.set_size_inches(need, height)
