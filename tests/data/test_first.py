"""`radiodiff prepare data=first`: the Griese et al. 2023 set from the installed wheel."""

import numpy as np
import pytest

from radiodiff.cli import main
from radiodiff.config import load_config
from radiodiff.data.prepared import FLAGS, read_prepared
from radiodiff.data.prepare import PrepareError, prepare
from radiodiff.data.first import first_archive


@pytest.fixture(scope="module")
def first_h5(tmp_path_factory, first_wheel):
    out = tmp_path_factory.mktemp("first") / "first.h5"
    summary = prepare(load_config(["data=first"]), out=out)
    return out, summary


def test_full_set_sizes_classes_and_published_split(first_h5):
    path, summary = first_h5
    ps = read_prepared(path)
    assert ps.images.shape == (2158, 1, 80, 80) and ps.images.dtype == np.float32
    assert ps.images.min() >= 0.0 and ps.images.max() <= 1.0
    assert ps.classes == ["FRI", "FRII", "Compact", "Bent"]
    assert np.bincount(ps.columns["label"]).tolist() == [495, 924, 391, 348]
    splits = {s: int((ps.columns["split"] == s).sum()) for s in ("train", "valid", "test")}
    assert splits == {"train": 1758, "valid": 200, "test": 200}
    assert summary.n_in == summary.n_out == 2158 and summary.splits == splits


def test_the_blank_image_is_flagged_not_dropped(first_h5):
    ps = read_prepared(first_h5[0])
    flagged = np.flatnonzero(ps.columns["flags"])
    assert ps.columns["source_id"][flagged].tolist() == ["data_1910"]
    assert ps.columns["flags"][flagged[0]] == FLAGS["blank"]
    assert first_h5[1].flagged == {"blank": 1}
    clean = ps.images[ps.columns["flags"] == 0]
    assert np.allclose(clean.reshape(len(clean), -1).max(axis=1), 1.0)  # per-image peak


def test_downsampled_not_cropped_and_metadata(first_h5):
    ps = read_prepared(first_h5[0])
    c = ps.columns
    # Central 160 px (288") of the 300 px field, downsampled 2x to 80 px of 3.6".
    assert np.allclose(c["cutout_size_arcsec"], 288.0)
    assert np.allclose(c["pixel_scale_arcsec"], 3.6)
    assert np.allclose(c["beam_arcsec"], 5.4)
    assert np.isnan(c["peak_flux"]).all() and ps.attrs["image_unit"] == "arbitrary"
    assert np.isfinite(c["ra"]).all() and np.isfinite(c["dec"]).all()
    # scale/offset restore the resized 8-bit image: peaks of at most 255.
    assert (c["offset"] == 0).all() and (c["scale"] <= 255).all()
    assert ps.files == [first_archive().name] and len(ps.sha256[0]) == 64  # no local folder
    assert ps.attrs["summary"]["n_out"] == 2158 and "data:" in ps.attrs["config_yaml"]
    assert len(ps.attrs["data_sha256"]) == 64


@pytest.mark.parametrize("override", ["data.negatives=abs", "data.negatives=keep",
                                      "data.scaling=dataset"])
def test_preprocessing_options(tmp_path, override, first_wheel):
    cfg = load_config(["data=first", "data.limit=40", override])
    prepare(cfg, out=tmp_path / "x.h5")
    ps = read_prepared(tmp_path / "x.h5")
    assert ps.images.shape == (40, 1, 80, 80)
    assert ps.images.min() == 0.0 and ps.images.max() == 1.0
    if override == "data.scaling=dataset":
        assert len(set(ps.columns["scale"])) == 1  # one global range
        prepare(load_config(["data=first", "data.limit=40"]), out=tmp_path / "p.h5")
        per_image = read_prepared(tmp_path / "p.h5").columns["scale"]
        assert ps.columns["scale"][0] == pytest.approx(per_image.max())  # the brightest's
        assert (ps.images.reshape(40, -1).max(axis=1) < 1).sum() >= 20  # not one by one


def test_dropping_instead_of_flagging(tmp_path, first_wheel):
    cfg = load_config(["data=first", "data.cuts.action=drop"])
    summary = prepare(cfg, out=tmp_path / "x.h5")
    assert summary.n_out == 2157 and summary.removed == {"blank": 1}
    assert summary.splits["valid"] == 199


def test_whole_field_without_crop(tmp_path, first_wheel):
    prepare(load_config(["data=first", "data.limit=3", "data.crop_arcsec=null"]),
            out=tmp_path / "x.h5")
    assert np.allclose(read_prepared(tmp_path / "x.h5").columns["cutout_size_arcsec"], 540.0)


def test_image_size_option(tmp_path, first_wheel):
    prepare(load_config(["data=first", "data.limit=5", "data.image_size=32"]),
            out=tmp_path / "x.h5")
    assert read_prepared(tmp_path / "x.h5").images.shape == (5, 1, 32, 32)


def test_absurd_options_fail_before_reading(tmp_path):
    for override, msg in (("data.image_size=3", "image_size=3"),
                          ("data.limit=0", "limit=0"),
                          ("data.cuts.edge_max_frac=2", "edge_max_frac=2")):
        with pytest.raises(ValueError, match=msg):
            prepare(load_config(["data=first", override]), out=tmp_path / "x.h5")
    with pytest.raises(ValueError, match="data.classes must be"):
        prepare(load_config(["data=first", "data.classes=[A,B]"]), out=tmp_path / "x.h5")
    assert not any(tmp_path.iterdir())


def test_cli_prepare_and_errors(tmp_path, capsys, first_wheel):
    assert main(["prepare", "data=first", "data.limit=8", "--out", str(tmp_path / "f.h5")]) == 0
    assert "prepared first: 8 in, 8 out" in capsys.readouterr().out
    assert main(["prepare", "data=nonsense"]) == 2
    assert "Could not find 'data/nonsense'" in capsys.readouterr().err
    assert main(["prepare", "data=first", "--cfg"]) == 0
    assert "source: first" in capsys.readouterr().out


def test_missing_wheel_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PrepareError, match="firstgalaxydata.*--no-deps"):
        prepare(load_config(["data=first"]), out=tmp_path / "x.h5")
