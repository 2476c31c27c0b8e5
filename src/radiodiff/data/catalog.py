"""Catalogue + FITS fields: the LoTSS-style path (MiraBest fields, LoTSS-DR2 mosaics).

Each catalogue row names its field through ``data.field_pattern`` (e.g.
``{Mosaic_ID}/mosaic-blanked.fits``). The cutout is centred on the optical host (falling
back to the radio position), with side ``max(k_las * LAS, min_size_arcsec)``, cut with
astropy ``Cutout2D`` through the field's WCS. Noise is the sigma-clipped standard deviation
in a box ``noise_box_factor`` times wider, around the same position.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.nddata import Cutout2D, NoOverlapError, PartialOverlapError
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_scales

from radiodiff.io.fits import FitsImage, InputError, beam_from_header, read_fits_image
from radiodiff.data.sources import CatalogError, Cutout

__all__ = ["CatalogSource", "read_catalog"]

# Our column names; the catalogue's are mapped through ``data.columns``.
OPTIONAL = ("ra", "dec", "opt_ra", "opt_dec", "label", "peak_flux", "total_flux")
REQUIRED = ("source_id", "las")


def read_catalog(path: str | Path) -> Table:
    """Read a FITS or CSV catalogue with astropy; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalogue not found")
    fmt = "ascii.csv" if path.suffix.lower() in (".csv", ".txt") else None
    try:
        return Table.read(path, format=fmt)
    except Exception as exc:
        raise CatalogError(f"{path}: cannot read catalogue ({exc})") from exc


def _float(value) -> float:
    if np.ma.is_masked(value):
        return float("nan")  # masked (empty / NaN) catalogue cell
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # masked or empty cells


class CatalogSource:
    """Cutouts of catalogue sources from their FITS fields, in catalogue order."""

    image_unit = "Jy/beam"

    def __init__(self, data_cfg):
        self.cfg = data_cfg
        if not data_cfg.catalog:
            raise CatalogError(f"data={data_cfg.name}: data.catalog is not set")
        if not data_cfg.fields_dir:
            raise CatalogError(f"data={data_cfg.name}: data.fields_dir is not set")
        self.catalog_path = Path(data_cfg.catalog)
        self.fields_dir = Path(data_cfg.fields_dir)
        if not self.fields_dir.is_dir():
            raise CatalogError(f"{self.fields_dir}: fields folder not found")
        self.table = read_catalog(self.catalog_path)
        self.cols = dict(data_cfg.columns)
        self._check_columns()
        n = len(self.table) if data_cfg.limit is None else min(len(self.table), data_cfg.limit)
        self.rows = list(range(n))
        self.classes = list(data_cfg.classes)
        self.splits = _seeded_split(len(self.table), list(data_cfg.split.fractions),
                                    int(data_cfg.split.seed))
        self.flux_to_jy = u.Unit(data_cfg.catalog_flux_unit).to(u.Jy)
        self._read = lru_cache(maxsize=2)(read_fits_image)  # rows are grouped by field

    # -- catalogue -------------------------------------------------------------------------
    def _check_columns(self) -> None:
        have = set(self.table.colnames)
        fields_needed = [f for _, f, _, _ in string.Formatter().parse(self.cfg.field_pattern)
                         if f]
        for key in REQUIRED:
            if key not in self.cols:
                raise CatalogError(f"data.columns has no entry for {key!r} "
                                   f"(maps our names to {self.catalog_path.name} columns)")
        wanted = [self.cols[k] for k in REQUIRED + OPTIONAL if k in self.cols] + fields_needed
        missing = [c for c in wanted if c not in have]
        if missing:
            raise CatalogError(f"{self.catalog_path}: missing required column(s) "
                               f"{', '.join(map(repr, missing))} (has: {', '.join(sorted(have))})")
        pairs = [("ra", "dec"), ("opt_ra", "opt_dec")]
        if not any(a in self.cols and b in self.cols for a, b in pairs):
            raise CatalogError("data.columns must map ra/dec or opt_ra/opt_dec")
        if self.cfg.classes and "label" not in self.cols:
            raise CatalogError(f"data.classes is set but data.columns has no 'label' "
                               f"for {self.catalog_path.name}")

    def _get(self, row, key) -> float:
        return _float(row[self.cols[key]]) if key in self.cols else float("nan")

    def field_path(self, row) -> Path:
        values = {name: row[name] for name in self.table.colnames}
        return self.fields_dir / self.cfg.field_pattern.format(**values)

    def input_files(self) -> list[str]:
        fields = sorted({str(self.field_path(self.table[i])) for i in self.rows})
        return [str(self.catalog_path)] + [f for f in fields if Path(f).is_file()]

    def __len__(self) -> int:
        return len(self.rows)

    # -- cutouts ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Cutout | InputError]:
        # Group rows by field so each mosaic is read once; output keeps catalogue order
        # because every record carries its row index.
        order = sorted(self.rows, key=lambda i: str(self.field_path(self.table[i])))
        for i in order:
            try:
                yield self._cutout(i)
            except InputError as err:
                err.row = i
                yield err

    def _centre(self, i, row) -> tuple[float, float]:
        opt = (self._get(row, "opt_ra"), self._get(row, "opt_dec"))
        rad = (self._get(row, "ra"), self._get(row, "dec"))
        first, second = (opt, rad) if self.cfg.cutout.centre.value == "optical" else (rad, opt)
        for ra, dec in (first, second):
            if np.isfinite(ra) and np.isfinite(dec):
                return ra, dec
        raise InputError(f"{self.catalog_path}:row {i}", "bad_row", "no finite position")

    def _label(self, i, row) -> int:
        if not self.classes:
            return -1
        value = str(row[self.cols["label"]]).strip()
        if value not in self.classes:
            raise InputError(f"{self.catalog_path}:row {i}", "bad_row",
                             f"class {value!r} not in data.classes {self.classes}")
        return self.classes.index(value)

    def _cutout(self, i: int) -> Cutout:
        row = self.table[i]
        sid = str(row[self.cols["source_id"]])
        where = f"{self.catalog_path}:row {i} ({sid})"
        las = self._get(row, "las")
        if not (np.isfinite(las) and las > 0):
            raise InputError(where, "bad_row", f"LAS {las!r} is not a positive number")
        ra, dec = self._centre(i, row)
        label = self._label(i, row)
        field: FitsImage = self._read(self.field_path(row))
        size = max(self.cfg.cutout.k_las * las, self.cfg.cutout.min_size_arcsec) * u.arcsec
        pos = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
        mode = "strict" if self.cfg.cutout.outside.value == "drop" else "partial"
        try:
            cut = Cutout2D(field.data, pos, size, wcs=field.wcs, mode=mode, fill_value=np.nan,
                           copy=True)
        except NoOverlapError as exc:
            raise InputError(field.path, "outside_field",
                             f"{sid}: position ({ra:.5f}, {dec:.5f}) is outside the field") from exc
        except PartialOverlapError as exc:
            raise InputError(field.path, "outside_field",
                             f"{sid}: cutout of {size:.1f} around ({ra:.5f}, {dec:.5f}) reaches "
                             "past the field edge") from exc
        noise_box = Cutout2D(field.data, pos, size * self.cfg.cutout.noise_box_factor,
                             wcs=field.wcs, mode="partial", fill_value=np.nan)
        finite = noise_box.data[np.isfinite(noise_box.data)]
        rms = (float(sigma_clipped_stats(finite, sigma=3.0, maxiters=10)[2])
               if finite.size > 10 else float("nan"))
        beam = beam_from_header(field.header) or (
            tuple(self.cfg.beam_arcsec) if self.cfg.beam_arcsec else (np.nan, np.nan))
        pix = float(np.mean(proj_plane_pixel_scales(field.wcs)) * 3600.0)
        x_in, y_in = cut.input_position_cutout
        ny, nx = cut.data.shape
        return Cutout(
            row=i, source_id=sid, image=np.asarray(cut.data, dtype=np.float32),
            pixel_scale_arcsec=pix, beam_arcsec=(float(beam[0]), float(beam[1])),
            label=label, split=self.splits[i], ra=ra, dec=dec, las_arcsec=las, rms=rms,
            catalog_peak_flux=self._get(row, "peak_flux") * self.flux_to_jy,
            catalog_total_flux=self._get(row, "total_flux") * self.flux_to_jy,
            offset_px=(float(y_in - (ny - 1) / 2), float(x_in - (nx - 1) / 2)),
            extra={"field": str(field.path)},
        )


def _seeded_split(n: int, fractions: list[float], seed: int) -> list[str]:
    """Train/valid/test assignment of ``n`` rows from a seeded permutation."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"data.split.fractions must be three non-negative numbers summing "
                         f"to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    names = np.empty(n, dtype=object)
    names[perm[: bounds[0]]] = "train"
    names[perm[bounds[0]: bounds[1]]] = "valid"
    names[perm[bounds[1]:]] = "test"
    return list(names)
