"""``python train.py``: errors in one line without leftover run folders, and a quiet console."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from radiodiff.config import load_config

REPO = Path(__file__).resolve().parents[2]
PREFIX = "radiodiff train: error: "


def _run(args, timeout=300, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR",
                                                                 "RADIODIFF_DEBUG")}
    base.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", WANDB_MODE="offline", **env)
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=base,
                          capture_output=True, text=True, timeout=timeout)


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


def _paths(tmp_path):
    return [f"paths.output_dir={tmp_path}/out", f"paths.data_dir={tmp_path}/data",
            f"paths.ckpt_root={tmp_path}/ckpt"]


def _leftovers(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.name != "out")  # Hydra makes paths.output_dir itself


def test_missing_lotss_data_is_one_line_and_leaves_no_run_folder(tmp_path):
    proc = _run(["model=unet_attn", "data=lotss", "logger=csv", *_paths(tmp_path)])
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = _lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith(PREFIX) and "Traceback" not in proc.stderr
    for needed in (f"{tmp_path}/data/lotss/combined-release-v1.1-LM_opt_mass.fits",
                   f"{tmp_path}/data/lotss/mosaics", "LoTSS-DR2",
                   "https://lofar-surveys.org/dr2_release.html", "data/README.md",
                   "data.catalog=", "data.fields_dir="):
        assert needed in line, needed
    assert _leftovers(tmp_path) == []  # no run folder, no checkpoint folder


def test_bad_config_and_resume_path_are_one_line(tmp_path):
    proc = _run(["model=nope", *_paths(tmp_path)])
    assert proc.returncode == 2
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(PREFIX), proc.stderr[-3000:]
    assert "Could not find 'model/nope'" in lines[0] and "unet_tiny" in lines[0]
    missing = tmp_path / "gone" / "last.ckpt"
    proc = _run(["data=tiny", "model=unet_tiny", "logger=csv", f"train.resume={missing}",
                 *_paths(tmp_path)])
    assert proc.returncode == 2
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and str(missing) in lines[0]
    assert _leftovers(tmp_path) == []


def test_debug_shows_the_full_traceback(tmp_path):
    proc = _run(["data=lotss", "logger=csv", *_paths(tmp_path)], RADIODIFF_DEBUG="1")
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "radiodiff.data.prepare.PrepareError" in proc.stderr and PREFIX not in proc.stderr


def test_train_checks_the_data_before_making_folders(tmp_path):
    from radiodiff.data.prepare import PrepareError
    from radiodiff.training.fit import train
    cfg = load_config(["data=lotss", "model=unet_tiny", "logger=csv", *_paths(tmp_path)])
    with pytest.raises(PrepareError, match=r"catalogue .*combined-release.*; fields folder "
                       r".*lotss/mosaics\. Get LoTSS-DR2"):
        train(cfg)
    cfg = load_config(["data=mirabest", "model=unet_tiny", "logger=csv", *_paths(tmp_path),
                       f"paths.shared_data={tmp_path}/shared"])
    with pytest.raises(PrepareError, match=r"mirabest/catalog\.csv.*RADIODIFF_SHARED_DATA"):
        train(cfg)
    assert list(tmp_path.iterdir()) == []


def test_only_unused_run_folders_are_removed(tmp_path):
    from radiodiff.training.fit import drop_unused_run_dir as drop
    root = tmp_path / "out"

    def run_dir(name, *extra):
        d = root / "2026-01-01" / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (d / "train.log").write_text("")
        for e in extra:
            (d / e).mkdir()
        return d

    used, unused = run_dir("used", "csv"), run_dir("unused")
    drop(used, root, "train.log")
    drop(unused, tmp_path / "elsewhere", "train.log")  # not inside paths.output_dir
    assert used.is_dir() and unused.is_dir()
    drop(unused, root, "train.log")
    assert not unused.exists() and used.is_dir()
    (used / "csv").rmdir()
    drop(used, root, "train.log")                      # the last one: emptied parents go
    assert not (root / "2026-01-01").exists() and root.is_dir()


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    from radiodiff.data.prepare import prepare
    out = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    prepare(load_config(["data=tiny"]), out=out)
    return out


@pytest.mark.parametrize("logger", ["csv", pytest.param("wandb", marks=pytest.mark.slow)])
def test_a_short_run_prints_no_library_noise(tmp_path, tiny_h5, logger):
    proc = _run(["data=tiny", "model=unet_tiny", "trainer.precision=32", f"data.out={tiny_h5}",
                 f"logger={logger}", "train.total_kimg=0.016", "train.sample_every_steps=0",
                 "train.val_every_steps=1000", "train.val_batches=1",
                 "trainer.enable_progress_bar=false", *_paths(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained 2 steps (16 images)" in proc.stdout
    printed = proc.stdout + proc.stderr
    for noise in ("litlogger", "LeafSpec", "anonymous setting", "wandb: WARNING"):
        assert noise not in printed, printed[-3000:]
    assert "GPU available" in proc.stderr  # Lightning's own messages still come through
