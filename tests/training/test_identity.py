"""Run identity: resume only the same experiment; each job of a sweep is its own run."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.fitwarnings import TINY_FIT_WARNINGS
from radiodiff.config import ConfigError, load_config
from radiodiff.training.fit import train
from radiodiff.training.identity import (identity_changes, is_identity_key, run_identity,
                                         sweep_run_name)

REPO = Path(__file__).resolve().parents[2]
pytestmark = TINY_FIT_WARNINGS


def _args(tmp_path, tiny_h5, *extra):
    return ["data=tiny", "model=unet_tiny", "logger=csv", "trainer.precision=32",
            f"data.out={tiny_h5}", f"paths.output_dir={tmp_path}/out",
            f"paths.ckpt_root={tmp_path}/ckpt", "train.lr_rampup_kimg=0",
            "train.sample_every_steps=0", "train.val_every_steps=1000", "train.val_batches=1",
            "train.ckpt_every_minutes=0", "trainer.enable_progress_bar=false", *extra]


def test_length_place_and_hardware_are_not_identity():
    base = load_config(["data=tiny", "model=unet_tiny"])
    same = load_config(["data=tiny", "model=unet_tiny", "train.total_kimg=7",
                        "train.max_minutes=3", "paths.output_dir=/elsewhere", "logger=csv",
                        "trainer.precision=bf16-mixed", "data.loader.batch_size=4",
                        "train.ckpt_every_steps=9", "sampler.steps=3"])
    assert run_identity(base) == run_identity(same) and identity_changes(base, same) == []
    other = load_config(["data=tiny", "model=unet_tiny", "train.lr=0.002", "seed=3"])
    assert run_identity(other) != run_identity(base)
    assert identity_changes(base, other) == ["seed 0→3", "train.lr 0.0005→0.002"]
    assert is_identity_key("model") and is_identity_key("trainer.gradient_clip_val")
    assert not is_identity_key("logger") and not is_identity_key("paths.ckpt_root")


def test_sweep_jobs_are_named_after_their_identity_overrides():
    cfg = load_config(["data=tiny", "model=unet_tiny", "seed=5", "train.lr=0.002"])
    task = ["model=unet_tiny", "data=tiny", "seed=5", "train.lr=0.002", "logger=csv",
            "paths.output_dir=/tmp/x", "train.total_kimg=1", "+model.extra=a/b"]
    assert sweep_run_name(cfg, task) == "tiny-unet_tiny-s5-model.extra=a_b,train.lr=0.002"
    named = load_config(["data=tiny", "model=unet_tiny", "train.run_name=mine"])
    assert sweep_run_name(named, ["train.run_name=mine", "seed=1"]) == "mine-seed=1"
    assert sweep_run_name(cfg, ["seed=5", "logger=csv"]) == "tiny-unet_tiny-s5"


def test_resume_refuses_another_run_and_accepts_a_longer_one(tmp_path, tiny_h5, caplog):
    first = train(load_config(_args(tmp_path, tiny_h5, "train.total_kimg=0.016",
                                    "train.lr=0.001")))
    assert first["steps"] == 2
    ckpt = torch.load(first["checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["run_identity"] == run_identity(ckpt["hyper_parameters"]["cfg"])
    with pytest.raises(ConfigError) as err:
        train(load_config(_args(tmp_path, tiny_h5, "train.total_kimg=0.016", "train.lr=0.002")))
    text = str(err.value)
    assert "\n" not in text and "train.lr 0.001→0.002" in text, text
    assert "train.resume_force=true" in text and "train.run_name" in text
    assert text.startswith(f"train.resume=auto: {first['checkpoint']} is another run")
    longer = train(load_config(_args(tmp_path, tiny_h5, "train.total_kimg=0.032",
                                     "train.lr=0.001", "train.max_minutes=5")))
    assert longer["resumed_from"] == first["checkpoint"] and longer["steps"] == 4
    with caplog.at_level(logging.WARNING, logger="radiodiff.training.identity"):
        forced = train(load_config(_args(tmp_path, tiny_h5, "train.total_kimg=0.048",
                                         "train.lr=0.002", "train.resume_force=true")))
    assert forced["steps"] == 6 and "train.lr 0.001→0.002" in caplog.text


def test_a_checkpoint_without_identity_still_resumes(tmp_path, tiny_h5, caplog):
    first = train(load_config(_args(tmp_path / "a", tiny_h5, "train.total_kimg=0.016")))
    state = torch.load(first["checkpoint"], map_location="cpu", weights_only=True)
    del state["run_identity"]  # as written before identities were recorded
    old = tmp_path / "old" / "last.ckpt"
    old.parent.mkdir()
    torch.save(state, old)
    with caplog.at_level(logging.WARNING, logger="radiodiff.training.identity"):
        res = train(load_config(_args(tmp_path / "b", tiny_h5, "train.total_kimg=0.032",
                                      f"train.resume={old}")))
    assert res["resumed_from"] == str(old) and res["steps"] == 4
    assert "records no run identity" in caplog.text


def test_a_two_job_sweep_trains_two_runs(tmp_path, tiny_h5):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "seed=5", "train.lr=0.001,0.002",
         *_args(tmp_path, tiny_h5, "train.total_kimg=0.016")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 2 steps (16 images)") == 2, proc.stdout[-2000:]
    names = [f"tiny-unet_tiny-s5-train.lr={lr},train.lr_rampup_kimg=0"
             for lr in ("0.001", "0.002")]
    states = [torch.load(tmp_path / "ckpt" / n / "last.ckpt", map_location="cpu",
                         weights_only=True) for n in names]
    assert [s["global_step"] for s in states] == [2, 2]
    assert [s["hyper_parameters"]["cfg"]["train"]["lr"] for s in states] == [0.001, 0.002]
    a, b = (s["state_dict"] for s in states)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("net."))
