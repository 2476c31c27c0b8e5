"""The prepared-cutout HDF5 file: layout, atomic writing, reading.

Layout (``FORMAT_VERSION`` 1), N sources, images of H x W pixels:

==========================  =================  ==============================================
dataset                     shape / dtype      meaning
==========================  =================  ==============================================
``images``                  (N,1,H,W) float32  model-space images in [0, 1] (chunked, gzip)
``label``                   (N,) int16         index into attr ``classes``; -1 = unlabelled
``split``                   (N,) str           ``train`` / ``valid`` / ``test``
``source_id``               (N,) str           catalogue name of the source
``flags``                   (N,) uint8         bitmask of failed cuts (``FLAGS``); 0 = clean
``ra``, ``dec``             (N,) float64       cutout centre, deg (J2000); NaN if unknown
``las_arcsec``              (N,) float64       largest angular size, arcsec
``peak_flux``               (N,) float64       peak of the prepared (resampled) cutout, Jy/beam
                                               (NaN: no flux scale); image * peak_flux is Jy/beam
                                               only for per-image scaling with negatives
                                               clipped: in general image * scale + offset
``total_flux``              (N,) float64       sum of pixels > 3 rms / beam area, Jy
``rms``                     (N,) float64       sigma-clipped noise, Jy/beam
``snr``                     (N,) float64       field-resolution peak / rms (the S/N cut)
``catalog_peak_flux``       (N,) float64       catalogue peak flux, Jy/beam (NaN if absent)
``catalog_total_flux``      (N,) float64       catalogue total flux, Jy (NaN if absent)
``cutout_size_arcsec``      (N,) float64       side of the cutout on the sky
``pixel_scale_arcsec``      (N,) float64       side of one output pixel on the sky
``beam_arcsec``             (N,2) float64      restoring beam (bmaj, bmin), arcsec
``scale``, ``offset``       (N,) float64       physical = image * scale + offset (image_unit)
``provenance/files``        (F,) str           input files (catalogue, fields, archives):
                                               a relative path as given, else the name
``provenance/sha256``       (F,) str           their SHA-256
==========================  =================  ==============================================

Root attributes: ``format_version``, ``name``, ``source``, ``classes`` (JSON list),
``image_unit``, ``negatives``, ``scaling``, ``config_yaml``, ``package_version``,
``git_commit``, ``created_utc``, ``inputs_sha256``, ``data_sha256``, ``summary`` (JSON).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from radiodiff.io.artifacts import atomic_write
from radiodiff.io.integrity import open_h5, sha256_file

__all__ = [
    "FORMAT_VERSION", "FLAGS", "COLUMNS", "PreparedSet", "write_prepared", "read_prepared",
    "read_rows", "sha256_file", "data_sha256", "declared_sha256", "SPLITS", "ordered_splits",
]

FORMAT_VERSION = 1
# The published splits, in the order every table lists them.
SPLITS = ("train", "valid", "test")
# One bit per quality cut, so a flagged row says which cuts it failed.
FLAGS = {"nan": 1, "blank": 2, "low_snr": 4, "edge_emission": 8}

FLOAT_COLUMNS = (
    "ra", "dec", "las_arcsec", "peak_flux", "total_flux", "rms", "snr", "catalog_peak_flux",
    "catalog_total_flux", "cutout_size_arcsec", "pixel_scale_arcsec", "scale", "offset",
)
COLUMNS = ("label", "split", "source_id", "flags", "beam_arcsec") + FLOAT_COLUMNS
_STR = h5py.string_dtype("utf-8")


@dataclass
class PreparedSet:
    """A prepared file read into memory (``images`` may be None when not requested)."""
    images: np.ndarray | None
    columns: dict[str, np.ndarray]
    attrs: dict[str, Any]
    files: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    image_shape: tuple[int, ...] = ()  # (1, H, W) of the images dataset

    @property
    def image_size(self) -> int | None:
        """Side of the images, pixels (None when unknown)."""
        return int(self.image_shape[-1]) if self.image_shape else None

    @property
    def classes(self) -> list[str]:
        return list(self.attrs.get("classes", []))

    def __len__(self) -> int:
        return len(self.columns["label"])

    def geometry(self) -> dict[str, Any]:
        """Median pixel scale (arcsec), beam ([bmaj, bmin] arcsec; None where no clean row
        knows its beam) and noise rms (Jy/beam; None without a flux scale) of the clean
        rows, each over the rows that know it."""
        clean = self.columns["flags"] == 0
        pix = self.columns["pixel_scale_arcsec"][clean]
        beam = self.columns["beam_arcsec"][clean]
        beam = beam[np.isfinite(beam).all(axis=1) & (beam > 0).all(axis=1)]
        rms = self.columns["rms"][clean]
        rms = rms[np.isfinite(rms) & (rms > 0)]
        return {"pixel_scale_arcsec": float(np.median(pix)),
                "beam_arcsec": np.median(beam, axis=0).tolist() if len(beam) else None,
                "rms_jy_beam": float(np.median(rms)) if rms.size else None}


def data_sha256(images: np.ndarray, columns: dict[str, np.ndarray]) -> str:
    """Hash of the images and every column: identical content gives an identical hash."""
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    return _hash_columns(h, columns)


def _hash_columns(h, columns: dict[str, np.ndarray]) -> str:
    """The columns' part of :func:`data_sha256` (sorted names, then values), hex digest."""
    for name in sorted(columns):
        col = columns[name]
        h.update(name.encode())
        h.update("\x1f".join(map(str, col)).encode() if col.dtype.kind in "OUS"
                 else np.ascontiguousarray(col).tobytes())
    return h.hexdigest()


def _validate(images: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {images.shape}")
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    for name, col in columns.items():
        if len(col) != len(images):
            raise ValueError(f"column {name!r} has {len(col)} rows, images have {len(images)}")


def write_prepared(path: str | Path, images: np.ndarray, columns: dict[str, np.ndarray],
                   attrs: dict[str, Any], files: Iterable[tuple[str, str]] = ()) -> Path:
    """Write a prepared set atomically: a temporary file in the same folder, then rename.

    An interrupted or failed write leaves any earlier file at ``path`` untouched and no
    partial file behind.
    """
    _validate(images, columns)
    n, _, h, w = images.shape
    files = list(files)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("images", data=images.astype(np.float32),
                             chunks=(max(1, min(n, 256)), 1, h, w) if n else None,
                             compression="gzip", compression_opts=4, shuffle=True)
            for name in COLUMNS:
                col = columns[name]
                if name in ("split", "source_id"):
                    f.create_dataset(name, data=np.asarray(col, dtype=object), dtype=_STR)
                else:
                    f.create_dataset(name, data=col)
            prov = f.create_group("provenance")
            prov.create_dataset("files", data=[a for a, _ in files], dtype=_STR)
            prov.create_dataset("sha256", data=[b for _, b in files], dtype=_STR)
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in attrs.items():
                f.attrs[key] = (json.dumps(value) if isinstance(value, (dict, list, tuple))
                                else value)
            f.flush()

    return atomic_write(path, write, fsync=True)


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value.item() if isinstance(value, np.generic) else value


# dataset -> (dtype kinds accepted, trailing shape); every one has the images' length N.
_LAYOUT = {"label": ("iu", ()), "split": ("OS", ()), "source_id": ("OS", ()),
           "flags": ("u", ()), "beam_arcsec": ("f", (2,)),
           **{name: ("f", ()) for name in FLOAT_COLUMNS}}


def _layout_problems(f: h5py.File) -> list[str]:
    """What is wrong with the datasets of an open prepared file (presence, dtype, shape,
    length), as short phrases; empty when the layout is right."""
    problems = []
    images = f.get("images")
    if not isinstance(images, h5py.Dataset):
        return ["no images dataset"]
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] \
            or images.dtype != np.float32:
        problems.append(f"images is {images.dtype}{list(images.shape)}, expected "
                        "float32 (N, 1, H, H)")
    n = images.shape[0] if images.ndim else 0
    for name, (kinds, tail) in _LAYOUT.items():
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset):
            problems.append(f"dataset {name!r} is missing")
        elif ds.ndim == 0 or ds.dtype.kind not in kinds or ds.shape[1:] != tail:
            problems.append(f"{name!r} is {ds.dtype}{list(ds.shape)}")
        elif ds.shape[0] != n:
            problems.append(f"{name!r} has {ds.shape[0]} rows, images have {n}")
    for name in ("provenance/files", "provenance/sha256"):
        if not isinstance(f.get(name), h5py.Dataset):
            problems.append(f"dataset {name!r} is missing")
    return problems


def _stream_sha256(f: h5py.File, columns: dict[str, np.ndarray], rows: int = 256) -> str:
    """:func:`data_sha256` of an open file, reading the images ``rows`` at a time (every
    chunk is decompressed once: a corrupt chunk raises here, naming its rows)."""
    images = f["images"]
    h = hashlib.sha256()
    for i in range(0, images.shape[0], rows):
        block = read_rows(images, i, min(i + rows, images.shape[0]), f.filename)
        h.update(np.ascontiguousarray(block, dtype=np.float32).tobytes())
    return _hash_columns(h, columns)


def _bad_rows(ds: h5py.Dataset, lo: int, hi: int) -> tuple[int, int]:
    """First and last row of the first chunk met by rows ``[lo, hi)`` that cannot be read
    (the whole chunk: those rows are lost together)."""
    step = ds.chunks[0] if ds.chunks else max(1, hi - lo)
    for a in range((lo // step) * step, hi, step):
        b = min(a + step, ds.shape[0])
        try:
            ds[a:b]
        except (OSError, RuntimeError):
            return a, b - 1
    return lo, hi - 1


def read_rows(ds: h5py.Dataset, lo: int, hi: int, path: str | Path) -> np.ndarray:
    """``ds[lo:hi]`` of the prepared file ``path``, or one line naming the file, the dataset
    and the rows of the first chunk that does not decompress (a ``ValueError``)."""
    try:
        return ds[lo:hi]
    except (OSError, RuntimeError) as exc:
        a, b = _bad_rows(ds, lo, hi)
        raise ValueError(f"{path}: dataset {ds.name.lstrip('/')!r} is unreadable, a corrupt "
                         f"chunk at rows {a}-{b} ({' '.join(str(exc).split())[:120]}); re-run "
                         "`radiodiff prepare` to rebuild it") from exc


def ordered_splits(splits: Any) -> list[str]:
    """The distinct split names in ``splits``: :data:`SPLITS` first in their order, then any
    other name alphabetically."""
    present = {str(s) for s in splits}
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def declared_sha256(path: str | Path) -> str | None:
    """The ``data_sha256`` a prepared file declares (its attributes only: no images)."""
    return read_prepared(path, images=False).attrs.get("data_sha256")


def read_prepared(path: str | Path, images: bool = True, verify: bool = False) -> PreparedSet:
    """The one validating reader of prepared files.

    Checks the format version, every dataset's presence, dtype, shape and length
    (``_LAYOUT``), and turns an unreadable (e.g. corrupt compressed) chunk into one line.
    ``verify``: also recompute the content hash and compare it with the ``data_sha256``
    attribute (reads every image once; files without the attribute are not checked).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a radiodiff prepared file, a bad layout or an unreadable chunk (the message
        names the file and the dataset); :class:`~radiodiff.io.integrity.IntegrityError`
        when the content does not match its ``data_sha256``.
    """
    from radiodiff.io.integrity import IntegrityError

    path = Path(path)
    redo = "re-run `radiodiff prepare` to rebuild it"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prepared data file not found "
                                "(run `radiodiff prepare data=...` first)")
    f = open_h5(path, redo)
    with f:
        version = f.attrs.get("format_version")
        if version != FORMAT_VERSION or "images" not in f:
            raise ValueError(f"{path}: not a radiodiff prepared file "
                             f"(format_version={version!r}, expected {FORMAT_VERSION})")
        problems = _layout_problems(f)
        if problems:
            raise ValueError(f"{path}: damaged prepared file: {'; '.join(problems[:4])}"
                             f"{' ...' if len(problems) > 4 else ''}; {redo}")
        name = "columns"
        try:
            cols = {}
            for name in COLUMNS:
                ds = f[name]
                cols[name] = (ds.asstr()[()] if name in ("split", "source_id") else ds[()])
                if name in ("split", "source_id"):
                    cols[name] = np.asarray(cols[name], dtype=object)
            name = "images"
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            expected = attrs.get("data_sha256")
            actual = _stream_sha256(f, cols) if verify and expected else None
            result = PreparedSet(
                images=read_rows(f["images"], 0, len(f["images"]), path) if images else None,
                columns=cols, attrs=attrs,
                files=list(f["provenance/files"].asstr()[()]),
                sha256=list(f["provenance/sha256"].asstr()[()]),
                image_shape=tuple(int(d) for d in f["images"].shape[1:]))
        except (OSError, RuntimeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: dataset {name!r} is unreadable, a corrupt chunk "
                             f"({' '.join(str(exc).split())[:120]}); {redo}") from exc
    if actual is not None and actual != expected:
        raise IntegrityError(f"{path}: content does not match its data_sha256 attribute "
                             f"(recorded {str(expected)[:12]}..., found {actual[:12]}...): "
                             f"the file was changed after `radiodiff prepare`; {redo}")
    return result
