"""``python train.py``: errors in one line without leftover run folders, and a quiet console."""

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.fitwarnings import TINY_FIT_WARNINGS
from helpers.launch import held_lock, run_external_ranks
from radiodiff.config import load_config

REPO = Path(__file__).resolve().parents[2]
PREFIX = "radiodiff train: error: "
pytestmark = TINY_FIT_WARNINGS


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


def _fit_args(tmp_path, tiny_h5, *extra):
    return ["data=tiny", "model=unet_tiny", "logger=csv", "trainer.precision=32",
            f"data.out={tiny_h5}", *_paths(tmp_path), "train.sample_every_steps=0",
            "train.val_every_steps=1000", "train.val_batches=1", "train.ckpt_every_minutes=0",
            "trainer.enable_progress_bar=false", *extra]


def test_ctrl_c_while_training_returns_with_the_last_checkpoint_kept(tmp_path, tiny_h5,
                                                                     monkeypatch):
    """Lightning catches KeyboardInterrupt inside fit and calls sys.exit(1): train() turns
    that back into a return saying it was interrupted, SIGINT handled again."""
    from radiodiff.training.fit import train
    from radiodiff.training.module import DiffusionModule
    step = DiffusionModule.training_step

    def training_step(self, batch, batch_idx):
        if self.global_step == 1:  # Ctrl-C after the checkpoint of step 1
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    monkeypatch.setattr(DiffusionModule, "training_step", training_step)
    handler = signal.getsignal(signal.SIGINT)
    res = train(load_config(_fit_args(tmp_path, tiny_h5, "train.total_kimg=0.032",
                                      "train.ckpt_every_steps=1")))
    assert res["interrupted"] and res["steps"] == 1
    state = torch.load(res["checkpoint"], map_location="cpu", weights_only=True)
    assert state["global_step"] == 1
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning left it ignored
    assert not list((tmp_path / "ckpt").glob(".rdlock-*"))  # the run's lock is given back


def test_ctrl_c_ends_train_py_in_one_line_naming_the_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt" / "run" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    script = ("import runpy, sys\n"
              "import radiodiff.training.fit as fit\n"
              "ckpt = sys.argv.pop(1)\n"
              "fit.train = lambda cfg, run_dir=None: {'interrupted': True, 'checkpoint': ckpt,"
              " 'steps': 1, 'images_seen': 8}\n"
              f"runpy.run_path({str(REPO / 'train.py')!r}, run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR",
                                                             "RADIODIFF_DEBUG")}
    proc = subprocess.run([sys.executable, "-c", script, str(ckpt), "data=tiny",
                           "model=unet_tiny", "logger=csv", *_paths(tmp_path)], cwd=REPO,
                          env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert _lines(proc.stderr) == [f"radiodiff train: interrupted; the last checkpoint ({ckpt}) "
                                   "is kept: rerun the same command to resume"]
    assert "trained" not in proc.stdout
    spec = importlib.util.spec_from_file_location("train_script", REPO / "train.py")
    train_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_py)
    assert train_py.Interrupted(str(tmp_path / "none.ckpt")).line().startswith(
        "interrupted before the first checkpoint was written; nothing is kept")


def test_a_second_run_of_the_same_name_is_refused_while_the_first_trains(tmp_path, tiny_h5):
    from radiodiff.io.artifacts import OutputError
    from radiodiff.training.fit import train
    cfg = load_config(_fit_args(tmp_path, tiny_h5, "train.total_kimg=0.016"))
    ckpt_dir = Path(cfg.train.ckpt_dir)
    with held_lock(ckpt_dir) as holder:  # a run training into ckpt_dir, as train() locks it
        with pytest.raises(OutputError, match=rf"^train.run_name=tiny-unet_tiny-s0: "
                           rf"{ckpt_dir}: being written by another radiodiff run "
                           rf"\(pid {holder.pid}\b"):
            train(cfg)
        assert not (ckpt_dir / "last.ckpt").exists()
    res = train(cfg)  # its holder gone, the lock is taken over, then given back
    assert res["steps"] == 2 and not list(ckpt_dir.parent.glob(".rdlock-*"))


@pytest.mark.slow
def test_a_refused_ddp_run_is_one_line_before_any_rank_starts(tmp_path, tiny_h5):
    """Where Lightning starts the ranks itself, rank 0 refuses before starting them: one error
    line (after Lightning's device lines), exit status 2, no run folder."""
    ckpt_dir = tmp_path / "ckpt" / "tiny-unet_tiny-s0"
    with held_lock(ckpt_dir) as holder:
        proc = _run(_fit_args(tmp_path, tiny_h5, "train.total_kimg=0.016", "trainer=ddp",
                              "trainer.accelerator=cpu", "trainer.devices=2"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in _lines(proc.stderr) if line.startswith(PREFIX)]
    assert len(errors) == 1 and errors[0] == _lines(proc.stderr)[-1], proc.stderr[-3000:]
    assert errors[0].startswith(
        f"{PREFIX}train.run_name=tiny-unet_tiny-s0: {ckpt_dir}: being written by another "
        f"radiodiff run (pid {holder.pid}); wait for it"), proc.stderr[-3000:]
    assert "Initializing distributed" not in proc.stderr  # no rank was started
    assert [p for p in _leftovers(tmp_path) if not p.startswith("ckpt")] == []


@pytest.mark.slow
def test_a_refused_run_stops_every_externally_launched_rank(tmp_path, tiny_h5):
    """Under torchrun / srun each rank is its own process: rank 0's refusal must reach rank 1,
    which would otherwise wait in the process group's rendezvous for a rank 0 that has gone."""
    ckpt_dir = tmp_path / "ckpt" / "tiny-unet_tiny-s0"
    args = _fit_args(tmp_path, tiny_h5, "train.total_kimg=0.016", "trainer=ddp",
                     "trainer.accelerator=cpu", "trainer.devices=2")
    with held_lock(ckpt_dir) as holder:
        ranks = run_external_ranks([sys.executable, "train.py", *args], cwd=REPO)
    assert "Initializing distributed" in ranks[0][1]  # refused once the process group exists
    for rc, err in ranks:
        assert rc == 2, err[-3000:]
        assert _lines(err)[-1].startswith(
            f"{PREFIX}train.run_name=tiny-unet_tiny-s0: {ckpt_dir}: being written by "
            f"another radiodiff run (pid {holder.pid}); wait for it"), err[-3000:]
    assert not (ckpt_dir / "last.ckpt").exists()


def test_a_branch_resumes_its_own_checkpoint_once_it_has_one(tmp_path, caplog):
    """``train.resume=<another run>/last.ckpt`` starts a branch; rerunning the command
    continues the branch (its own last.ckpt), not the start again; its own prev.ckpt
    (recovery, a step back) is honoured."""
    from radiodiff.training.fit import resume_path
    parent = tmp_path / "ckpt" / "parent" / "last.ckpt"
    parent.parent.mkdir(parents=True)
    parent.write_bytes(b"x")
    cfg = load_config(["data=tiny", "model=unet_tiny", "train.run_name=branch",
                       f"train.resume={parent}", *_paths(tmp_path)])
    assert resume_path(cfg) == str(parent)
    own = Path(cfg.train.ckpt_dir) / "last.ckpt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"y")
    with caplog.at_level("WARNING"):
        assert resume_path(cfg) == str(own)
    assert f"train.resume={parent}" in caplog.text and str(own) in caplog.text
    parent.unlink()  # the branch's start pruned: the branch still continues
    assert resume_path(cfg) == str(own)
    prev = own.with_name("prev.ckpt")
    prev.write_bytes(b"z")
    cfg.train.resume = str(prev)
    assert resume_path(cfg) == str(prev)
    cfg.train.resume = "never"
    assert resume_path(cfg) is None
