"""Tests of the prepared-file Dataset and the Lightning DataModule (tiny synthetic files)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from radiodiff.config import DataConfig
from radiodiff.data.datamodule import (CutoutDataModule, CutoutDataset, SampleStream,
                                       StreamSampler, dihedral)
from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, write_prepared

N, H = 40, 16
D4_ALL = dict(flips=True, rot90=True, rotate=False)
# Row layout of the synthetic file: 24 train, 8 valid, 8 test; rows 0 (train), 25 (valid)
# and 33 (test) are flagged.
SPLIT = np.array(["train"] * 24 + ["valid"] * 8 + ["test"] * 8, dtype=object)
FLAGGED = (0, 25, 33)


def make_file(path, seed=0, n=N, split=SPLIT):
    rng = np.random.default_rng(seed)
    # Random pixels: all 8 D4 transforms of an image are distinct with probability 1.
    images = rng.random((n, 1, H, H)).astype(np.float32)
    cols = {name: rng.normal(size=n) for name in FLOAT_COLUMNS}
    cols["peak_flux"] = np.arange(n, dtype=np.float64) * 1e-3  # row r has peak r mJy/beam
    cols["label"] = (np.arange(n) % 2).astype(np.int16)
    cols["split"] = np.asarray(split, dtype=object)
    cols["source_id"] = np.array([f"src{i:03d}" for i in range(n)], dtype=object)
    flags = np.zeros(n, np.uint8)
    flags[[r for r in FLAGGED if r < n]] = 4
    cols["flags"] = flags
    cols["beam_arcsec"] = np.full((n, 2), 5.0)
    attrs = {"classes": ["FRI", "FRII"], "name": "synthetic",
             "data_sha256": data_sha256(images, cols)}
    write_prepared(path, images, cols, attrs)
    return images, cols


@pytest.fixture(scope="module")
def h5file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dm") / "synthetic.h5"
    images, cols = make_file(path)
    return path, images, cols


def d4_transforms(img):
    """The 8 symmetries of the square applied to (1, H, W)."""
    out = []
    for flipped in (img, torch.flip(img, (-1,))):
        out += [torch.rot90(flipped, k, (-2, -1)) for k in range(4)]
    return out


def d4_index(aug, img):
    matches = [j for j, t in enumerate(d4_transforms(img)) if torch.equal(aug, t)]
    return matches[0] if len(matches) == 1 else None


# ------------------------------------------------------------------------------ selection
def test_split_sizes_follow_split_column(h5file):
    path, _, cols = h5file
    dm = CutoutDataModule(path)
    dm.setup(None)
    clean = cols["flags"] == 0
    for ds, name in ((dm.train_dataset, "train"), (dm.val_dataset, "valid"),
                     (dm.test_dataset, "test")):
        expected = np.flatnonzero(clean & (cols["split"] == name))
        np.testing.assert_array_equal(ds.indices, expected)
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (23, 7, 7)
    assert dm.classes == ["FRI", "FRII"]


def test_flagged_rows_excluded_unless_included(h5file):
    path = h5file[0]
    dm = CutoutDataModule(path)
    dm.setup(None)
    served = np.concatenate([d.indices for d in (dm.train_dataset, dm.val_dataset,
                                                 dm.test_dataset)])
    assert not set(FLAGGED) & set(served.tolist())
    dm = CutoutDataModule(path, include_flagged=True)
    dm.setup(None)
    served = np.concatenate([d.indices for d in (dm.train_dataset, dm.val_dataset,
                                                 dm.test_dataset)])
    assert sorted(served.tolist()) == list(range(N))


def test_stage_builds_only_needed_datasets(h5file):
    dm = CutoutDataModule(h5file[0])
    dm.setup("test")
    assert dm.test_dataset is not None and dm.train_dataset is None and dm.val_dataset is None
    with pytest.raises(RuntimeError, match="no train dataset"):
        dm.train_dataloader()


def test_empty_split_raises_naming_file_and_splits(h5file):
    path = h5file[0]
    dm = CutoutDataModule(path, val_split="validation")
    with pytest.raises(ValueError, match=r"synthetic\.h5.*'validation'.*\['test', 'train', "
                                         r"'valid'\]"):
        dm.setup("fit")


def test_random_val_fraction_split(h5file):
    path, _, cols = h5file
    non_test = set(np.flatnonzero((cols["flags"] == 0) & (cols["split"] != "test")).tolist())

    def split(seed):
        dm = CutoutDataModule(path, random_val_fraction=0.25, seed=seed)
        dm.setup("fit")
        return set(dm.train_dataset.indices.tolist()), set(dm.val_dataset.indices.tolist())

    train, val = split(0)
    assert not train & val
    assert train | val == non_test  # includes rows of the file's "valid" split
    assert len(val) == round(0.25 * len(non_test))
    assert split(0) == (train, val)
    assert split(1) != (train, val)


# -------------------------------------------------------------------------------- batches
def test_batch_structure_and_values(h5file):
    path, images, cols = h5file
    conds = ["label", "peak_flux", "las_arcsec"]
    dm = CutoutDataModule(path, batch_size=5, conditions=conds, augment=D4_ALL)
    dm.setup("fit")
    x, cond = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 1, H, H) and x.dtype == torch.float32
    assert set(cond) == set(conds)
    assert cond["label"].dtype == torch.long and cond["label"].shape == (5,)
    for name in ("peak_flux", "las_arcsec"):
        assert cond[name].dtype == torch.float32 and cond[name].shape == (5,)
    # Shuffled: recover each row from its peak_flux (row r has r mJy/beam) and check pairing.
    rows = torch.round(cond["peak_flux"] * 1e3).long().numpy()
    np.testing.assert_array_equal(cond["label"].numpy(), cols["label"][rows])
    assert all(d4_index(x[b], torch.from_numpy(images[r])) is not None
               for b, r in enumerate(rows))
    # Validation: file order, no augmentation, last partial batch kept (7 = 5 + 2).
    batches = list(dm.val_dataloader())
    assert [len(b[0]) for b in batches] == [5, 2]
    xv = torch.cat([b[0] for b in batches])
    np.testing.assert_array_equal(xv.numpy(), images[dm.val_dataset.indices])
    lv = torch.cat([b[1]["label"] for b in batches])
    np.testing.assert_array_equal(lv.numpy(), cols["label"][dm.val_dataset.indices])


def _stream_rows(dm, n):
    """Rows (row r has r mJy/beam) of the first n samples of the training stream."""
    loader = iter(dm.train_dataloader())
    rows = []
    while len(rows) < n:
        rows += [int(r) for r in torch.round(next(loader)[1]["peak_flux"] * 1e3)]
    return rows[:n]


def test_train_stream_covers_each_epoch_and_depends_on_seed_and_epoch(h5file):
    dm = CutoutDataModule(h5file[0], batch_size=4, conditions=["peak_flux"], seed=3)
    dm.setup("fit")
    n = len(dm.train_dataset)
    rows = _stream_rows(dm, 2 * n)
    first, second = rows[:n], rows[n:]
    assert sorted(first) == sorted(second) == sorted(dm.train_dataset.indices.tolist())
    assert first != sorted(first) and second != first  # a new order each epoch
    assert _stream_rows(dm, 2 * n) == rows              # no running RNG state
    dm2 = CutoutDataModule(h5file[0], batch_size=4, conditions=["peak_flux"], seed=4)
    dm2.setup("fit")
    assert _stream_rows(dm2, n) != first


def test_stream_continues_after_the_samples_seen(h5file):
    dm = CutoutDataModule(h5file[0], batch_size=4, augment=D4_ALL, seed=5,
                          conditions=["peak_flux"])
    dm.setup("fit")
    stream = SampleStream(dm.train_dataset, seed=5)
    whole = [stream[g] for g in range(30)]
    # a resumed run after 26 samples, and rank 1 of 2 from there
    assert list(zip(range(4), StreamSampler(26))) == [(i, 26 + i) for i in range(4)]
    assert [g for _, g in zip(range(2), StreamSampler(26, rank=1, world_size=2))] == [27, 29]
    again = SampleStream(dm.train_dataset, seed=5)
    for g in (29, 26, 3):  # any order of access gives the same sample
        x, c = again[g]
        assert torch.equal(x, whole[g][0]) and torch.equal(c["peak_flux"], whole[g][1]["peak_flux"])


def test_unknown_condition_raises(h5file):
    path = h5file[0]
    dm = CutoutDataModule(path, conditions=["label", "redshift"])
    with pytest.raises(ValueError, match=r"synthetic\.h5.*'redshift'.*valid conditions.*"
                                         r"peak_flux"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="'split'"):  # a column, but not a numeric one
        CutoutDataset(path, [1, 2], conditions=["split"])


# --------------------------------------------------------------------------- augmentation
def test_d4_augmentation_is_exact(h5file):
    path, images, _ = h5file
    rows = np.arange(N)
    ds = CutoutDataset(path, rows, conditions=[], augment=D4_ALL, seed=0)
    used = set()
    for epoch in range(3):
        for i, r in enumerate(rows):
            aug, _ = ds.get(i, epoch)
            orig = torch.from_numpy(images[r])
            assert aug.shape == (1, H, H) and aug.dtype == torch.float32
            j = d4_index(aug, orig)
            assert j is not None, f"row {r}: not one of the 8 exact D4 transforms"
            torch.testing.assert_close(aug.flatten().sort().values,
                                       orig.flatten().sort().values, rtol=0, atol=0)
            used.add(j)
    assert used == set(range(8))  # all of D4 is reached, identity is not all we do


def test_dihedral_is_the_group_d4():
    img = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    got = [dihedral(img, k, flip_x=f) for f in (False, True) for k in range(4)]
    for j, (g, t) in enumerate(zip(got, d4_transforms(img))):
        assert torch.equal(g, t), j
    assert dihedral(img) is img                                # identity: no copy
    assert torch.equal(dihedral(img, 5), dihedral(img, 1))     # k modulo 4
    assert torch.equal(dihedral(img, flip_y=True), torch.flip(img, (-2,)))
    assert torch.equal(dihedral(img, 2), dihedral(img, flip_x=True, flip_y=True))
    wide = torch.rand(1, 3, 7)
    assert dihedral(wide, 1).shape == (1, 7, 3) and dihedral(wide, 2).shape == (1, 3, 7)


def test_flips_only_and_rot90_only_subgroups(h5file):
    path, images, _ = h5file
    seen = {}
    for name, aug in (("flips", dict(flips=True)), ("rot90", dict(rot90=True))):
        ds = CutoutDataset(path, np.arange(N), conditions=[], augment=aug)
        seen[name] = {d4_index(ds[i][0], torch.from_numpy(images[i])) for i in range(N)}
    # Indices into d4_transforms: k = rotation, +4 = after a horizontal flip.
    assert seen["flips"] == {0, 2, 4, 6}  # id, rot180 (both flips), h flip, v flip
    assert seen["rot90"] == {0, 1, 2, 3}


def test_augmentation_deterministic_per_seed_epoch_row(h5file):
    path = h5file[0]
    rows = np.arange(N)
    a = CutoutDataset(path, rows, conditions=[], augment=D4_ALL, seed=7)
    b = CutoutDataset(path, rows[::-1].copy(), conditions=[], augment=D4_ALL, seed=7)
    # Depends on the row, not on its position in the dataset nor on the call history.
    stack_a = torch.stack([a.get(i, 2)[0] for i in range(N)])
    stack_b = torch.stack([b.get(N - 1 - i, 2)[0] for i in range(N)])
    assert torch.equal(stack_a, stack_b)
    assert torch.equal(a.get(5, 2)[0], stack_a[5])
    assert not torch.equal(torch.stack([a.get(i, 3)[0] for i in range(N)]), stack_a)
    c = CutoutDataset(path, rows, conditions=[], augment=D4_ALL, seed=8)
    assert not torch.equal(torch.stack([c.get(i, 2)[0] for i in range(N)]), stack_a)
    assert torch.equal(a[5][0], a.get(5, 0)[0])  # indexing: epoch 0


def test_continuous_rotation_keeps_shape_and_is_not_exact(h5file):
    path, images, _ = h5file
    aug = dict(flips=False, rot90=False, rotate=True)
    ds = CutoutDataset(path, np.arange(N), conditions=[], augment=aug, seed=1)
    inexact = 0
    for i in range(N):
        x, _ = ds[i]
        assert x.shape == (1, H, H) and x.dtype == torch.float32
        assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1 + 1e-6
        assert torch.equal(x, ds[i][0])  # deterministic
        inexact += d4_index(x, torch.from_numpy(images[i])) is None
    assert inexact == N


def test_no_augmentation_returns_file_images(h5file):
    path, images, _ = h5file
    ds = CutoutDataset(path, [3, 1, 3], conditions=[])
    for i, r in enumerate([3, 1, 3]):
        np.testing.assert_array_equal(ds[i][0].numpy(), images[r])


# --------------------------------------------------------------------- workers and storage
def test_lazy_equals_in_memory_and_pickles_without_handle(h5file):
    path = h5file[0]
    rows = np.array([30, 2, 17, 5, 39])
    conds = ["label", "snr"]
    mem = CutoutDataset(path, rows, conditions=conds, augment=D4_ALL, seed=2, in_memory=True)
    lazy = CutoutDataset(path, rows, conditions=conds, augment=D4_ALL, seed=2, in_memory=False)
    assert lazy.images is None and lazy._file is None
    for i in range(len(rows)):
        (xm, cm), (xl, cl) = mem[i], lazy[i]
        assert torch.equal(xm, xl)
        assert all(torch.equal(cm[k], cl[k]) for k in conds)
    assert lazy._file is not None  # opened on first use ...
    clone = pickle.loads(pickle.dumps(lazy))  # ... and not pickled
    assert clone._file is None
    assert torch.equal(clone[1][0], mem[1][0])


def test_two_workers_match_main_process(h5file):
    path = h5file[0]
    kw = dict(batch_size=4, conditions=["label", "peak_flux"], augment=D4_ALL, seed=5,
              in_memory=False)
    batches = {}
    for workers in (0, 2):
        dm = CutoutDataModule(path, num_workers=workers, **kw)
        dm.setup("fit")
        val, train = dm.val_dataloader(), dm.train_dataloader()
        assert train.persistent_workers is False
        assert (train.worker_init_fn is not None) == (workers > 0)
        batches[workers] = [*val, *(b for _, b in zip(range(8), train))]
    assert len(batches[0]) == len(batches[2])
    for (x0, c0), (x2, c2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2)
        assert all(torch.equal(c0[k], c2[k]) for k in c0)


# ---------------------------------------------------------------------------- checkpoints
def test_state_dict_round_trip_and_data_mismatch(tmp_path):
    path = tmp_path / "d.h5"
    make_file(path, seed=0)
    dm = CutoutDataModule(path, seed=3, random_val_fraction=0.3)
    dm.setup("fit")
    state = dm.state_dict()
    assert state["seed"] == 3 and len(state["data_sha256"]) == 64
    other = CutoutDataModule(path, seed=99, random_val_fraction=0.3)
    other.setup("fit")
    other.load_state_dict(state)
    assert other.seed == 3
    # The split is rebuilt with the restored seed.
    np.testing.assert_array_equal(other.val_dataset.indices, dm.val_dataset.indices)
    assert other.train_dataset.seed == 3
    make_file(path, seed=1)  # same path, different content
    fresh = CutoutDataModule(path)
    with pytest.raises(ValueError, match="data_sha256.*differs.*different data"):
        fresh.load_state_dict(state)
    # a checkpoint made from a file without the attribute records none: resumed unchecked
    # (the run already warned), so train.resume_force is never needed for it
    fresh.load_state_dict({**state, "data_sha256": None, "seed": 5})
    assert fresh.seed == 5


def test_from_config(h5file):
    path = h5file[0]
    cfg = OmegaConf.structured(DataConfig(name="synthetic", source="first", out=str(path)))
    cfg.loader.batch_size = 6
    cfg.loader.augment.rotate = True
    cfg.loader.random_val_fraction = 0.2
    dm = CutoutDataModule.from_config(cfg, seed=4)
    assert (dm.path, dm.batch_size, dm.seed) == (path, 6, 4)
    assert dm.conditions == ("label", "peak_flux", "las_arcsec")
    assert (dm.augment.flips, dm.augment.rot90, dm.augment.rotate) == (True, True, True)
    assert dm.random_val_fraction == 0.2
    dm.setup("fit")
    x, cond = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 1, H, H) and set(cond) == {"label", "peak_flux", "las_arcsec"}


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(batch_size=2.5), "batch_size must be an integer >= 1"),
    (dict(num_workers=-1), "num_workers must be an integer >= 0"),
    (dict(random_val_fraction=0.0), "random_val_fraction must be None or strictly between"),
    (dict(random_val_fraction=1.0), "random_val_fraction must be None or strictly between"),
    (dict(random_val_fraction=-0.2), "random_val_fraction must be None or strictly between"),
    (dict(train_split="valid"), "train_split and val_split are both 'valid'"),
])
def test_bad_arguments(kwargs, match, h5file):
    with pytest.raises(ValueError, match=match):
        CutoutDataModule(h5file[0], **kwargs)


def test_bad_indices_raise(h5file):
    with pytest.raises(ValueError, match=r"row indices must lie in \[0, 40\)"):
        CutoutDataset(h5file[0], [0, 40])
