"""`radiodiff demo`, the shipped default model and how model names resolve."""

import dataclasses
import json

import h5py
import numpy as np
import pytest
from astropy.io import fits

from helpers import synth
from helpers.releases import tiny_release
from radiodiff.cli import main
from radiodiff.evaluation.demo import DEMO_SETTINGS, run_demo
from radiodiff.io.release_files import DEFAULT_MODEL, models_dir, resolve_model
from radiodiff.pipeline.release import load_release
from radiodiff.pipeline.generate import generate

FAST = dataclasses.replace(DEMO_SETTINGS, classifier_epochs=2, rvf_folds=2, rvf_epochs=2,
                           n_repeats=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("demo") / "blobs.h5")


_release = tiny_release


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _release(tmp_path_factory.mktemp("rel") / "tiny", ["blob", "double"])


def test_demo_writes_fits_grid_report_and_summary(prepared, tiny, tmp_path):
    settings = dataclasses.replace(FAST, cache_dir=str(tmp_path / "cache"))
    res = run_demo(prepared, tmp_path / "demo", model=tiny, n_per_class=3, steps=2,
                   seed=5, settings=settings)
    out = tmp_path / "demo"
    seeds = {}
    for cls in ("blob", "double"):
        files = sorted((out / "samples" / cls).glob("sample_*.fits"))
        assert len(files) == 3
        with fits.open(files[0]) as hdul:
            assert hdul[0].data.shape == (16, 16) and np.isfinite(hdul[0].data).all()
            assert hdul[0].header["CLASS"] == cls
        with h5py.File(out / "samples" / cls / "samples.h5") as f:
            seeds[cls] = set(f["seeds"][()].tolist())
    # every image its own seed: class c uses seed + c * n_per_class + k
    assert seeds == {"blob": {5, 6, 7}, "double": {8, 9, 10}}
    assert (out / "real_vs_generated.png").stat().st_size > 5000
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["sets"]["fake"]["n"] == 6 and metrics["sets"]["real"]["n"] == 40
    assert "sourcefinder" not in metrics  # the demo skips PyBDSF
    summary = (out / "summary.md").read_text()
    assert summary == res["summary"]
    rvf = res["metrics"].real_vs_fake["mean_accuracy"]
    assert f"real-vs-fake accuracy: {rvf:.3f}" in summary
    assert "class fidelity" in summary and "Wasserstein-1 / noise floor" in summary


def test_demo_cli(prepared, tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `radiodiff demo` caches its classifier in ./outputs/
    assert main(["demo", "--reference", str(prepared), "--model", str(tiny), "--out",
                 str(tmp_path / "d"), "--n-per-class", "2", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "# radiodiff demo: tiny" in printed and "real_vs_generated.png" in printed
    assert (tmp_path / "d" / "summary.md").is_file()
    assert list((tmp_path / "outputs" / "eval_cache").glob("classifier-*"))  # not the repo's


def test_demo_bad_input(prepared, tiny, tmp_path, capsys):
    other = _release(tmp_path / "other", ["FRI", "FRII"])
    with pytest.raises(ValueError, match=r"model classes \['FRI', 'FRII'\] differ"):
        run_demo(prepared, tmp_path / "x", model=other, n_per_class=2, steps=2, settings=FAST)
    big = _release(tmp_path / "big", ["blob", "double"], size=8)
    with pytest.raises(ValueError, match="model images are 8 px"):
        run_demo(prepared, tmp_path / "x", model=big, n_per_class=2, steps=2, settings=FAST)
    with pytest.raises(ValueError, match="n_per_class must be >= 2"):
        run_demo(prepared, tmp_path / "x", model=tiny, n_per_class=1, settings=FAST)
    assert not (tmp_path / "x").exists()  # nothing written before the checks pass
    assert main(["demo", "--reference", str(tmp_path / "missing.h5"), "--model",
                 str(tiny)]) == 2
    assert "missing.h5" in capsys.readouterr().err


def test_resolve_model(tiny, tmp_path, monkeypatch):
    assert resolve_model(tiny) == tiny                      # an existing path, as it is
    monkeypatch.setenv("RADIODIFF_MODELS", str(tiny.parent))
    assert models_dir() == tiny.parent
    assert resolve_model("tiny") == tiny                    # a shipped name
    with pytest.raises(FileNotFoundError, match=r"nope: no such .*\(shipped in .*: tiny\)"):
        resolve_model("nope")
    with pytest.raises(FileNotFoundError, match="first: no such"):
        resolve_model(None)                                 # the default is not in there
    monkeypatch.setenv("RADIODIFF_MODELS", str(tmp_path / "empty"))  # not a folder
    assert models_dir() != tmp_path / "empty"


# ------------------------------------------------------------------ the shipped model

def test_shipped_default_model_loads_and_samples():
    path = resolve_model(None)
    assert path.name == DEFAULT_MODEL and path.parent == models_dir()
    release = load_release(path)
    meta = release.meta
    assert release.classes == ["FRI", "FRII", "Compact", "Bent"]
    assert meta["image_size"] == 80 and meta["pixel_scale_arcsec"] == pytest.approx(3.6)
    assert meta["images_seen"] > 0 and len(meta["data_sha256"]) == 64
    # the model card states the numbers of this very release
    card = (path / "README.md").read_text()
    assert f"{meta['images_seen']:,}" in card and release.weights_sha256[:12] in card
    res = generate(release, 2, label="FRII", steps=2, seed=0)
    assert res.images.shape == (2, 1, 80, 80)
    assert np.isfinite(res.images).all() and res.images.std() > 0


def test_bench_quality_script_writes_rows_with_floors(prepared, tiny, tmp_path):
    # bench/bench_quality.py end to end on the tiny release: the real-vs-real row first,
    # then one row per sampler, each with the floors and the memorisation columns.
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "q.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")  # cache in cwd
    proc = subprocess.run([sys.executable, str(repo / "bench" / "bench_quality.py"),
                           "--model", str(tiny), "--reference", str(prepared), "--n", "8",
                           "--configs", "heun:2", "dpmpp_2m:2:guidance=2:sigma_max=10",
                           "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["sampler"], r["nfe"]) for r in rows] == [("real", 0), ("heun", 3),
                                                        ("dpmpp_2m", 4)]  # guided: 2x
    assert rows[2]["guidance"] == 2.0 and rows[2]["sigma_max"] == 10.0
    assert result["reference_sha256"] and result["settings"]["n"] == 8
    assert result["split"] == "valid"  # by default: settings are chosen on valid
    # the real row scores training images: in-sample features and memorisation are skipped
    assert rows[0]["frechet_floor"] is None and rows[0]["copy_fraction"] is None
    for r in rows:
        assert r["n"] == 8 and 0 <= r["real_vs_fake"] <= 1
        assert r["w1_within_3x"] <= r["n_stats"]
        assert len(r["w1_ratios"]) == r["n_stats"] and r["w1_within_3x"] == sum(
            v <= 3 for v in r["w1_ratios"].values())
        if r["sampler"] != "real":
            assert r["frechet_floor"] > 0
            assert 0 <= r["copy_fraction"] <= 1 and r["nn_median_ratio"] > 0
        # the faint end: stretched-view test and background fractions, real and generated
        assert 0 <= r["real_vs_fake_faint"] <= 1 and 0 <= r["zero_fake"] <= 1
        assert 0 <= r["faint_real"] <= 1 and r["faint_w1_within_3x"] <= r["n_stats"]
        assert isinstance(r["alike"], bool)
    assert "| heun | 2 | 3 |" in proc.stdout and "| dpmpp_2m guidance=2 sigma_max=10 | 2 | 4 |" in \
        proc.stdout
