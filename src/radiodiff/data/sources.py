"""Built-in inputs: each source yields :class:`Cutout` records (or the error of one source).

- ``first``: the FIRST set of Griese et al. 2023 from the ``firstgalaxydata`` wheel;
- ``mirabest`` / ``lotss``: a catalogue plus FITS fields or mosaics, cut out with astropy
  ``Cutout2D`` around the optical host.

Those sources (:mod:`radiodiff.data.first`, :mod:`radiodiff.data.catalog`) build on the
records here; :func:`radiodiff.data.prepare.make_source` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np

from radiodiff.io.fits import InputError

__all__ = ["Cutout", "Duplicate", "Source", "CatalogError", "LAS_CUTOUT_SOURCES"]

# Catalogue + field sources: each cutout's side follows its LAS
# (:func:`radiodiff.data.preprocess.cutout_side_arcsec`), so its pixel scale does too.
LAS_CUTOUT_SOURCES = ("mirabest", "lotss")


@dataclass
class Cutout:
    """One source cut out of its field, at the field's resolution, in physical units."""
    row: int                  # index in the input (catalogue row / archive entry)
    source_id: str
    image: np.ndarray         # 2-D float32, Jy/beam for FITS inputs; may contain NaN
    pixel_scale_arcsec: float  # of ``image``
    beam_arcsec: tuple[float, float]  # (bmaj, bmin); NaN if unknown
    label: int = -1
    split: str | None = None
    ra: float = float("nan")
    dec: float = float("nan")
    las_arcsec: float = float("nan")
    rms: float = float("nan")  # sigma-clipped noise, Jy/beam; NaN where no flux scale
    catalog_peak_flux: float = float("nan")   # Jy/beam
    catalog_total_flux: float = float("nan")  # Jy
    # (dy, dx) in pixels of ``image`` from the image centre to the target position: Cutout2D
    # snaps to whole pixels, the rest is shifted out after measuring (sub-pixel centring).
    offset_px: tuple[float, float] = (0.0, 0.0)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Duplicate:
    """Catalogue row ``row`` repeats the earlier row ``of_row`` (the one that is kept)."""
    row: int
    source_id: str
    of_row: int
    of_id: str
    why: str  # "same name" or 'x.xx" apart (beam b")'

    def __str__(self) -> str:
        return f"row {self.row} ({self.source_id}) = row {self.of_row} ({self.of_id}): {self.why}"


class CatalogError(ValueError):
    """The catalogue as a whole is unusable (missing file or column): nothing is prepared."""


class Source(Protocol):
    """What :func:`radiodiff.data.prepare.prepare` needs from an input."""

    image_unit: str

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Cutout | InputError]: ...

    def input_files(self) -> list[str]:
        """Files whose hashes go into the provenance."""
        ...

