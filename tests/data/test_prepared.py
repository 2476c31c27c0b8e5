"""The prepared-file format: round trip, validation, and atomic writes."""

import numpy as np
import pytest

import radiodiff.data.prepared as h5io
from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, read_prepared, write_prepared


def _columns(n):
    cols = {c: np.arange(n, dtype=np.float64) for c in FLOAT_COLUMNS}
    cols.update(label=np.arange(n, dtype=np.int16) % 2,
                split=np.array(["train", "valid", "test", "train"][:n] * (n // 4 + 1),
                               dtype=object)[:n],
                source_id=np.array([f"src{i}" for i in range(n)], dtype=object),
                flags=np.zeros(n, np.uint8), beam_arcsec=np.full((n, 2), 6.0))
    return cols


def test_round_trip(tmp_path):
    images = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    cols = _columns(6)
    path = write_prepared(tmp_path / "x.h5", images, cols,
                          {"name": "x", "classes": ["A", "B"], "summary": {"n_in": 6}},
                          [("cat.csv", "ab12")])
    got = read_prepared(path)
    np.testing.assert_array_equal(got.images, images)
    for name, col in cols.items():
        np.testing.assert_array_equal(got.columns[name], col)
    assert got.classes == ["A", "B"] and got.attrs["summary"] == {"n_in": 6}
    assert got.files == ["cat.csv"] and got.sha256 == ["ab12"]
    assert data_sha256(got.images, got.columns) == data_sha256(images, cols)


def test_shape_and_column_validation(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        write_prepared(tmp_path / "x.h5", np.zeros((3, 8, 8)), _columns(3), {})
    cols = _columns(3)
    del cols["las_arcsec"]
    with pytest.raises(ValueError, match="las_arcsec"):
        write_prepared(tmp_path / "x.h5", np.zeros((3, 1, 8, 8)), cols, {})
    cols = _columns(3)
    cols["ra"] = cols["ra"][:2]
    with pytest.raises(ValueError, match="'ra' has 2 rows"):
        write_prepared(tmp_path / "x.h5", np.zeros((3, 1, 8, 8)), cols, {})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "set.h5"
    old = np.ones((4, 1, 8, 8), np.float32)
    write_prepared(path, old, _columns(4), {"name": "old"})
    before = path.read_bytes()

    real = h5io.h5py.Group.create_dataset
    calls = {"n": 0}

    def failing(self, name, *a, **kw):  # die after the images were written
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("interrupted mid-write")
        return real(self, name, *a, **kw)

    monkeypatch.setattr(h5io.h5py.Group, "create_dataset", failing)
    with pytest.raises(KeyboardInterrupt):
        write_prepared(path, np.zeros((4, 1, 8, 8), np.float32), _columns(4), {"name": "new"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.h5"]
    assert read_prepared(path).attrs["name"] == "old"


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5.*radiodiff prepare"):
        read_prepared(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="junk.h5: not a readable HDF5"):
        read_prepared(junk)
    other = tmp_path / "other.h5"
    with h5io.h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="other.h5: not a radiodiff prepared file"):
        read_prepared(other)


def test_preparation_changes_compare_only_what_prepare_writes():
    """The options that decide the file's content are compared (numbers by value); where it
    goes, how a run loads it, the output projection, an option one side lacks and a recorded
    <local path> are not."""
    from omegaconf import OmegaConf
    from radiodiff.config import load_config
    from radiodiff.data.prepare import preparation_changes
    from radiodiff.io.provenance import release_config_yaml
    cfg = load_config(["data=tiny", "data.out=/somewhere/tiny.h5"])
    stored = release_config_yaml(cfg)
    assert "/somewhere" not in stored and preparation_changes(stored, cfg.data) == []
    assert preparation_changes(None, cfg.data) == []  # a file without its config: unchecked
    same = load_config(["data=tiny", "data.out=other.h5", "data.loader.batch_size=2",
                        "data.projection_floor=0.01", "data.crop_arcsec=288",
                        "data.on_error=stop"])
    assert preparation_changes(stored, same.data) == []
    changed = load_config(["data=tiny", "data.negatives=abs", "data.cuts.snr_min=5",
                           "data.split.fractions=[0.7,0.2,0.1]"])
    assert preparation_changes(stored, changed.data) == [
        "data.negatives=clip (now abs)", "data.cuts.snr_min=None (now 5.0)",
        "data.split.fractions=[0.8, 0.1, 0.1] (now [0.7, 0.2, 0.1])"]
    older = OmegaConf.to_container(OmegaConf.create(stored))
    del older["data"]["cuts"]  # an option the file's version did not have yet
    assert preparation_changes(OmegaConf.to_yaml(older), changed.data) == [
        "data.negatives=clip (now abs)",
        "data.split.fractions=[0.8, 0.1, 0.1] (now [0.7, 0.2, 0.1])"]
