"""The FIRST radio-galaxy set of Griese et al. 2023 (Data in Brief 47, 108974).

2158 FIRST images (300 x 300 pixels of 1.8"), labelled FRI / FRII / Compact / Bent, with the
published train/valid/test split, shipped as zipped HDF5 in the ``firstgalaxydata`` wheel.
The module of that wheel imports torchvision, so we never import it: we only locate its
data file and read it with h5py.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from radiodiff.io.fits import InputError
from radiodiff.data.sources import Cutout

__all__ = ["FirstSource", "first_archive", "FIRST_CLASSES"]

FIRST_CLASSES = ("FRI", "FRII", "Compact", "Bent")  # Label_literature 0..3
ARCHIVE = "galaxy_data_h5.zip"
MEMBER = "galaxy_data_h5.h5"
_INSTALL_HINT = "install it with `pip install --no-deps firstgalaxydata==0.2.1` (or `make setup`)"


def first_archive() -> Path:
    """Path of the zipped HDF5 inside the installed ``firstgalaxydata`` package."""
    spec = importlib.util.find_spec("firstgalaxydata")  # locates without importing
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the firstgalaxydata package is not installed; {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / ARCHIVE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FIRST archive missing from firstgalaxydata; "
                                f"{_INSTALL_HINT}")
    return path


def _key_order(key: str) -> int:
    return int(key.rsplit("_", 1)[-1])  # data_0, data_1, ... data_2157


class FirstSource:
    """Yields the FIRST images as :class:`Cutout` records in archive order (data_0, data_1...)."""

    image_unit = "arbitrary"  # 8-bit normalised images: no Jy/beam scale

    def __init__(self, data_cfg, archive: str | Path | None = None):
        self.cfg = data_cfg
        self.archive = Path(archive) if archive else first_archive()
        classes = list(data_cfg.classes)
        if classes != list(FIRST_CLASSES):
            raise ValueError(f"data.classes must be {list(FIRST_CLASSES)} for the FIRST set "
                             f"(its labels are indices into that list), got {classes}")
        try:
            with zipfile.ZipFile(self.archive) as zf:
                # 200 MB: reading it into memory beats random access into a deflate stream.
                self._blob = zf.read(MEMBER)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise InputError(self.archive, "unreadable",
                             f"cannot read {MEMBER} from the archive ({exc})") from exc
        with h5py.File(io.BytesIO(self._blob), "r") as f:
            self._keys = sorted(f.keys(), key=_key_order)
        if data_cfg.limit is not None:
            self._keys = self._keys[: int(data_cfg.limit)]

    def __len__(self) -> int:
        return len(self._keys)

    def input_files(self) -> list[str]:
        return [str(self.archive)]

    def __iter__(self) -> Iterator[Cutout | InputError]:
        beam = tuple(self.cfg.beam_arcsec) if self.cfg.beam_arcsec else (np.nan, np.nan)
        pix = float(self.cfg.pixel_scale_arcsec or np.nan)
        crop = None
        if self.cfg.crop_arcsec is not None:
            if not np.isfinite(pix):
                raise ValueError("data.crop_arcsec needs data.pixel_scale_arcsec")
            crop = int(round(self.cfg.crop_arcsec / pix))
        with h5py.File(io.BytesIO(self._blob), "r") as f:
            for row, key in enumerate(self._keys):
                g = f[key]
                img = g["Img"]
                if img.ndim != 2:
                    yield InputError(f"{self.archive}:{key}", "bad_shape",
                                     f"image has shape {img.shape}, expected 2-D")
                    continue
                image = img[()].astype(np.float32)
                if crop is not None:
                    if not 2 <= crop <= min(image.shape):
                        yield InputError(f"{self.archive}:{key}", "bad_shape",
                                         f"crop of {crop} px does not fit image {image.shape}")
                        continue
                    y0, x0 = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
                    image = image[y0:y0 + crop, x0:x0 + crop]
                yield Cutout(
                    row=row, source_id=key, image=image,
                    pixel_scale_arcsec=pix, beam_arcsec=beam,
                    label=int(g["Label_literature"][()]),
                    split=g["Split_literature"].asstr()[()],
                    ra=float(img.attrs.get("RA", np.nan)), dec=float(img.attrs.get("DEC", np.nan)),
                    extra={"catalogue": str(img.attrs.get("Source", ""))},
                )
