"""Run identity: resume only the same experiment; each job of a sweep is its own run."""

import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.fitwarnings import TINY_FIT_WARNINGS
from omegaconf import OmegaConf

from radiodiff.config import ConfigError, load_config
from radiodiff.training.fit import train
from radiodiff.training.identity import (MAX_RUN_NAME, check_resume, identity_changes,
                                         is_identity_key, run_identity, sweep_keys,
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
    # how long (fit sets them from total_kimg) and what only export reads
    for key in ("trainer.max_steps", "trainer.max_epochs", "data.projection_floor",
                "data.projection_halo_px", "data.projection_islands"):
        assert not is_identity_key(key), key
    assert is_identity_key("data.image_size") and is_identity_key("data.cuts")
    halo = load_config(["data=tiny", "model=unet_tiny", "data.projection_halo_px=0"])
    assert run_identity(halo) == run_identity(base)


def test_a_key_added_to_the_schema_since_stands_for_its_default():
    """A checkpoint written before ``train.lr_decay_*`` existed trained at a constant rate:
    resuming it with a cool-down is a change (refused unless forced), without one it is not."""
    base = load_config(["data=tiny", "model=unet_tiny"])
    old = OmegaConf.to_container(base, resolve=True)
    for key in ("lr_decay_kimg", "lr_decay_start_kimg"):
        del old["train"][key]
    assert identity_changes(old, base) == [] and identity_changes(base, old) == []
    cool = load_config(["data=tiny", "model=unet_tiny", "train.lr_decay_start_kimg=1",
                        "train.lr_decay_kimg=5"])
    assert identity_changes(old, cool) == ["train.lr_decay_kimg 0.0→5.0",
                                           "train.lr_decay_start_kimg null→1.0"]
    state = {"run_identity": run_identity(old), "hyper_parameters": {"cfg": old}}
    with pytest.raises(ConfigError, match=re.escape("(train.lr_decay_kimg 0.0→5.0, ")):
        check_resume(cool, state, "run/last.ckpt")
    # a key the schema does not know (added with +) has no default to stand for
    extra = load_config(["data=tiny", "model=unet_tiny", "+model.extra=1"])
    assert identity_changes(base, extra) == []


def test_sweep_jobs_are_named_after_their_identity_overrides():
    cfg = load_config(["data=tiny", "model=unet_tiny", "seed=5", "train.lr=0.002"])
    task = ["model=unet_tiny", "data=tiny", "seed=5", "train.lr=0.002", "logger=csv",
            "paths.output_dir=/tmp/x", "train.total_kimg=1", "+model.extra=a/b"]
    assert sweep_run_name(cfg, task) == "tiny-unet_tiny-s5-model.extra=a_b,train.lr=0.002"
    named = load_config(["data=tiny", "model=unet_tiny", "train.run_name=mine"])
    assert sweep_run_name(named, ["train.run_name=mine", "seed=1"]) == "mine-seed=1"
    assert sweep_run_name(cfg, ["seed=5", "logger=csv"]) == "tiny-unet_tiny-s5"


def test_sweep_jobs_are_named_after_every_key_the_sweep_varies():
    """Issue #26 review: a sweep over a key outside the identity (batch size, length) gave
    every job one name, so job 2 resumed job 1."""
    cfg = load_config(["data=tiny", "model=unet_tiny", "seed=5"])
    swept = sweep_keys(["seed=5", "data.loader.batch_size=16,32", "train.total_kimg=5,10",
                        "logger=csv"])
    assert swept == {"data.loader.batch_size", "train.total_kimg"}
    names = {sweep_run_name(cfg, ["seed=5", f"data.loader.batch_size={b}",
                                  f"train.total_kimg={k}", "logger=csv"], swept)
             for b in (16, 32) for k in (5, 10)}
    assert len(names) == 4, names
    assert "tiny-unet_tiny-s5-data.loader.batch_size=16,train.total_kimg=5" in names
    assert sweep_keys(["seed=range(3)", "model=glob(unet_*)", "train.lr=choice(0.1,0.2)",
                       "train.betas=[0.9,0.99]", "+x=1"]) == {"seed", "model", "train.lr"}
    # a name the default run name holds already, or one of the user's own
    assert sweep_run_name(cfg, ["seed=5", "model=unet_tiny"], {"seed", "model"}) == \
        "tiny-unet_tiny-s5"
    mine = load_config(["data=tiny", "model=unet_tiny", "train.run_name=mine"])
    assert sweep_run_name(mine, ["train.run_name=mine", "model=unet_tiny"], {"model"}) == \
        "mine-model=unet_tiny"
    # too long: cut to MAX_RUN_NAME, the tail a hash of the whole; file-system safe
    cut = [sweep_run_name(cfg, [f"+model.note='{'é/' * 100}{i}'"], {"model.note"})
           for i in range(2)]
    assert [len(n) for n in cut] == [MAX_RUN_NAME] * 2 and cut[0] != cut[1]
    assert all(re.fullmatch(r"[A-Za-z0-9_.=,+\-\[\]]+", n) for n in cut), cut


def test_train_py_reads_the_swept_keys_from_its_command_line(monkeypatch):
    spec = importlib.util.spec_from_file_location("train_script", REPO / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "data.loader.batch_size=16,32",
                                      "logger=csv", "train.lr=0.001"])
    hc = OmegaConf.create({"sweeper": {"params": {"seed": "0,1", "train.lr_rampup_kimg": "0"}},
                           "overrides": {"task": ["data.loader.batch_size=16", "seed=0"]}})
    assert script._swept_keys(hc) == {"data.loader.batch_size", "seed"}


def _state(cfg, data_sha256="a" * 64):
    dataset = {} if data_sha256 is None else {"data_sha256": data_sha256}
    return {"run_identity": run_identity(cfg),
            "hyper_parameters": {"cfg": OmegaConf.to_container(cfg, resolve=True),
                                 "dataset": dataset}}


def test_resume_refuses_a_checkpoint_of_other_data_unless_forced(caplog):
    cfg = load_config(["data=tiny", "model=unet_tiny"])
    check_resume(cfg, _state(cfg), "run/last.ckpt", "a" * 64)  # the same data
    check_resume(cfg, _state(cfg), "run/last.ckpt")              # data not prepared yet
    with pytest.raises(ConfigError) as err:
        check_resume(cfg, _state(cfg), "run/last.ckpt", "b" * 64)
    text = str(err.value)
    assert "\n" not in text and text.startswith("train.resume=auto: run/last.ckpt was "
                                                "trained on other data (")
    assert "b" * 12 in text and "a" * 12 in text and cfg.data.out in text
    assert "train.resume_force=true" in text
    forced = load_config(["data=tiny", "model=unet_tiny", "train.resume_force=true"])
    with caplog.at_level(logging.WARNING, logger="radiodiff.training.identity"):
        check_resume(forced, _state(forced), "run/last.ckpt", "b" * 64)
        check_resume(cfg, _state(cfg, None), "old/last.ckpt", "b" * 64)
    assert "on other data (train.resume_force)" in caplog.text
    assert "old/last.ckpt records no data_sha256" in caplog.text


def test_an_identity_recorded_under_older_rules_is_computed_again(caplog):
    """A checkpoint's recorded identity hashes the keys identity had when it was written
    (before trainer.max_steps or data.projection_* left it): its config decides."""
    cfg = load_config(["data=tiny", "model=unet_tiny"])
    with caplog.at_level(logging.WARNING, logger="radiodiff.training.identity"):
        check_resume(cfg, dict(_state(cfg), run_identity="0" * 64), "run/last.ckpt")
    assert caplog.text == ""


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


def test_resume_on_other_prepared_data_is_refused_unless_forced(tmp_path, tiny_h5):
    from radiodiff.data.prepare import prepare
    first = train(load_config(_args(tmp_path, tiny_h5, "train.total_kimg=0.016")))
    other = tmp_path / "other.h5"  # other rows: another data_sha256
    prepare(load_config(["data=tiny", "data.limit=120"]), out=other)
    with pytest.raises(ConfigError, match=rf"^train.resume=auto: {first['checkpoint']} was "
                       rf"trained on other data \({other} has data_sha256 "):
        train(load_config(_args(tmp_path, other, "train.total_kimg=0.032")))
    # forced: on the other file as it was prepared (data.limit=120: else the run would be
    # refused for training on a file made with other data options)
    forced = train(load_config(_args(tmp_path, other, "train.total_kimg=0.032",
                                     "train.resume_force=true", "data.limit=120")))
    assert forced["resumed_from"] == first["checkpoint"] and forced["steps"] == 4


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


def test_a_sweep_over_its_length_gives_each_job_its_own_run(tmp_path, tiny_h5):
    """Issue #26 review: the jobs of ``-m train.total_kimg=a,b`` (not an identity key) had
    one name, so job 2 resumed job 1's checkpoint."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "seed=5",
         "train.total_kimg=0.016,0.024", *_args(tmp_path, tiny_h5)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" not in proc.stdout + proc.stderr
    for kimg, steps in (("0.016", 2), ("0.024", 3)):
        name = f"tiny-unet_tiny-s5-train.lr_rampup_kimg=0,train.total_kimg={kimg}"
        state = torch.load(tmp_path / "ckpt" / name / "last.ckpt", map_location="cpu",
                           weights_only=True)
        assert state["global_step"] == steps, name
