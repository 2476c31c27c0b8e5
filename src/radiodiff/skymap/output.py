"""Files of a survey map: map and model FITS, truth table, preview PNG, provenance, shards.

All written atomically with :func:`radiodiff.io.artifacts.atomic_write`. The FITS headers
hold the map's celestial WCS, BUNIT = Jy/beam, BMAJ/BMIN/BPA (deg), FREQ (Hz), TELESCOP
and RMS; nothing that differs between a single run and merged shards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from radiodiff.io.artifacts import atomic_text, atomic_write, new_figure, save_figure, to_plain
from radiodiff.skymap.render import TRUTH_COLUMNS
from radiodiff.skymap.sky import MapGrid

__all__ = ["MAP_FILE", "MODEL_FILE", "TRUTH_FILE", "PREVIEW_FILE", "PROVENANCE_FILE",
           "map_header", "model_header", "write_map", "truth_table", "write_truth",
           "preview_marks", "preview_figure", "write_preview", "write_provenance",
           "shard_path", "write_shard", "read_shard"]

MAP_FILE, MODEL_FILE, TRUTH_FILE = "map.fits", "model.fits", "truth.fits"
PREVIEW_FILE, PROVENANCE_FILE = "preview.png", "provenance.json"
_UNITS = {"ra": "deg", "dec": "deg", "x": "pix", "y": "pix", "flux_req": "Jy",
          "flux_meas": "Jy", "peak_req": "Jy/beam", "peak_meas": "Jy/beam", "las": "arcsec",
          "pa": "deg"}
TRUTH_PIXELS = ("x, y: 0-based pixels of map.fits (numpy, astropy world_to_pixel); FITS and "
                "DS9 pixel numbers are x + 1, y + 1")
_MARK = "#00e5ff"  # circles around generated sources: cyan, apart from the inferno colours


def map_header(grid: MapGrid, survey: Mapping, rms: float | None, cards: Mapping[str, Any]):
    """WCS and instrument cards of the map (``survey``: the skymap ``survey`` config)."""
    header = grid.wcs.to_header()
    header["BUNIT"] = ("Jy/beam", "brightness unit")
    header["BMAJ"] = (grid.beam.bmaj / 3600.0, "[deg] beam major axis (FWHM)")
    header["BMIN"] = (grid.beam.bmin / 3600.0, "[deg] beam minor axis (FWHM)")
    header["BPA"] = (grid.beam.pa, "[deg] beam position angle")
    header["FREQ"] = (float(survey["freq_hz"]), "[Hz] observing frequency")
    header["TELESCOP"] = (str(survey["telescope"]), "telescope of the simulated survey")
    header["SURVEY"] = (str(survey["name"]), "radiodiff skymap preset")
    if rms is not None:
        header["RMS"] = (float(rms), "[Jy/beam] requested noise rms per beam")
    for key, value in cards.items():
        header[key] = value
    return header


def model_header(header):
    """The map's header for its noise-free model: said to be noise-free, its RMS card (the
    noise of the map, which this file does not have) named as such."""
    out = header.copy()
    out["COMMENT"] = "Noise-free model of map.fits: the sources alone."
    if "RMS" in out:
        out["RMS"] = (out["RMS"], "[Jy/beam] noise rms of map.fits (none here)")
    return out


def write_map(path: Path, data: np.ndarray, header) -> Path:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.asarray(data, np.float32), header=header)
    return atomic_write(path, lambda tmp: hdu.writeto(tmp, output_verify="exception"))


def truth_table(truth: Mapping[str, list]):
    """The truth rows as an astropy Table sorted by id (``cls`` written as ``class``)."""
    from astropy.table import Table

    # explicit types: a shard that owns no sources merges as one that does (ids stay
    # integers), and strings keep their whole length
    types = {"id": np.int64, "seed": np.int64, "cls": str, "kind": str}
    t = Table({c: np.asarray([str(v) for v in truth[c]] if types.get(c) is str else truth[c],
                             dtype=types.get(c, np.float64)) for c in TRUTH_COLUMNS})
    for c, unit in _UNITS.items():
        t[c].unit = unit
    t.rename_column("cls", "class")
    t.sort("id")
    t.meta["comments"] = [TRUTH_PIXELS]
    return t


def write_truth(path: Path, table) -> Path:
    return atomic_write(path, lambda tmp: table.write(tmp, format="fits"))


def preview_marks(table, grid: MapGrid) -> np.ndarray:
    """(n, 3) circles ``x, y, radius`` [map pixels] around the truth rows of ``table``: its
    position, half its LAS plus one beam FWHM (a point source gets a one-beam circle)."""
    las = np.nan_to_num(np.asarray(table["las"], dtype=np.float64), nan=0.0)
    radius = (0.5 * las + grid.beam.bmaj) / grid.pixel_scale_arcsec
    return np.column_stack([np.asarray(table["x"], dtype=np.float64),
                            np.asarray(table["y"], dtype=np.float64), radius])


def preview_figure(data: np.ndarray, rms: float, title: str, marks=(), label: str = ""):
    """The preview: asinh stretch, softening 3 rms, from -3 rms to the 99.9 percentile;
    one circle per row of ``marks`` (:func:`preview_marks`) and, when there are any, a
    legend line ``<label> (<n>)``."""
    from astropy.visualization import AsinhStretch, ImageNormalize, ManualInterval
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    top = max(float(np.percentile(data, 99.9)), 10 * rms)
    norm = ImageNormalize(interval=ManualInterval(-3 * rms, top),
                          stretch=AsinhStretch(3 * rms / (top + 3 * rms)))
    ny, nx = data.shape
    fig = new_figure((6.0, 6.0 * ny / nx + 0.4), dpi=150)
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.96 * 6 * ny / nx / (6 * ny / nx + 0.4)])
    ax.imshow(data, origin="lower", cmap="inferno", norm=norm, interpolation="nearest")
    for x, y, r in np.asarray(marks, dtype=np.float64).reshape(-1, 3):
        ax.add_patch(Circle((x, y), r, fill=False, edgecolor=_MARK, linewidth=0.8))
    if len(marks):
        ring = Line2D([], [], linestyle="none", marker="o", markersize=7,
                      markerfacecolor="none", markeredgecolor=_MARK)
        ax.legend([ring], [f"{label} ({len(marks)})".strip()], loc="upper right",
                  fontsize=7, framealpha=0.7)
    ax.set_xlim(-0.5, nx - 0.5)  # circles at the edges do not widen the view
    ax.set_ylim(-0.5, ny - 0.5)
    ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    return fig


def write_preview(path: Path, data: np.ndarray, rms: float, title: str, marks=(),
                  label: str = "") -> Path:
    """:func:`preview_figure` as a PNG, written atomically."""
    return save_figure(preview_figure(data, rms, title, marks, label), path, format="png")


def write_provenance(path: Path, provenance: Mapping) -> Path:
    return atomic_text(path, json.dumps(to_plain(provenance), indent=2, allow_nan=False) + "\n")


def shard_path(out: Path, k: int, n: int) -> Path:
    return Path(out) / "shards" / f"shard-{k}-of-{n}.fits"


def write_shard(path: Path, rows: tuple[int, int], k: int, n: int, config_hash: str,
                image: np.ndarray, model: np.ndarray, truth: Mapping[str, list]) -> Path:
    """Rows [r0, r1) of map and model (float32) and the truth rows the shard owns."""
    from astropy.io import fits

    primary = fits.PrimaryHDU()
    primary.header.update(SHARD=k, NSHARD=n, ROW0=rows[0], ROW1=rows[1], CFGHASH=config_hash)
    hdus = fits.HDUList([primary, fits.ImageHDU(np.asarray(image, np.float32), name="MAP"),
                         fits.ImageHDU(np.asarray(model, np.float32), name="MODEL"),
                         fits.table_to_hdu(truth_table(truth))])
    hdus[3].name = "TRUTH"
    return atomic_write(path, lambda tmp: hdus.writeto(tmp))


def read_shard(path: Path) -> dict[str, Any]:
    from astropy.io import fits
    from astropy.table import Table

    with fits.open(path) as hdul:
        h = hdul[0].header
        return {"k": h["SHARD"], "n": h["NSHARD"], "rows": (h["ROW0"], h["ROW1"]),
                "hash": h["CFGHASH"], "map": hdul["MAP"].data.copy(),
                "model": hdul["MODEL"].data.copy(), "truth": Table.read(hdul["TRUTH"])}
