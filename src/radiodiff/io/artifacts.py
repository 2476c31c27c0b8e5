"""Writing artifacts safely: atomic files and folders, JSON-safe values, figures, PNG grids.

Every file radiodiff writes goes through :func:`atomic_write`: the content is written to a
temporary sibling (``.rdtmp-<pid>-<name>``) and renamed over the target, so an interrupted
run never leaves a half-written file and never damages an earlier one. Every output folder
(release, samples, report, demo) is written by :func:`artifact_dir`: assembled whole in a
temporary sibling folder and swapped in only when complete. Temporaries of a process that
died (kill -9, power cut) are removed by the next write to the same target. Figures are
made with :func:`new_figure` (matplotlib's object API on an Agg canvas, pyplot's global
state untouched) and written with :func:`save_figure`.

What an output folder is ("its own kind") is recognised by the files that only that
writer makes (:data:`KINDS`): a release has ``meta.json`` and ``model.safetensors``, a
samples folder ``samples.h5``, a report ``metrics.json``, a demo ``summary.md`` and
``report/metrics.json``. A writer refuses an existing non-empty target that is not its own
kind (whatever ``overwrite`` says), and replaces its own kind only with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["OutputError", "KINDS", "atomic_write", "atomic_text", "artifact_dir",
           "check_output", "check_output_file", "clear_stale_temps", "relocated", "save_torch",
           "temp_name", "to_plain", "new_figure", "save_figure", "save_image_grid"]

TEMP_PREFIX = ".rdtmp-"  # .rdtmp-<pid>-<name>: a file or folder being written
OLD_PREFIX = ".rdold-"   # .rdold-<pid>-<name>: an artifact being replaced
_TEMP_RE = re.compile(r"^\.rd(?:tmp|old)-(\d+)-(.+)$")

# kind -> files (relative paths) that mark a folder as that writer's output
KINDS: dict[str, tuple[str, ...]] = {
    "release": ("meta.json", "model.safetensors"),
    "samples": ("samples.h5",),
    "report": ("metrics.json",),
    "demo": ("summary.md", "report/metrics.json"),
}
_MARGIN = 16 * 2**20  # bytes kept free beyond an output's estimated size


class OutputError(ValueError):
    """An output cannot or must not be written (exists, not writable, disk full); the
    message is one line naming the path. A ValueError: exit status 2 at the command line."""


def temp_name(path: Path, prefix: str = TEMP_PREFIX) -> Path:
    """The temporary sibling of ``path`` owned by this process (the suffix is kept, so
    writers that infer the format from it work)."""
    return path.with_name(f"{prefix}{os.getpid()}-{path.name}")


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


def clear_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporaries in ``folder`` (of the target ``name``, or all) whose
    process is dead; returns what was removed. Temporaries of live processes are kept."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if not m or (name is not None and m.group(2) != name) or _pid_alive(int(m.group(1))):
            continue
        p = Path(e.path)
        try:
            shutil.rmtree(p) if e.is_dir(follow_symlinks=False) else p.unlink()
            removed.append(p)
        except OSError:
            pass  # cleaning up is a courtesy
    return removed


def _is_full_disk(exc: OSError) -> bool:
    """ENOSPC or EDQUOT, also as h5py reports it (an OSError whose text carries errno 28)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28" in text


def _full_disk(exc: BaseException, path: Path, real: Path | None = None) -> OutputError:
    name = Path(getattr(exc, "filename", None) or path)
    text = str(name)
    if real is not None:  # name the file where it was going, not its temporary folder
        text = text.replace(str(real.parent / temp_name(real).name), str(real))
    text = re.sub(r"\.rdtmp-\d+-", "", text)
    return OutputError(f"{text}: no space left on device; the partial output was removed")


def atomic_write(path: str | Path, write: Callable[[Path], Any], fsync: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it to ``path``.

    A failed write removes the temporary file and leaves ``path`` as it was; a full disk
    raises :class:`OutputError` naming ``path``. Stale temporaries of ``path`` left by a
    dead process are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_temps(path.parent, path.name)
    tmp = temp_name(path)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if _is_full_disk(exc):
            raise _full_disk(exc, path) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


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
                 nbytes: int = 0) -> Path:
    """Refuse, before any compute, an output folder that must not or cannot be written.

    Refused (:class:`OutputError`, one line naming the path): ``target`` is a file; a
    non-empty folder that is not a ``kind`` artifact (:data:`KINDS`); a ``kind`` artifact
    without ``overwrite``; a place that is not writable or has less than ``nbytes`` (plus
    a margin) free.
    """
    target = Path(target)
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r} (one of {sorted(KINDS)})")
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
    return target


def check_output_file(target: str | Path, what: str, overwrite: bool = False,
                      magic: bytes | None = None, nbytes: int = 0) -> Path:
    """:func:`check_output` for a single-file artifact (e.g. a prepared HDF5 file): an
    existing file is its own kind when it starts with ``magic`` (None: any file)."""
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
    return target


@contextlib.contextmanager
def artifact_dir(target: str | Path, kind: str, overwrite: bool = False,
                 nbytes: int = 0) -> Iterator[Path]:
    """Write a whole output folder atomically: ``with artifact_dir(out, "samples") as tmp``.

    :func:`check_output` first; the body writes into ``tmp``, a fresh sibling
    ``.rdtmp-<pid>-<name>``. On success the old artifact (if any) is renamed to
    ``.rdold-<pid>-<name>``, ``tmp`` is renamed to ``target`` and the old one is deleted;
    if the second rename fails the old one is put back. On any failure ``tmp`` is removed
    and ``target`` is as it was; a full disk raises :class:`OutputError` naming the file.
    """
    target = Path(target)
    check_output(target, kind, overwrite, nbytes)
    made = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_temps(target.parent, target.name)
    tmp, old = temp_name(target), temp_name(target, OLD_PREFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    done = False
    try:
        try:
            yield tmp
        except OSError as exc:
            if _is_full_disk(exc):
                raise _full_disk(exc, target, target) from exc
            raise
        if not _is_kind(tmp, kind):
            raise RuntimeError(f"{target}: the {kind} writer did not write "
                               f"{', '.join(KINDS[kind])}")
        check_output(target, kind, True)  # nothing else appeared there meanwhile
        if target.exists():
            os.replace(target, old)  # a folder cannot be renamed over a non-empty one
        try:
            os.replace(tmp, target)
        except BaseException:
            if old.exists() and not target.exists():
                os.replace(old, target)
            raise
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_symlink():  # the target was a link to a folder: drop the link only
            old.unlink()
        shutil.rmtree(old, ignore_errors=True)
        if not done:  # a failed write leaves no folders it made either
            for p in made:
                with contextlib.suppress(OSError):
                    p.rmdir()


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
        fig.suptitle(title, fontsize=9, y=0.995)
    return save_figure(fig, path, format="png")
