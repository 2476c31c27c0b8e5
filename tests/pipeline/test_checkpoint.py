"""Checkpoint -> release: the training rows' conditions travel from the prepared file through
the checkpoint into the release (or, for older checkpoints, from ``export --data``)."""

import numpy as np
import pytest
import torch

from helpers.fitwarnings import TINY_FIT_WARNINGS
from radiodiff.cli import main
from radiodiff.config import load_config
from radiodiff.pipeline.release import load_release
from radiodiff.pipeline.checkpoint import export_checkpoint
from radiodiff.training.fit import train

pytestmark = TINY_FIT_WARNINGS
N_TRAIN = 30  # rows 0..29 of the file are the train split, 30..39 valid


def _write_cond_h5(path, peak_scale=1.0):
    """40 Gaussian blobs with class, peak flux and LAS, cut at 1e-3; one row of the train
    split has no LAS (it cannot go into the table), one of the valid split a faint speck."""
    from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, write_prepared
    rng = np.random.default_rng(0)
    n = 40
    y, x = np.mgrid[:16, :16]
    width = rng.uniform(1, 3, n)[:, None, None]
    images = np.exp(-((x - 7.5) ** 2 + (y - 7.5) ** 2)[None] / (2 * width ** 2))
    cols = {c: rng.uniform(0.5, 2.0, n) for c in FLOAT_COLUMNS}
    cols["peak_flux"] = 10 ** rng.uniform(-3, -1, n) * peak_scale
    cols["las_arcsec"] = rng.uniform(10, 100, n)
    cols["las_arcsec"][4] = np.nan
    cols.update(label=(np.arange(n) % 2).astype(np.int16),
                split=np.array(["train"] * N_TRAIN + ["valid"] * (n - N_TRAIN), dtype=object),
                source_id=np.array([f"s{i}" for i in range(n)], dtype=object),
                flags=np.zeros(n, np.uint8), beam_arcsec=np.full((n, 2), 6.0))
    images[images < 1e-3] = 0.0          # cut like the survey images (3 rms)
    images[N_TRAIN + 2, 0, 0] = 1e-5      # a faint speck in one valid image only
    images = images[:, None].astype(np.float32)
    write_prepared(path, images, cols, {"name": "cond", "classes": ["A", "B"],
                                        "data_sha256": data_sha256(images, cols)})
    return path, cols


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step run conditioned on class, peak flux and LAS: (tmp, h5 path, columns, ckpt)."""
    tmp = tmp_path_factory.mktemp("run")
    path, cols = _write_cond_h5(tmp / "cond.h5")
    cfg = load_config([
        "data=tiny", "model=unet_tiny", "logger=csv", "trainer.precision=32",
        f"data.out={path}", f"paths.output_dir={tmp}/out", f"paths.ckpt_root={tmp}/ckpt",
        "train.lr_rampup_kimg=0", "train.sample_every_steps=0", "train.val_batches=1",
        "train.val_every_steps=1000", "train.ckpt_every_minutes=0",
        "data.loader.conditions=[label,peak_flux,las_arcsec]",
        "data.loader.random_val_fraction=null", "train.total_kimg=0.024",
        "data.projection_floor=data", "data.projection_halo_px=1"])
    return tmp, path, cols, train(cfg)["checkpoint"]


def _expected_rows(cols):
    """(label, peak, las) of the train rows with every condition known."""
    keep = [i for i in range(N_TRAIN) if np.isfinite(cols["las_arcsec"][i])]
    return [(int(cols["label"][i]), float(cols["peak_flux"][i]), float(cols["las_arcsec"][i]))
            for i in keep]


def _table_rows(table):
    c = table.columns
    return list(zip(c["label"].tolist(), c["peak_flux"].tolist(), c["las_arcsec"].tolist()))


def _old_checkpoint(ckpt, dest):
    """The checkpoint as made before it carried the table (no train_conditions)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    del state["hyper_parameters"]["train_conditions"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dest)
    return dest


def test_the_checkpoint_carries_the_train_rows_into_the_release(run):
    tmp, _, cols, ckpt = run
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["train_conditions"].startswith("label,peak_flux,las_arcsec\n")
    release = load_release(export_checkpoint(ckpt, tmp / "rel"))
    assert _table_rows(release.train_conditions) == _expected_rows(cols)  # exact values
    assert release.meta["train_conditions"]["rows"] == N_TRAIN - 1
    assert release.train_conditions.names == ("label", "peak_flux", "las_arcsec")


def test_export_data_supplies_the_table_of_an_older_checkpoint(run):
    tmp, path, cols, ckpt = run
    old = _old_checkpoint(ckpt, tmp / "old" / "last.ckpt")
    plain = load_release(export_checkpoint(old, tmp / "plain"))
    assert plain.train_conditions is None and plain.meta["train_conditions"] is None
    assert main(["export", "--ckpt", str(old), "--out", str(tmp / "with"),
                 "--data", str(path)]) == 0
    assert _table_rows(load_release(tmp / "with").train_conditions) == _expected_rows(cols)


def test_export_data_refuses_another_file(run, capsys):
    tmp, _, _, ckpt = run
    other, _ = _write_cond_h5(tmp / "other.h5", peak_scale=2.0)
    old = _old_checkpoint(ckpt, tmp / "old2" / "last.ckpt")
    capsys.readouterr()
    assert main(["export", "--ckpt", str(old), "--out", str(tmp / "no"),
                 "--data", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (tmp / "no").exists()
    assert "other.h5: data_sha256" in err and "differs from the" in err
    assert "not the data this model was trained on" in err
    with pytest.raises(ValueError, match="not the data this model was trained on"):
        export_checkpoint(ckpt, tmp / "no", data=other)  # checked even with a table


def test_the_release_records_the_training_noise_rms(run):
    from radiodiff.pipeline.checkpoint import _noise_rms
    tmp, path, cols, _ = run
    expected = float(np.median(cols["rms"]))        # every row clean, every rms finite
    assert _noise_rms({"image_unit": "Jy/beam"}, path) == pytest.approx(expected, rel=1e-12)
    assert _noise_rms({"image_unit": "Jy/beam", "rms_jy_beam": 2e-4}, path) == 2e-4
    assert _noise_rms({"image_unit": "Jy/beam"}, None) is None
    assert _noise_rms({"image_unit": "arbitrary", "rms_jy_beam": 2e-4}, path) is None


def _train_floor(path):
    import h5py

    from radiodiff.data.projection import largest_kept_floor
    with h5py.File(path, "r") as f:
        return largest_kept_floor(f["images"][:N_TRAIN], halo_px=1)


def test_the_data_floor_is_measured_on_the_train_rows_and_goes_into_the_release(run):
    tmp, path, _, ckpt = run
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    expected = _train_floor(path)
    assert 0 < expected < 1 and hp["dataset"]["projection_floor_max"] == expected
    assert expected > 1e-4 > _train_floor_all(path)  # the valid rows play no part
    proj = load_release(export_checkpoint(ckpt, tmp / "floor")).projection
    assert proj == {"floor": expected, "halo_px": 1, "peak_one": True}
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp / "f2"),
                 "--projection-floor", "0.01"]) == 0
    assert load_release(tmp / "f2").projection["floor"] == 0.01
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp / "f3"),
                 "--projection-floor", "none"]) == 0
    assert load_release(tmp / "f3").projection["floor"] is None


def test_export_with_another_halo_measures_the_data_floor_with_it(run):
    """A run begun before its data config had the right halo (models/mirabest's campaign:
    halo 2 in the run, 0 for the data's pixel-by-pixel clip): --projection-halo 0 with
    --projection-floor data measures the floor anew on --data with halo 0."""
    import h5py

    from radiodiff.data.projection import largest_kept_floor
    tmp, path, _, ckpt = run
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp / "h0"), "--data", str(path),
                 "--projection-floor", "data", "--projection-halo", "0"]) == 0
    with h5py.File(path, "r") as f:
        expected = largest_kept_floor(f["images"][:N_TRAIN], halo_px=0)
    proj = load_release(tmp / "h0").projection
    assert proj == {"floor": expected, "halo_px": 0, "peak_one": True}
    assert expected < _train_floor(path)  # halo 1 keeps more faint pixels alive
    with pytest.raises(ValueError, match="projection halo"):
        export_checkpoint(ckpt, tmp / "h-1", projection_halo=-1)


def _train_floor_all(path):
    import h5py

    from radiodiff.data.projection import largest_kept_floor
    with h5py.File(path, "r") as f:
        return largest_kept_floor(f["images"][:], halo_px=1)


def test_an_older_checkpoint_gets_the_data_floor_from_export_data(run, capsys):
    tmp, path, _, ckpt = run
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    del state["hyper_parameters"]["dataset"]["projection_floor_max"]
    old = tmp / "nofloor" / "last.ckpt"
    old.parent.mkdir()
    torch.save(state, old)
    capsys.readouterr()
    assert main(["export", "--ckpt", str(old), "--out", str(tmp / "n1")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass the prepared file it trained on" in err
    assert not (tmp / "n1").exists()
    assert main(["export", "--ckpt", str(old), "--out", str(tmp / "n2"),
                 "--data", str(path)]) == 0
    assert load_release(tmp / "n2").projection["floor"] == _train_floor(path)
    for bad in ("abc", "2", "0"):
        assert main(["export", "--ckpt", str(old), "--out", str(tmp / "n3"),
                     "--projection-floor", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "data.projection_floor" not in err
        assert f"--projection-floor={bad!r}" in err or f"--projection-floor={float(bad)!r}" in err
        assert not (tmp / "n3").exists()


def test_export_takes_the_noise_islands_from_a_fit_file(run, capsys):
    import json
    tmp, _, _, ckpt = run
    fields = dict(k_mean=3.0, k_std=0.15, ln_r_mean=-4.75, ln_r_std=1.6, r_max=0.2,
                  beam_fwhm_px=3.0, factor=2, levels=255)
    assert load_release(export_checkpoint(ckpt, tmp / "i0")).projection.get("islands") is None
    (tmp / "fit.json").write_text(json.dumps({"real": {}, "best": fields}))
    (tmp / "plain.json").write_text(json.dumps(fields))
    for name in ("fit.json", "plain.json"):
        out = tmp / f"i_{name}"
        assert main(["export", "--ckpt", str(ckpt), "--out", str(out),
                     "--projection-islands", str(tmp / name)]) == 0
        assert load_release(out).projection["islands"] == fields
    (tmp / "bad.json").write_text(json.dumps(dict(fields, k_mean=-1)))
    capsys.readouterr()
    for bad in ("bad.json", "missing.json"):
        assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp / "i_bad"),
                     "--projection-islands", str(tmp / bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and bad in err and not (tmp / "i_bad").exists()
