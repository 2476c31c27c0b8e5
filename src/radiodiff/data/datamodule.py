"""Training data: a ``Dataset`` over the prepared HDF5 file and a Lightning ``DataModule``.

Training never touches FITS or catalogues (STYLE 6): everything here reads the one prepared
file written by :func:`radiodiff.data.prepared.write_prepared`.

Training reads one endless stream of global sample numbers; the randomness (augmentation,
shuffling, the optional random validation split) comes from generators seeded by
``(seed, purpose, epoch, row)`` (the streams of :mod:`radiodiff.seeds`), not a running RNG
state, so a run resumed after ``k`` samples sees exactly what an uninterrupted run would,
whatever the number of workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from radiodiff.data.prepared import FLOAT_COLUMNS, read_prepared, read_rows
from radiodiff.seeds import augment_generator, shuffle_generator, validation_split_rng

__all__ = [
    "Augment", "dihedral", "augment_image", "CutoutDataset", "SampleStream", "StreamSampler",
    "CutoutDataModule",
]

# Columns usable as conditions: one number per row. ``label`` is the class index.
_CONDITION_COLUMNS = ("label",) + FLOAT_COLUMNS
# The images are gzip-chunked 256 rows at a time (several MB per chunk at 80x80); h5py's
# default 1 MiB chunk cache would decompress a whole chunk for every single-row read.
_CHUNK_CACHE_BYTES = 64 * 1024 * 1024
# Length of the endless training stream (samples); far beyond any run, finite for len().
_STREAM_LENGTH = 2**50


@dataclass(frozen=True)
class Augment:
    """Which augmentations to apply (same fields as :class:`radiodiff.config.AugmentConfig`).

    Parameters
    ----------
    flips : bool
        Random horizontal and vertical flips (each with probability 1/2). Exact.
    rot90 : bool
        Random rotation by ``k * 90`` degrees, ``k`` uniform in 0..3. Exact. Together with
        ``flips`` this is a uniform draw from the 8 symmetries of the square (group D4).
    rotate : bool
        Additional rotation by an angle uniform in [-180, 180) degrees, bilinear
        interpolation with zero padding. *Not* exact: it smooths the image slightly and
        cuts off the corners.
    """
    flips: bool = False
    rot90: bool = False
    rotate: bool = False

    @classmethod
    def from_any(cls, augment: Any) -> "Augment":
        """Build from ``None`` (no augmentation), a mapping, or any object with the fields."""
        if augment is None:
            return cls()
        if isinstance(augment, cls):
            return augment
        get = (augment.get if isinstance(augment, Mapping)
               else lambda k, d: getattr(augment, k, d))
        return cls(**{k: bool(get(k, False)) for k in ("flips", "rot90", "rotate")})

    @property
    def active(self) -> bool:
        return self.flips or self.rot90 or self.rotate


def _rotate(image: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate ``image`` (C, H, W) by ``angle`` radians: bilinear, zeros outside the input."""
    _, h, w = image.shape
    c, s = math.cos(angle), math.sin(angle)
    # affine_grid works in coordinates normalised to [-1, 1] per axis; the H/W factors keep the
    # rotation a rigid one in pixel space when the image is not square.
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=image.dtype)
    grid = F.affine_grid(theta[None], [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def dihedral(x: torch.Tensor, k: int = 0, flip_x: bool = False, flip_y: bool = False
             ) -> torch.Tensor:
    """One of the 8 symmetries of the square (group D4) on the last two axes (H, W). Exact.

    Flips first (``flip_x`` reverses the last axis, ``flip_y`` the one before), then a
    rotation by ``k * 90`` degrees (``torch.rot90`` over ``(-2, -1)``). A rotation by an
    odd ``k`` swaps H and W. The identity returns ``x`` itself (not a copy).
    """
    dims = [d for d, f in ((-1, flip_x), (-2, flip_y)) if f]
    if dims:
        x = torch.flip(x, dims)
    if k % 4:
        x = torch.rot90(x, k, dims=(-2, -1))
    return x


def augment_image(image: torch.Tensor, augment: Augment, generator: torch.Generator
                  ) -> torch.Tensor:
    """Apply ``augment`` to one image (C, H, W), drawing every random number from ``generator``.

    The draws are made in a fixed order whatever is switched on, so enabling ``rotate`` does
    not change which flip/rot90 a given (seed, epoch, row) gets.
    """
    flip = torch.randint(0, 2, (2,), generator=generator)
    k = int(torch.randint(0, 4, (1,), generator=generator))
    u = float(torch.rand((1,), generator=generator))
    flip_x, flip_y = (bool(f) for f in flip.tolist()) if augment.flips else (False, False)
    image = dihedral(image, k if augment.rot90 else 0, flip_x, flip_y)
    if augment.rotate:
        image = _rotate(image, (2.0 * u - 1.0) * math.pi)
    return image.contiguous()


class CutoutDataset(Dataset):
    """Rows of a prepared cutout file as ``(image, cond)`` pairs.

    Parameters
    ----------
    path : str or Path
        Prepared HDF5 file (see :mod:`radiodiff.data.prepared`).
    indices : array_like of int
        Row indices of the file served by this dataset, in this order.
    conditions : sequence of str
        Columns returned in ``cond``: ``"label"`` (class index, -1 = unlabelled) and/or any
        float column, e.g. ``"peak_flux"`` (Jy/beam), ``"las_arcsec"`` (arcsec). Values are
        the physical values stored in the file (NaN where the file has NaN); normalising
        them is the job of the conditioning transform, not of the loader.
    augment : AugmentConfig-like or None
        Object or mapping with ``flips``, ``rot90``, ``rotate`` booleans; None for none.
    in_memory : bool
        Read all served images at construction (fast; uses ``len(indices) * H * W * 4``
        bytes). Otherwise each process opens the file itself on first use and reads one row
        per item (the h5py handle is never pickled to workers).
    seed : int
        Seed of the augmentation; the transform of row ``r`` in epoch ``e`` (:meth:`get`)
        is a pure function of ``(seed, e, r)``; indexing gives epoch 0's.

    Raises
    ------
    ValueError
        If a condition is not a per-row numeric column of the file, an index is out of
        range, or a chunk of the file does not decompress (one line naming the file and the
        chunk's rows, :func:`radiodiff.data.prepared.read_rows`).
    """

    def __init__(self, path: str | Path, indices: Sequence[int] | np.ndarray,
                 conditions: Sequence[str] = ("label",), augment: Any = None,
                 in_memory: bool = True, seed: int = 0) -> None:
        self.path = Path(path)
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.conditions = tuple(conditions)
        self.augment = Augment.from_any(augment)
        self.in_memory = bool(in_memory)
        self.seed = int(seed)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        with h5py.File(self.path, "r") as f:
            n_rows = f["images"].shape[0]
            valid = [c for c in _CONDITION_COLUMNS if c in f and f[c].shape == (n_rows,)]
            for name in self.conditions:
                if name not in valid:
                    raise ValueError(f"{self.path}: condition {name!r} is not a per-row numeric "
                                     f"column of this file; valid conditions: {valid}")
            if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n_rows):
                raise ValueError(f"{self.path}: row indices must lie in [0, {n_rows}), got "
                                 f"[{self.indices.min()}, {self.indices.max()}]")
            self.cond = {name: self._condition_tensor(
                name, read_rows(f[name], 0, n_rows, self.path)[self.indices])
                for name in self.conditions}
            self.images = self._read_images(f["images"]) if self.in_memory else None

    @staticmethod
    def _condition_tensor(name: str, values: np.ndarray) -> torch.Tensor:
        dtype = torch.long if name == "label" else torch.float32
        return torch.as_tensor(np.asarray(values), dtype=dtype)

    def _read_images(self, ds: h5py.Dataset) -> torch.Tensor:
        if not len(self.indices):
            return torch.zeros((0, *ds.shape[1:]), dtype=torch.float32)
        # One contiguous read then numpy indexing: h5py point selections over thousands of
        # scattered rows are far slower than decompressing the whole range once.
        lo, hi = int(self.indices.min()), int(self.indices.max()) + 1
        block = read_rows(ds, lo, hi, self.path)  # a corrupt chunk: file and rows named
        return torch.from_numpy(np.ascontiguousarray(block[self.indices - lo], np.float32))

    def __len__(self) -> int:
        return len(self.indices)

    def _open(self) -> h5py.File:
        # Reopen after a fork too: an HDF5 handle inherited from the parent is not safe to use.
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles cannot be pickled; each worker opens its own
        state["_pid"] = None
        return state

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.get(i, 0)

    def get(self, i: int, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Item ``i`` with the augmentation draw of ``epoch``."""
        row = int(self.indices[i])
        if self.images is not None:
            image = self.images[i].clone()  # (1, H, W); clone so callers cannot edit the cache
        else:
            block = read_rows(self._open()["images"], row, row + 1, self.path)
            image = torch.from_numpy(np.asarray(block[0], np.float32))
        if self.augment.active:
            image = augment_image(image, self.augment,
                                  augment_generator(self.seed, epoch, row))
        return image, {name: values[i] for name, values in self.cond.items()}


class SampleStream(Dataset):
    """An endless stream over ``base``: item ``g`` is global sample number ``g`` of training.

    Sample ``g`` is row ``perm_e[g mod n]`` of epoch ``e = g // n`` with that epoch's
    augmentation, ``perm_e`` a permutation seeded by ``(seed, epoch)``. A run resumed after
    ``k`` samples continues with sample ``k``: no sampler or RNG state needs saving.
    """

    def __init__(self, base: CutoutDataset, seed: int = 0) -> None:
        self.base, self.seed = base, int(seed)
        self._perm: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return _STREAM_LENGTH

    def __getitem__(self, g: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, pos = divmod(int(g), len(self.base))
        if self._perm is None or self._perm[0] != epoch:
            gen = shuffle_generator(self.seed, epoch)
            self._perm = (epoch, torch.randperm(len(self.base), generator=gen))
        return self.base.get(int(self._perm[1][pos]), epoch)


class StreamSampler(Sampler[int]):
    """Global sample numbers ``start + rank, start + rank + world, ...`` for one rank."""

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.start, self.rank, self.world_size = int(start), int(rank), int(world_size)

    def __len__(self) -> int:
        return (_STREAM_LENGTH - self.start) // self.world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start + self.rank, _STREAM_LENGTH, self.world_size))


def _worker_init(worker_id: int) -> None:
    # N workers each running a full-width intra-op thread pool oversubscribe the CPU badly.
    torch.set_num_threads(1)


class CutoutDataModule(L.LightningDataModule):
    """Train / validation / test loaders over a prepared cutout file.

    Parameters
    ----------
    path : str or Path
        Prepared HDF5 file.
    batch_size : int
        Images per batch (>= 1).
    num_workers : int
        DataLoader worker processes (>= 0).
    in_memory : bool
        Read the selected images into memory at setup (see :class:`CutoutDataset`).
    conditions : sequence of str
        Columns returned in each batch's ``cond`` dict.
    augment : AugmentConfig-like or None
        Training-set augmentation (``flips``, ``rot90``, ``rotate``); None for none.
        Validation and test images are never augmented.
    seed : int
        Seed of the augmentation, the shuffle order and the random validation split.
    train_split, val_split, test_split : str
        Values of the file's ``split`` column selecting each set.
    random_val_fraction : float or None
        If set (0 < f < 1), ignore ``train_split``/``val_split`` and split all non-test rows
        into train and validation at random (seeded, reproducible).
    include_flagged : bool
        Keep rows that failed a quality cut (``flags != 0``); by default they are dropped.

    Attributes
    ----------
    classes : list of str
        Class names (file attribute ``classes``), index = ``label``; set by :meth:`setup`.
    train_dataset, val_dataset, test_dataset : CutoutDataset or None
        Built by :meth:`setup` for the stage requested.
    """

    def __init__(self, path: str | Path, batch_size: int = 32, num_workers: int = 0,
                 in_memory: bool = True, conditions: Sequence[str] = ("label",),
                 augment: Any = None, seed: int = 0, train_split: str = "train",
                 val_split: str = "valid", test_split: str = "test",
                 random_val_fraction: float | None = None,
                 include_flagged: bool = False) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(num_workers, bool) or int(num_workers) != num_workers or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if random_val_fraction is not None and not 0.0 < float(random_val_fraction) < 1.0:
            raise ValueError("random_val_fraction must be None or strictly between 0 and 1, "
                             f"got {random_val_fraction!r}")
        if random_val_fraction is None and train_split == val_split:
            raise ValueError(f"train_split and val_split are both {train_split!r}; they must "
                             "differ (or set random_val_fraction)")
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.in_memory = bool(in_memory)
        self.conditions = tuple(conditions)
        self.augment = Augment.from_any(augment)
        self.seed = int(seed)
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.random_val_fraction = (None if random_val_fraction is None
                                    else float(random_val_fraction))
        self.include_flagged = bool(include_flagged)
        self.classes: list[str] = []
        self.data_sha256: str | None = None
        self.train_dataset: CutoutDataset | None = None
        self.val_dataset: CutoutDataset | None = None
        self.test_dataset: CutoutDataset | None = None
        self._stages: set[str] = set()

    @classmethod
    def from_config(cls, data_cfg: Any, seed: int = 0, **kw: Any) -> "CutoutDataModule":
        """Build from a :class:`radiodiff.config.DataConfig` (``out`` + ``loader`` fields)."""
        lc = data_cfg.loader
        return cls(path=str(data_cfg.out), batch_size=lc.batch_size, num_workers=lc.num_workers,
                   in_memory=lc.in_memory, conditions=list(lc.conditions), augment=lc.augment,
                   seed=seed, train_split=lc.train_split, val_split=lc.val_split,
                   random_val_fraction=lc.random_val_fraction, **kw)

    # ----------------------------------------------------------------------------- selection
    def select(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Row indices of ``train`` / ``val`` / ``test`` in a prepared file's ``columns``
        (each sorted, for locality of lazy reads): the one split rule of training."""
        split = np.asarray(columns["split"]).astype(str)
        keep = np.ones(len(split), bool) if self.include_flagged else columns["flags"] == 0
        rows = {"test": np.flatnonzero(keep & (split == self.test_split))}
        if self.random_val_fraction is None:
            rows["train"] = np.flatnonzero(keep & (split == self.train_split))
            rows["val"] = np.flatnonzero(keep & (split == self.val_split))
        else:
            pool = np.flatnonzero(keep & (split != self.test_split))
            n_val = int(round(self.random_val_fraction * len(pool)))
            # Never let rounding empty either side of a non-trivial pool.
            n_val = min(max(n_val, 1), len(pool) - 1) if len(pool) >= 2 else 0
            perm = validation_split_rng(self.seed).permutation(pool)
            rows["val"], rows["train"] = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return rows

    def _check_nonempty(self, rows: np.ndarray, which: str, split: np.ndarray) -> None:
        if len(rows):
            return
        name = {"train": self.train_split, "val": self.val_split, "test": self.test_split}[which]
        how = (f"random_val_fraction={self.random_val_fraction}"
               if self.random_val_fraction is not None and which != "test"
               else f"split {name!r}")
        flagged = "" if self.include_flagged else " after dropping flagged rows"
        raise ValueError(f"{self.path}: the {which} selection ({how}) is empty{flagged}; "
                         f"splits present: {sorted({str(s) for s in split})}")

    def setup(self, stage: str | None = None) -> None:
        """Select rows and build the datasets needed by ``stage`` (fit/validate/test/predict).

        Raises
        ------
        ValueError
            If a selection needed by ``stage`` is empty, naming the file, the split and the
            splits present.
        """
        wanted = {"fit": {"train", "val"}, "validate": {"val"}, "test": {"test"},
                  "predict": {"test"}, None: {"train", "val", "test"}}[stage]
        meta = read_prepared(self.path, images=False)
        self.classes = meta.classes
        self.data_sha256 = meta.attrs.get("data_sha256")
        rows = self.select(meta.columns)
        for which in sorted(wanted):
            self._check_nonempty(rows[which], which, meta.columns["split"])
        common = dict(conditions=self.conditions, in_memory=self.in_memory, seed=self.seed)
        if "train" in wanted:
            self.train_dataset = CutoutDataset(self.path, rows["train"], augment=self.augment,
                                               **common)
        if "val" in wanted:
            self.val_dataset = CutoutDataset(self.path, rows["val"], **common)
        if "test" in wanted:
            self.test_dataset = CutoutDataset(self.path, rows["test"], **common)
        self._stages |= wanted

    # ---------------------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset | None, which: str,
                sampler: Sampler | None = None) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"no {which} dataset: call setup() with a stage that builds it")
        workers = self.num_workers
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                          drop_last=False, num_workers=workers, persistent_workers=False,
                          worker_init_fn=_worker_init if workers > 0 else None)

    def samples_seen(self) -> int:
        """Training samples consumed by all ranks: the module's ``images_seen``, else the
        global step times the current batch."""
        t = self.trainer
        if t is None:
            return 0
        seen = getattr(t.lightning_module, "images_seen", None)
        if isinstance(seen, int):
            return seen
        return int(t.global_step) * self.batch_size * t.world_size * t.accumulate_grad_batches

    def train_dataloader(self) -> DataLoader:
        """The endless :class:`SampleStream`, starting after the samples already seen and
        sharded over ranks (use with ``Trainer(use_distributed_sampler=False)``)."""
        if self.train_dataset is None:
            raise RuntimeError("no train dataset: call setup('fit') first")
        t = self.trainer
        sampler = StreamSampler(self.samples_seen(), t.global_rank if t else 0,
                                t.world_size if t else 1)
        return self._loader(SampleStream(self.train_dataset, self.seed), "train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test")

    # ------------------------------------------------------------------------- checkpoints
    def _file_sha256(self) -> str | None:
        with h5py.File(self.path, "r") as f:
            value = f.attrs.get("data_sha256")
        return value.decode() if isinstance(value, bytes) else value

    def state_dict(self) -> dict[str, Any]:
        """The seed and the file's ``data_sha256``, saved in Lightning checkpoints."""
        sha = self.data_sha256 if self.data_sha256 is not None else self._file_sha256()
        return {"seed": self.seed, "data_sha256": sha}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the seed; refuse to resume on a file whose content hash differs (a
        checkpoint that records none, made from a file without one, resumes unchecked, as
        :func:`~radiodiff.training.identity.check_resume_data` already warned).

        Raises
        ------
        ValueError
            If the file's ``data_sha256`` differs from the checkpoint's.
        """
        expected, actual = state_dict.get("data_sha256"), self._file_sha256()
        if expected is not None and expected != actual:
            raise ValueError(f"{self.path}: data_sha256 {actual!r} differs from the "
                             f"checkpoint's {expected!r}; refusing to resume on different data")
        seed = int(state_dict.get("seed", self.seed))
        if seed != self.seed:
            self.seed = seed
            # Rebuild what setup() already built, so splits and augmentation use the seed.
            built = set(self._stages)
            if "train" in built:
                self.setup("fit")
            elif "val" in built:
                self.setup("validate")
            if "test" in built:
                self.setup("test")
