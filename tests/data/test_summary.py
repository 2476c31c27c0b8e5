"""Tests of radiodiff.data.summary on small synthetic prepared files with known answers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from radiodiff.data import summary as rinspect
from radiodiff.data.prepared import FLAGS, FLOAT_COLUMNS, data_sha256, write_prepared

CLASSES = ["FRI", "FRII", "Compact", "Bent"]
# (class index, split, flags, n rows). Bent has only flagged rows: no clean image.
LAYOUT = [
    (0, "train", 0, 5), (0, "valid", 0, 2), (0, "test", 0, 1),
    (1, "train", 0, 3), (1, "valid", 0, 1), (1, "test", 0, 2),
    (2, "train", 0, 4), (2, "test", 0, 3),
    (0, "train", FLAGS["nan"], 1),
    (1, "valid", FLAGS["blank"] | FLAGS["low_snr"], 1),
    (2, "test", FLAGS["edge_emission"], 2),
    (3, "train", FLAGS["low_snr"], 2),
]
EXPECTED_COUNTS = {
    "FRI": {"train": 5, "valid": 2, "test": 1},
    "FRII": {"train": 3, "valid": 1, "test": 2},
    "Compact": {"train": 4, "valid": 0, "test": 3},
    "Bent": {"train": 0, "valid": 0, "test": 0},
}
EXPECTED_FLAGGED = {"nan": 1, "blank": 1, "low_snr": 3, "edge_emission": 2}
# Shaped like radiodiff.data.prepare.PrepareSummary.
PREP = {"name": "toy", "out": "data/toy.h5", "n_in": 40, "n_out": 27,
        "removed": {"nan": 1, "low_snr": 3, "duplicate": 5}, "flagged": {"low_snr": 3},
        "splits": {"train": 15, "valid": 5, "test": 7}, "seconds": 12.5,
        "errors": ["field_1.fits: truncated", "field_2.fits: no WCS"]}
CONFIG = "data:\n  name: toy\n  image_size: 8\n"


def _columns(labels, splits, flags):
    n = len(labels)
    cols = {name: np.linspace(1.0, 2.0, n) for name in FLOAT_COLUMNS}
    cols.update(label=np.asarray(labels, dtype=np.int16),
                split=np.asarray(splits, dtype=object),
                source_id=np.asarray([f"J{i:04d}+0000" for i in range(n)], dtype=object),
                flags=np.asarray(flags, dtype=np.uint8),
                beam_arcsec=np.full((n, 2), 5.0))
    return cols


def _images(values, flags, size=8):
    """Top half of image i is values[i], bottom half 0; flagged rows hold 5.0 and NaN."""
    n = len(values)
    img = np.zeros((n, 1, size, size), np.float32)
    img[:, 0, : size // 2, :] = np.asarray(values, np.float32)[:, None, None]
    bad = np.asarray(flags) != 0
    img[bad] = 5.0
    img[bad, 0, 0, 0] = np.nan
    return img


def make_labelled(tmp_path, name="toy.h5", **attrs):
    labels, splits, flags = [], [], []
    for k, split, flag, n in LAYOUT:
        labels += [k] * n
        splits += [split] * n
        flags += [flag] * n
    n = len(labels)
    clean = np.asarray(flags) == 0
    values = 0.2 + 0.8 * np.arange(n) / (n - 1)
    cols = _columns(labels, splits, flags)
    peak = np.arange(n, dtype=np.float64) * 0.01
    peak[[0, 3, 9]] = np.nan  # three clean rows without a flux
    peak[~clean] = 1e3  # flagged rows must not enter the percentiles
    cols["peak_flux"] = peak
    all_attrs = {"name": "toy", "source": "synthetic", "classes": CLASSES,
                 "image_unit": "Jy/beam", "package_version": "0.1.0",
                 "created_utc": "2024-01-01T00:00:00Z", "data_sha256": "d" * 64,
                 "inputs_sha256": "e" * 64, "summary": PREP, "config_yaml": CONFIG}
    all_attrs.update(attrs)
    images = _images(values, flags)
    if all_attrs["data_sha256"] == "d" * 64:  # the real hash: inspect verifies it
        all_attrs["data_sha256"] = data_sha256(images, cols)
    path = write_prepared(tmp_path / name, images, cols, all_attrs,
                          files=[("cat.fits", "a" * 64)])
    return path, values, peak, clean


def make_unlabelled(tmp_path):
    flags = [0, 0, 0, 0, FLAGS["blank"]]
    cols = _columns([-1] * 5, ["train"] * 4 + ["test"], flags)
    cols["peak_flux"] = np.full(5, np.nan)
    return write_prepared(tmp_path / "unl.h5", _images([0.5, 0.6, 0.7, 0.8, 0.9], flags),
                          cols, {"name": "unl", "classes": []})


@pytest.fixture
def toy(tmp_path):
    return make_labelled(tmp_path)


def test_counts_per_class_and_split_exclude_flagged(toy):
    s = rinspect.summarize(toy[0])
    assert s["classes"] == CLASSES
    assert s["splits"] == ["train", "valid", "test"]
    assert s["counts"] == EXPECTED_COUNTS
    assert s["n_rows"] == 27 and s["n_clean"] == 21 and s["n_flagged"] == 6
    assert s["image_shape"] == [8, 8]


def test_flagged_counts_decoded_per_flag(toy):
    assert rinspect.summarize(toy[0])["flagged"] == EXPECTED_FLAGGED


def test_unknown_flag_bits_are_counted(tmp_path):
    flags = [0, 0, 64 | FLAGS["nan"]]
    path = write_prepared(tmp_path / "u.h5", _images([0.5] * 3, flags),
                          _columns([0, 0, 0], ["train"] * 3, flags), {"classes": ["A"]})
    flagged = rinspect.summarize(path)["flagged"]
    assert flagged["unknown"] == 1 and flagged["nan"] == 1 and flagged["blank"] == 0


def test_pixel_stats_known_answer_clean_only(toy):
    path, values, _, clean = toy
    pix = rinspect.summarize(path)["pixels"]
    v = values[clean]
    assert pix["min"] == 0.0
    assert pix["max"] == pytest.approx(v.max(), rel=1e-6)  # flagged rows hold 5.0
    assert pix["mean"] == pytest.approx(v.mean() / 2, rel=1e-6)
    assert pix["median_image_mean"] == pytest.approx(np.median(v / 2), rel=1e-6)
    assert pix["frac_above_0.1"] == pytest.approx(0.5)
    assert pix["n_nonfinite_pixels"] == 0  # the NaN pixels are all in flagged rows


def test_percentiles_skip_nan_and_flagged(toy):
    path, _, peak, clean = toy
    q = rinspect.summarize(path)["quantities"]
    finite = peak[clean & np.isfinite(peak)]
    st = q["peak_flux"]["stats"]
    assert q["peak_flux"]["unit"] == "Jy/beam" and q["total_flux"]["unit"] == "Jy"
    assert st["n"] == 18
    assert st["median"] == pytest.approx(np.median(finite))
    assert [st["p16"], st["p84"]] == pytest.approx(np.percentile(finite, [16, 84]))
    assert st["p84"] < 1.0  # the 1e3 of flagged rows is excluded


def test_summary_metadata_and_json_roundtrip(toy):
    s = rinspect.summarize(toy[0])
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert s["name"] == "toy" and s["source"] == "synthetic"
    assert len(s["data_sha256"]) == 64 and s["inputs_sha256"] == "e" * 64
    assert s["format_version"] == 1 and s["package_version"] == "0.1.0"
    assert s["created_utc"] == "2024-01-01T00:00:00Z"
    assert s["path"] == toy[0].name and s["n_input_files"] == 1  # no folder of this machine
    assert s["prep_summary"] == PREP and s["config_yaml"] == CONFIG


def test_unlabelled_summary_without_prep_summary(tmp_path):
    s = rinspect.summarize(make_unlabelled(tmp_path))
    assert s["classes"] == [] and s["counts"] == {"unlabelled": {"train": 4, "test": 0}}
    assert s["quantities"]["peak_flux"]["stats"] is None  # all NaN
    assert s["quantities"]["snr"]["stats"]["n"] == 4
    assert s["prep_summary"] is None and s["config_yaml"] is None
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    text = rinspect.format_summary(s)
    assert "unlabelled" in text and "n/a (no summary stored in the file)" in text


def test_format_summary_report(toy):
    text = rinspect.format_summary(rinspect.summarize(toy[0]))
    for word in CLASSES + list(EXPECTED_FLAGGED) + ["Jy/beam", "arcsec", "seconds"]:
        assert word in text
    table = text.split("Clean images per class and split")[1].split("\n\n")[0]
    rows = {ln.split()[0]: ln.split()[1:] for ln in table.strip().splitlines()}
    assert rows["class"] == ["train", "valid", "test", "total"]
    assert rows["FRI"] == ["5", "2", "1", "8"] and rows["Bent"] == ["0", "0", "0", "0"]
    assert rows["total"] == ["12", "3", "6", "21"]
    removed = text.split("removed per reason")[1].split("timing")[0]
    assert "duplicate" in removed and "5" in removed
    assert "12.5 s" in text.split("timing")[1]
    assert "    field_2.fits: no WCS\n" in text  # one error message per line
    assert "image_size: 8" in text  # the config is shown


def test_one_png_per_class_loadable(toy, tmp_path):
    out = tmp_path / "grids"
    paths = rinspect.plot_class_grids(toy[0], out, n_per_class=4, ncols=3)
    assert [p.name for p in paths] == ["grid_FRI.png", "grid_FRII.png", "grid_Compact.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    for p in paths:
        img = imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.05  # panels, not a blank canvas


def test_empty_class_gets_no_png(toy, tmp_path):
    paths = rinspect.plot_class_grids(toy[0], tmp_path / "g")
    assert "grid_Bent.png" not in {p.name for p in paths}
    assert not (tmp_path / "g" / "grid_Bent.png").exists()
    assert len(paths) == 3


def test_unlabelled_set_gives_grid_all(tmp_path):
    paths = rinspect.plot_class_grids(make_unlabelled(tmp_path), tmp_path / "g")
    assert [p.name for p in paths] == ["grid_all.png"]
    assert imread(paths[0]).shape[0] > 50


def test_selection_seeded_clean_and_capped(toy):
    path = toy[0]
    a = rinspect.select_examples(path, n_per_class=4, seed=3)
    b = rinspect.select_examples(path, n_per_class=4, seed=3)
    c = rinspect.select_examples(path, n_per_class=4, seed=4)
    assert list(a) == CLASSES
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    with h5py.File(path, "r") as f:
        labels, flags = f["label"][()], f["flags"][()]
    for k, cls in enumerate(CLASSES):
        assert len(a[cls]) == min(4, sum(EXPECTED_COUNTS[cls].values()))
        assert np.all(labels[a[cls]] == k) and np.all(flags[a[cls]] == 0)
    big = rinspect.select_examples(path, n_per_class=100)
    assert len(big["FRI"]) == 8 and len(np.unique(big["FRI"])) == 8


def test_grids_reproducible(toy, tmp_path):
    p1 = rinspect.plot_class_grids(toy[0], tmp_path / "a", n_per_class=3, seed=1)
    p2 = rinspect.plot_class_grids(toy[0], tmp_path / "b", n_per_class=3, seed=1)
    p3 = rinspect.plot_class_grids(toy[0], tmp_path / "c", n_per_class=3, seed=2)
    assert [x.read_bytes() for x in p1] == [x.read_bytes() for x in p2]
    assert [x.read_bytes() for x in p1] != [x.read_bytes() for x in p3]


def test_inspect_prepared_writes_everything(toy, tmp_path):
    out = tmp_path / "inspect"
    written = rinspect.inspect_prepared(toy[0], out, n_per_class=2)
    assert set(written) == {"summary.json", "summary.txt", "grid_FRI.png", "grid_FRII.png",
                            "grid_Compact.png"}
    assert all(p.is_file() and p.parent == out for p in written.values())
    assert json.loads(written["summary.json"].read_text()) == rinspect.summarize(toy[0])
    assert "Compact" in written["summary.txt"].read_text()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_failed_png_write_leaves_old_file_and_no_tmp(toy, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "g"
    out.mkdir()
    (out / "grid_FRI.png").write_bytes(b"old")

    def broken(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        rinspect.plot_class_grids(toy[0], out)
    assert (out / "grid_FRI.png").read_bytes() == b"old"
    assert [p.name for p in out.iterdir()] == ["grid_FRI.png"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5.*not found"):
        rinspect.summarize(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        rinspect.inspect_prepared(tmp_path / "nope.h5", tmp_path / "out")


def test_not_a_prepared_file(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.h5: not a readable HDF5"):
        rinspect.summarize(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="other.h5: not a radiodiff prepared file"):
        rinspect.plot_class_grids(other, tmp_path / "g")


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_n_per_class(toy, tmp_path, n):
    with pytest.raises(ValueError, match="n_per_class must be an integer >= 1"):
        rinspect.plot_class_grids(toy[0], tmp_path / "g", n_per_class=n)
    with pytest.raises(ValueError, match="n_per_class must be an integer >= 1"):
        rinspect.inspect_prepared(toy[0], tmp_path / "g", n_per_class=n)
    assert not (tmp_path / "g").exists()


def test_bad_ncols(toy, tmp_path):
    with pytest.raises(ValueError, match="ncols must be an integer >= 1"):
        rinspect.plot_class_grids(toy[0], tmp_path / "g", ncols=0)
