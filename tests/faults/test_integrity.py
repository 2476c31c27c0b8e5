"""Checkpoint integrity: hashes, the kept prev.ckpt, finite weights and loss, and a resume
from a mid-run checkpoint (a kill -9) that is bit-identical to the uninterrupted run."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from helpers import synth
from helpers.fitwarnings import TINY_FIT_WARNINGS
from radiodiff.cli import main
from radiodiff.config import load_config
from radiodiff.io.integrity import MANIFEST, IntegrityError, read_manifest, sha256_file
from radiodiff.pipeline.checkpoint import export_checkpoint, read_checkpoint
from radiodiff.training.fit import train

REPO = Path(__file__).resolve().parents[2]
pytestmark = TINY_FIT_WARNINGS


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("blobs") / "set.h5",
                                n_per=(("train", 40), ("valid", 16), ("test", 16)))


def cfg_for(root, blobs, *extra):
    return load_config([
        "data=tiny", "model=unet_tiny", "logger=csv", "trainer.precision=32",
        f"data.out={blobs}", f"paths.output_dir={root}/out", f"paths.ckpt_root={root}/ckpt",
        "train.lr_rampup_kimg=0", "train.sample_every_steps=0", "train.val_every_steps=1000",
        "train.val_batches=1", "train.ckpt_every_minutes=0", "data.loader.batch_size=4",
        *extra])


class Killed(Exception):
    pass


class Crash(Callback):
    """A kill -9 after ``step``: no end-of-training checkpoint."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step:
            raise Killed  # Lightning's on_exception: no final save


class PoisonWeights(Callback):
    """NaN into the network's weights after ``step`` (a diverged optimiser step)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.net.parameters()).fill_(float("nan"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, blobs):
    """A finished 4-step run with checkpoints every 2 steps: last.ckpt (4), prev.ckpt (2)."""
    root = tmp_path_factory.mktemp("run")
    cfg = cfg_for(root, blobs, "train.total_kimg=0.016", "train.ckpt_every_steps=2")
    summary = train(cfg)
    return cfg, Path(summary["checkpoint"])


def _copy_run(run, tmp_path):
    import shutil
    cfg, last = run
    ckpt_dir = tmp_path / "ckpt"
    shutil.copytree(last.parent, ckpt_dir)
    cfg = cfg.copy()
    cfg.train.ckpt_dir = str(ckpt_dir)
    cfg.paths.output_dir = str(tmp_path / "out")
    cfg.train.total_kimg = 0.032
    return cfg, ckpt_dir / "last.ckpt"


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def _flip(path, offset, n=8):
    data = bytearray(path.read_bytes())
    for k in range(offset, offset + n):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checkpoint_folder_keeps_prev_and_records_hashes(run):
    _, last = run
    prev = last.with_name("prev.ckpt")
    assert read_checkpoint(last)["global_step"] == 4
    assert read_checkpoint(prev)["global_step"] == 2
    manifest = read_manifest(last.parent)
    assert manifest == {"last.ckpt": sha256_file(last), "prev.ckpt": sha256_file(prev)}
    assert not list(last.parent.glob("*.tmp*"))


def _flipped(p):
    _flip(p, p.stat().st_size // 2)


def _truncated(p):
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 3])


def _random(p):
    p.write_bytes(os.urandom(4096))


DAMAGE = [(_flipped, "flipped"), (_truncated, "truncated"), (_random, "random")]


@pytest.mark.slow
@pytest.mark.parametrize("damage, name", DAMAGE)
def test_resume_from_a_damaged_checkpoint_names_it_and_prev(run, tmp_path, damage, name):
    cfg, last = _copy_run(run, tmp_path)
    damage(last)
    before = _bytes(last.parent)
    with pytest.raises(IntegrityError) as info:
        train(cfg)
    text = str(info.value)
    assert text.startswith(f"{last}: does not match the SHA-256")
    assert f"the previous one is intact (step 2): resume from it with " \
           f"train.resume={last.with_name('prev.ckpt')}" in text
    assert _bytes(last.parent) == before  # nothing rotated, nothing rewritten
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.ckpt"))


@pytest.mark.parametrize("damage, name", DAMAGE)
def test_damaged_checkpoint_without_manifest_is_still_refused(run, tmp_path, damage, name):
    cfg, last = _copy_run(run, tmp_path)
    (last.parent / MANIFEST).unlink()
    damage(last)
    if name == "flipped":  # bytes flipped inside a tensor: only the hash (or NaN) tells
        return
    with pytest.raises(IntegrityError, match=f"{last}: not a readable checkpoint .*"
                                             r"previous one is intact \(step 2\)"):
        read_checkpoint(last)


def test_nan_weights_in_a_checkpoint_are_refused(run, tmp_path):
    cfg, last = _copy_run(run, tmp_path)
    state = torch.load(last, map_location="cpu", weights_only=True)
    for key, value in state["state_dict"].items():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(state, last)
    (last.parent / MANIFEST).unlink()
    with pytest.raises(IntegrityError, match=r"tensors hold NaN or inf .*previous one is "
                                             r"intact \(step 2\)"):
        read_checkpoint(last)


@pytest.mark.parametrize("damage, name", DAMAGE)
def test_export_of_a_damaged_checkpoint_is_one_line(run, tmp_path, capsys, damage, name):
    cfg, last = _copy_run(run, tmp_path)
    good = tmp_path / "good"
    export_checkpoint(last, good)
    before = _bytes(good)
    damage(last)
    assert main(["export", "--ckpt", str(last), "--out", str(good), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(last) in err
    assert "export it instead: radiodiff export --ckpt" in err and "prev.ckpt" in err
    assert _bytes(good) == before


@pytest.mark.parametrize("change, message", [
    (lambda s: s["hyper_parameters"].pop("sigma_data"), "mistyped sigma_data"),
    (lambda s: s["hyper_parameters"].update(num_classes="two"), "num_classes"),
    (lambda s: s["hyper_parameters"]["cfg"].pop("model"), "mistyped cfg.model"),
    (lambda s: s["state_dict"].pop(next(k for k in s["state_dict"] if k.startswith("ema."))),
     "do not fit together"),
    (lambda s: s.pop("state_dict"), "not a radiodiff training checkpoint"),
])
def test_export_of_a_malformed_but_loadable_checkpoint(run, tmp_path, capsys, change,
                                                       message):
    _, last = _copy_run(run, tmp_path)
    state = torch.load(last, map_location="cpu", weights_only=True)
    change(state)
    bad = tmp_path / "bad.ckpt"
    torch.save(state, bad)
    assert main(["export", "--ckpt", str(bad), "--out", str(tmp_path / "rel")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(bad) in err and message in err
    assert not (tmp_path / "rel").exists()


@pytest.mark.slow
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(blobs, tmp_path):
    cfg = cfg_for(tmp_path, blobs, "train.total_kimg=0.032", "train.ckpt_every_steps=2")
    with pytest.raises(IntegrityError, match=r"the loss is NaN or inf at step 2"):
        train(cfg, extra_callbacks=[PoisonWeights(2)])
    last = Path(cfg.train.ckpt_dir) / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 2  # saved before the poison


@pytest.mark.slow
def test_resume_after_a_crash_equals_uninterrupted(blobs, tmp_path):
    common = ("train.total_kimg=0.048", "train.ckpt_every_steps=4")
    whole = train(cfg_for(tmp_path / "a", blobs, *common))
    cfg_b = cfg_for(tmp_path / "b", blobs, *common)
    with pytest.raises(Killed):
        train(cfg_b, extra_callbacks=[Crash(10)])  # killed after step 10; last.ckpt at 8
    assert read_checkpoint(Path(cfg_b.train.ckpt_dir) / "last.ckpt")["global_step"] == 8
    second = train(cfg_b)
    a, b = (torch.load(s["checkpoint"], map_location="cpu", weights_only=True)
            for s in (whole, second))
    assert a["global_step"] == b["global_step"] == 12
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key  # EMA included, bit for bit


@pytest.mark.slow
def test_train_script_reports_a_corrupt_checkpoint_in_one_line(run, tmp_path):
    cfg, last = _copy_run(run, tmp_path)
    _flipped(last)
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR",
                                                            "RADIODIFF_DEBUG")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", WANDB_MODE="offline",
               PYTHONPATH=str(REPO / "src"))
    args = ["data=tiny", "model=unet_tiny", "logger=csv", f"data.out={cfg.data.out}",
            f"paths.output_dir={tmp_path}/out2", f"train.ckpt_dir={last.parent}",
            "data.loader.batch_size=4", "train.total_kimg=0.032"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith(f"radiodiff train: error: {last}: does not match")
    assert "prev.ckpt" in lines[0]


@pytest.mark.slow
def test_resume_from_prev_after_a_corrupt_last_keeps_prev(run, tmp_path):
    cfg, last = _copy_run(run, tmp_path)
    prev = last.with_name("prev.ckpt")
    _flipped(last)
    good_prev = prev.read_bytes()
    cfg.train.resume = str(prev)
    summary = train(cfg)  # as the message advises
    assert summary["steps"] == 8 and summary["resumed_from"] == str(prev)
    assert read_checkpoint(last)["global_step"] == 8
    # the corrupt last.ckpt did not become prev.ckpt: prev is a save of this piece
    assert read_checkpoint(prev)["global_step"] == 6
    assert prev.read_bytes() != good_prev
    assert read_manifest(last.parent) == {"last.ckpt": sha256_file(last),
                                          "prev.ckpt": sha256_file(prev)}


def test_a_nan_loss_on_another_rank_stops_this_one_too():
    """Under DDP the verdict is summed over the ranks: a rank whose own loss is finite stops
    as well, instead of waiting in the gradient all-reduce for the rank that stopped."""
    from types import SimpleNamespace

    from radiodiff.training.module import DiffusionModule

    def rank(other_ranks_bad):
        strategy = SimpleNamespace(reduce=lambda t, reduce_op: t + other_ranks_bad)
        trainer = SimpleNamespace(strategy=strategy)
        return SimpleNamespace(_trainer=trainer, trainer=trainer, global_step=5,
                               images_seen=80)

    DiffusionModule._check_loss(rank(0), torch.ones(4))  # all ranks finite: goes on
    with pytest.raises(IntegrityError, match=r"the loss is NaN or inf at step 5"):
        DiffusionModule._check_loss(rank(1), torch.ones(4))
    with pytest.raises(IntegrityError, match=r"the loss is NaN or inf at step 5"):
        DiffusionModule._check_loss(rank(0), torch.tensor([1.0, float("nan")]))


def test_a_damaged_manifest_is_named_not_the_checkpoints(tmp_path):
    """A hand-edited SHA256SUMS line: its own one-line message, not "last.ckpt does not
    match" (which would invite deleting two good checkpoints)."""
    (tmp_path / "last.ckpt").write_bytes(b"not looked at")
    (tmp_path / MANIFEST).write_text("0123  last.ckpt\n")
    with pytest.raises(IntegrityError, match=re.escape(f"{tmp_path / MANIFEST}: line 1 is not")):
        read_checkpoint(tmp_path / "last.ckpt")
