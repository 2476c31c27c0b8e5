"""Grids of real and generated images per class under a power stretch, to look at.

Issue #28: 32 real and 32 generated images per class under x^0.25 (an astronomer's
stretch: 1 % of the peak shows as 0.32), real above generated, each image on its own
[0, peak] scale. ``bench/class_grids.py`` draws them for a release and commits them beside
its model card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radiodiff.io.artifacts import new_figure, save_figure

__all__ = ["class_grid_figure"]


def _panel(fig, rows: int, cols: int, index: int, image: np.ndarray | None,
           power: float) -> None:
    ax = fig.add_subplot(rows, cols, index)
    ax.set_axis_off()
    if image is None:
        return
    peak = float(image.max())
    shown = np.clip(image / peak, 0, 1) ** power if peak > 0 else image
    ax.imshow(shown, cmap="inferno", vmin=0, vmax=1, origin="lower", interpolation="nearest")


def class_grid_figure(path: str | Path, real: np.ndarray, fake: np.ndarray, title: str,
                      cols: int = 8, power: float = 0.25) -> Path:
    """PNG: ``real`` (N, [1,] H, W) in the upper block, ``fake`` below, ``cols`` a row,
    each image stretched as (x / peak) ** ``power``."""
    real = np.asarray(real).reshape(len(real), *np.shape(real)[-2:])
    fake = np.asarray(fake).reshape(len(fake), *np.shape(fake)[-2:])
    r_rows, f_rows = -(-len(real) // cols), -(-len(fake) // cols)
    rows = r_rows + f_rows + 1  # one blank row between the blocks
    panel = 0.9
    fig = new_figure((panel * cols, panel * rows + 0.6), dpi=100)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005,
                        top=1 - 0.6 / (panel * rows + 0.6), wspace=0.03, hspace=0.03)
    for k, img in enumerate(real):
        _panel(fig, rows, cols, k + 1, img, power)
    for k, img in enumerate(fake):
        _panel(fig, rows, cols, (r_rows + 1) * cols + k + 1, img, power)
    fig.suptitle(f"{title}: {len(real)} real (top) vs {len(fake)} generated (bottom), "
                 f"(x/peak)^{power:g}", fontsize=9)
    return save_figure(fig, Path(path), format="png")
