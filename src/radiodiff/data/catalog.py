"""Catalogue + FITS fields: the LoTSS-style path (MiraBest fields, LoTSS-DR2 mosaics).

Each catalogue row names its field through ``data.field_pattern`` (e.g.
``{Mosaic_ID}/mosaic-blanked.fits``). The cutout is centred on the optical host (falling
back to the radio position), with side ``max(k_las * LAS, min_size_arcsec)``, cut with
astropy ``Cutout2D`` through the field's WCS. Noise is the sigma-clipped standard deviation
in a box ``noise_box_factor`` times wider, around the same position (float64).

Units: each field's ``BUNIT`` is read and its pixels converted to Jy/beam
(:func:`radiodiff.io.fits.jy_per_beam_factor`: ``mJy/beam`` x 1e-3, ``JY/BEAM`` as Jy/beam);
a unit that is not a surface brightness (``K``, ``Jy/pixel``) or unknown is a row error, and
a field without ``BUNIT`` is taken to be in ``data.assume_bunit`` (refused when null).

Catalogue hygiene: rows naming the same source (same ``source_id``, or centres closer than
the beam's major axis) are found up front and dropped, kept or refused (``data.duplicates``);
every per-row failure (bad position, absurd LAS, unreadable field, anything unexpected)
becomes an :class:`InputError` naming the catalogue row, so ``data.on_error`` decides.
"""

from __future__ import annotations

import os
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

from radiodiff.io.fits import (FitsImage, InputError, beam_from_header, jy_per_beam_factor,
                               read_fits_image)
from radiodiff.io.text import read_csv_table
from radiodiff.data.preprocess import cutout_side_arcsec
from radiodiff.data.sources import CatalogError, Cutout, Duplicate

__all__ = ["CatalogSource", "read_catalog", "find_duplicates", "MAX_CUTOUT_FACTOR"]

# A cutout side (field pixels) above this many times data.image_size is refused: resizing
# thousands of pixels down to image_size keeps nothing of the source, and a wrong LAS unit
# (arcmin read as arcsec, a placeholder 1e30) would otherwise allocate gigabytes.
MAX_CUTOUT_FACTOR = 64
# Bytes per cutout pixel while it is processed: float32 cutout and copy, float64 resize and
# its anti-aliasing buffer.
_BYTES_PER_PIXEL = 4 + 4 + 8 + 8

# Our column names; the catalogue's are mapped through ``data.columns``.
OPTIONAL = ("ra", "dec", "opt_ra", "opt_dec", "label", "peak_flux", "total_flux")
REQUIRED = ("source_id", "las")


def read_catalog(path: str | Path) -> Table:
    """Read a FITS or CSV catalogue with astropy (CSV: any encoding and line endings,
    :func:`radiodiff.io.text.read_csv_table`); errors name the file, and a catalogue
    without rows is one."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalogue not found")
    csv = path.name.lower().endswith((".csv", ".txt", ".csv.gz", ".txt.gz"))
    try:
        table = read_csv_table(path) if csv else Table.read(path)
    except Exception as exc:
        raise CatalogError(f"{path}: cannot read catalogue "
                           f"({' '.join(str(exc).split())[:200]})") from exc
    if len(table) == 0:
        raise CatalogError(f"{path}: the catalogue has no rows (columns: "
                           f"{', '.join(table.colnames) or 'none'}); nothing to prepare")
    return table


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _valid_position(ra: float, dec: float) -> str | None:
    """Why (ra, dec) in degrees is unusable, or None when it is a position on the sky."""
    if not (np.isfinite(ra) and np.isfinite(dec)):
        return "not finite"
    if not -90.0 <= dec <= 90.0:
        return f"Dec {dec:g} outside [-90, 90]"
    if not -360.0 <= ra <= 360.0:
        return f"RA {ra:g} outside [-360, 360]"
    return None


def _flux_to_jy(unit: str) -> float:
    """Jy per unit of ``data.catalog_flux_unit``: a flux density (``mJy``), or one per beam
    (``mJy/beam``, as peak fluxes are given: the same factor). Anything else: one line."""
    try:
        q = u.Unit(unit)
        if q.is_equivalent(u.Jy / u.beam):
            q = q * u.beam
        return float(q.to(u.Jy))
    except (ValueError, TypeError, u.UnitsError):
        raise CatalogError(f"data.catalog_flux_unit={unit!r} is not a flux density (Jy, mJy, "
                           "uJy, or per beam: mJy/beam)") from None


def find_duplicates(names: list[str], ra: np.ndarray, dec: np.ndarray,
                    radius_arcsec: float | None) -> list[Duplicate]:
    """Rows repeating an earlier row: same name, or centre within ``radius_arcsec`` of it.

    Rows are grouped transitively (a chain of near positions is one source); in each group
    the first row is kept and every later row is returned, naming the first. Positions in
    degrees; NaN (or out-of-range) positions take part only through their names, and empty
    names (a blank or masked catalogue cell) only through their positions.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    edges = _same_name_pairs(names) + _near_pairs(ra, dec, radius_arcsec)
    if not edges:
        return []
    later, earlier, _ = zip(*edges)
    n = len(names)
    graph = coo_matrix((np.ones(len(edges)), (later, earlier)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    first, why = {}, {}
    for row, g in enumerate(group):
        first.setdefault(g, row)
    for row, _, reason in edges:
        why.setdefault(row, reason)
    return [Duplicate(row=i, source_id=names[i], of_row=first[g], of_id=names[first[g]],
                      why=why.get(i, "same source"))
            for i, g in enumerate(group) if first[g] != i]


def _same_name_pairs(names: list[str]) -> list[tuple[int, int, str]]:
    """(later row, first row of that name, "same name"); blank names are no name."""
    first_of, pairs = {}, []
    for i, name in enumerate(names):
        if name and name in first_of:
            pairs.append((i, first_of[name], "same name"))
        elif name:
            first_of[name] = i
    return pairs


def _near_pairs(ra: np.ndarray, dec: np.ndarray,
                radius_arcsec: float | None) -> list[tuple[int, int, str]]:
    """(later row, earlier row, separation) for centres within ``radius_arcsec`` (astropy's
    ``search_around_sky``); rows with NaN or out-of-range positions take no part."""
    from astropy.coordinates import search_around_sky
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    if not radius_arcsec or ok.sum() < 2:
        return []
    idx = np.flatnonzero(ok)
    sky = SkyCoord(ra[idx] * u.deg, dec[idx] * u.deg)
    a, b, sep, _ = search_around_sky(sky, sky, radius_arcsec * u.arcsec)
    pairs = [(int(idx[j]), int(idx[i]), f'{s:.2f}" apart (beam {radius_arcsec:g}")')
             for i, j, s in zip(a, b, sep.arcsec) if i < j]
    return sorted(pairs)


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
        self.flux_to_jy = _flux_to_jy(data_cfg.catalog_flux_unit)
        self._read = lru_cache(maxsize=2)(self._read_field)  # rows are grouped by field
        # fields that failed (bad BUNIT, unreadable): lru_cache keeps no exceptions, and a
        # mosaic of thousands of rows must not be read again for each
        self._failed: dict[Path, InputError] = {}
        self._paths = {i: self._field_path_or_error(i) for i in self.rows}
        self.duplicates: list[Duplicate] = []  # found in the catalogue (kept or dropped)
        self.dropped: list[Duplicate] = []     # of those, the rows not prepared
        self._apply_duplicates(str(getattr(data_cfg.duplicates, "value", data_cfg.duplicates)))

    # -- catalogue -------------------------------------------------------------------------
    def _check_columns(self) -> None:
        have = set(self.table.colnames)
        fields_needed = [f for _, f, _, _ in string.Formatter().parse(self.cfg.field_pattern)
                         if f]
        for key in REQUIRED:
            if key not in self.cols:
                raise CatalogError(f"data.columns has no entry for {key!r} "
                                   f"(maps our names to {self.catalog_path.name} columns)")
        wanted = list(dict.fromkeys(  # each column once
            [self.cols[k] for k in REQUIRED + OPTIONAL if k in self.cols] + fields_needed))
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

    def _apply_duplicates(self, policy: str) -> None:
        ids = self.table[self.cols["source_id"]]
        names = ["" if np.ma.is_masked(ids[i]) else str(ids[i]).strip() for i in self.rows]
        ra, dec = self._centres()
        beam = max(self.cfg.beam_arcsec) if self.cfg.beam_arcsec else None
        self.duplicates = [
            Duplicate(self.rows[d.row], d.source_id, self.rows[d.of_row], d.of_id, d.why)
            for d in find_duplicates(names, ra, dec, beam)]
        if not self.duplicates:
            return
        if policy == "error":
            shown = "; ".join(map(str, self.duplicates[:10]))
            more = len(self.duplicates) - 10
            raise CatalogError(f"{self.catalog_path}: {len(self.duplicates)} duplicate "
                               f"row(s) (data.duplicates=error): {shown}"
                               + (f"; and {more} more" if more > 0 else ""))
        if policy == "drop":
            self.dropped = list(self.duplicates)
            gone = {d.row for d in self.dropped}
            self.rows = [i for i in self.rows if i not in gone]
        else:  # keep: one source, one split, so no copy lands in another split
            for d in self.duplicates:
                self.splits[d.row] = self.splits[d.of_row]

    def _field_path_or_error(self, i: int) -> Path | InputError:
        try:
            return self.field_path(self.table[i])
        except Exception as exc:  # a masked or malformed cell in a field_pattern column
            return InputError(f"{self.catalog_path}:row {i}", "bad_row",
                              f"cannot build the field name from {self.cfg.field_pattern!r} "
                              f"({type(exc).__name__}: {exc})")

    def _column(self, key: str) -> np.ndarray:
        """Our column ``key`` over ``self.rows`` as float64, NaN where masked or not numeric."""
        if key not in self.cols:
            return np.full(len(self.rows), np.nan)
        return np.array([_float(v) for v in self.table[self.cols[key]][self.rows]])

    def _centres(self) -> tuple[np.ndarray, np.ndarray]:
        """The centres :meth:`_centre` picks, for all rows at once (NaN where none is valid)."""
        opt = self._column("opt_ra"), self._column("opt_dec")
        rad = self._column("ra"), self._column("dec")
        first, second = (opt, rad) if self.cfg.cutout.centre.value == "optical" else (rad, opt)

        def valid(ra, dec):
            with np.errstate(invalid="ignore"):
                return (np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
                        & (np.abs(ra) <= 360))
        use_first, use_second = valid(*first), valid(*second)
        ra = np.where(use_first, first[0], np.where(use_second, second[0], np.nan))
        dec = np.where(use_first, first[1], np.where(use_second, second[1], np.nan))
        return ra, dec

    def _read_field(self, path: Path) -> FitsImage:
        """The field with its pixels in Jy/beam: its BUNIT read and converted (a field
        without one is in ``data.assume_bunit``); an unknown or non-intensity unit is an
        :class:`InputError` (reason ``bad_unit``) of each of its rows."""
        field = read_fits_image(path)
        factor = jy_per_beam_factor(field, self.cfg.assume_bunit)
        if factor != 1.0:
            field.data *= np.float32(factor)
        return field

    def _field(self, path: Path) -> FitsImage:
        """:meth:`_read_field`, read once per field, failures included: a field that failed
        fails each of its rows with the same error (a fresh copy per row, whose ``row`` is
        its own)."""
        failed = self._failed.get(path)
        if failed is None:
            try:
                return self._read(path)
            except InputError as err:
                failed = self._failed[path] = err
        raise InputError(failed.path, failed.reason, failed.detail)

    def _get(self, row, key) -> float:
        return _float(row[self.cols[key]]) if key in self.cols else float("nan")

    def field_path(self, row) -> Path:
        values = {name: row[name] for name in self.table.colnames}
        return self.fields_dir / self.cfg.field_pattern.format(**values)

    def input_files(self) -> list[str]:
        fields = sorted({str(p) for p in self._paths.values() if isinstance(p, Path)})
        return [str(self.catalog_path)] + [f for f in fields if Path(f).is_file()]

    def __len__(self) -> int:
        return len(self.rows)

    # -- cutouts ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Cutout | InputError]:
        # Group rows by field so each mosaic is read once; output keeps catalogue order
        # because every record carries its row index.
        order = sorted(self.rows, key=lambda i: str(self._paths[i]))
        for i in order:
            try:
                yield self._cutout(i)
            except InputError as err:
                err.row = i
                yield err
            except Exception as exc:  # anything else (MemoryError too) is still one row's fault
                err = InputError(self._where(i), "row_error",
                                 f"{type(exc).__name__}: {exc}".rstrip(": "))
                err.row = i
                yield err

    def _where(self, i: int) -> str:
        try:
            sid = str(self.table[i][self.cols["source_id"]])
        except Exception:
            sid = "?"
        return f"{self.catalog_path}:row {i} ({sid})"

    def _centre(self, i, row) -> tuple[float, float]:
        opt = ((self._get(row, "opt_ra"), self._get(row, "opt_dec")), ("opt_ra", "opt_dec"))
        rad = ((self._get(row, "ra"), self._get(row, "dec")), ("ra", "dec"))
        order = (opt, rad) if self.cfg.cutout.centre.value == "optical" else (rad, opt)
        problems = []
        for (ra, dec), (kra, kdec) in order:
            why = _valid_position(ra, dec)
            if why is None:
                return ra, dec
            if kra in self.cols:
                problems.append(f"{kra}/{kdec} = ({ra:g}, {dec:g}): {why}")
        raise InputError(self._where(i), "bad_position",
                         "no valid position (" + "; ".join(problems) + ")")

    def _label(self, i, row) -> int:
        if not self.classes:
            return -1
        value = str(row[self.cols["label"]]).strip()
        if value not in self.classes:
            raise InputError(self._where(i), "bad_row",
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
        path = self._paths[i]
        if isinstance(path, InputError):
            raise path
        field: FitsImage = self._field(path)
        size = float(cutout_side_arcsec(las, self.cfg.cutout.k_las,
                                        self.cfg.cutout.min_size_arcsec)) * u.arcsec
        self._check_size(where, las, size.value, field)
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
        # "trim": only the part inside the field (the pixels "partial" would not fill with
        # NaN), so a box wider than the field allocates nothing new.
        noise_box = Cutout2D(field.data, pos, size * self.cfg.cutout.noise_box_factor,
                             wcs=field.wcs, mode="trim")
        finite = noise_box.data[np.isfinite(noise_box.data)].astype(np.float64)
        # float64: float32 sums of squares overflow to inf for fields of ~1e19 Jy/beam and up
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


    def _check_size(self, where: str, las: float, size_arcsec: float, field: FitsImage) -> None:
        """Refuse a cutout too large for image_size or for memory, before allocating it."""
        pix = float(np.mean(proj_plane_pixel_scales(field.wcs)) * 3600.0)
        side = size_arcsec / pix if pix > 0 else float("inf")
        limit = MAX_CUTOUT_FACTOR * int(self.cfg.image_size)
        what = (f'LAS {las:g}" gives a cutout of {size_arcsec:.6g}" = {side:.6g} field pixels '
                f'of {pix:.3g}"')
        if not side <= limit:
            raise InputError(where, "too_large",
                             f"{what}, more than {MAX_CUTOUT_FACTOR} x data.image_size = "
                             f"{limit} px (check the LAS column and its unit)")
        need = side * side * _BYTES_PER_PIXEL
        free = _available_memory()
        if free is not None and need > free:
            raise InputError(where, "too_large", f"{what}, needing {need / 2**30:.1f} GiB "
                             f"with {free / 2**30:.1f} GiB of memory available")


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
