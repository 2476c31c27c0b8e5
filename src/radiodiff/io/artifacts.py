"""Writing artifacts safely: atomic files, JSON-safe values, figures and PNG preview grids.

Every file radiodiff writes goes through :func:`atomic_write`: the content is written to a
temporary name in the same folder and renamed over the target, so an interrupted run never
leaves a half-written file and never damages an earlier one. Figures are made with
:func:`new_figure` (matplotlib's object API on an Agg canvas, pyplot's global state
untouched) and written with :func:`save_figure`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["atomic_write", "atomic_text", "to_plain", "new_figure", "save_figure",
           "save_image_grid"]


def atomic_write(path: str | Path, write: Callable[[Path], Any], fsync: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps the suffix (``x.tmp-<pid>.png``) so writers that infer the
    format from it work. A failed write removes the temporary file and leaves ``path``
    as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


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
