"""Faults on the write side: nothing the user owns is ever deleted, renamed aside or mixed
with a new run's files; outputs are checked before the compute; a full disk or a kill leaves
no partial or temporary file behind (radiodiff.io.artifacts)."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.outputs import CLASSES, SRC, hashes, one_line, sample, temps
from radiodiff.cli import main
from radiodiff.io import artifacts


# --------------------------------------------------------------------------- export

def test_export_onto_a_folder_that_is_not_a_release(ckpt, tiny, tmp_path, capsys):
    models = tmp_path / "models"  # like --out models: holds the built-in release
    (models / "first").mkdir(parents=True)
    for f in tiny.iterdir():
        (models / "first" / f.name).write_bytes(f.read_bytes())
    (models / "notes.txt").write_text("mine\n")
    before = hashes(models)
    for extra in ([], ["--overwrite"]):
        assert main(["export", "--ckpt", str(ckpt), "--out", str(models), *extra]) == 2
        line = one_line(capsys.readouterr().err)
        assert str(models) in line and "is not a release folder" in line
        assert hashes(models) == before
    assert not temps(tmp_path)


def test_export_onto_a_file(ckpt, tmp_path, capsys):
    target = tmp_path / "release"
    target.write_bytes(b"user data\n")
    before = hashes(target)
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target), "--overwrite"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(target) in line and "is not a folder" in line
    assert hashes(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]  # nothing renamed aside


def test_export_onto_a_release_needs_overwrite(ckpt, tiny, tmp_path, capsys):
    target = tmp_path / "models" / "first"
    target.mkdir(parents=True)
    for f in tiny.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    before = hashes(target)
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target)]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(target) in line and "is already a release folder" in line and "--overwrite" in line
    assert hashes(target) == before and not temps(tmp_path)


@pytest.mark.slow  # reading a checkpoint imports Lightning (~5-10 s on a busy CPU)
def test_export_overwrite_replaces_the_release(ckpt, tiny, tmp_path):
    from radiodiff.pipeline.release import load_release

    target = tmp_path / "models" / "first"
    target.mkdir(parents=True)
    for f in tiny.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target), "--overwrite"]) == 0
    assert json.loads((target / "meta.json").read_text())["step"] == 7  # the new one
    assert load_release(target).classes == CLASSES
    assert sorted(p.name for p in target.iterdir()) == [
        "SHA256SUMS", "config.yaml", "meta.json", "model.safetensors"]
    assert not temps(tmp_path)


@pytest.mark.slow  # imports Lightning
def test_export_full_disk_keeps_the_old_release(ckpt, release_copy, tmp_path, capsys,
                                                 monkeypatch):
    import safetensors.torch

    target = release_copy
    before = hashes(target)

    def full(state, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 1000)  # a partial file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", filename)
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target), "--overwrite"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(target / "model.safetensors") in line and "no space left" in line
    assert hashes(target) == before and not temps(tmp_path)


# --------------------------------------------------------------------------- sample

def test_sample_onto_stale_fits(tiny, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "--model", str(tiny), "--n", "4", "--steps", "2",
                 "--out", str(out)]) == 0
    before = hashes(out)
    assert sample(tiny, out) == 2  # an earlier run: refused without --overwrite
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "is already a samples folder" in line and "--overwrite" in line
    assert hashes(out) == before

    assert sample(tiny, out, "--overwrite") == 0  # 2 images replace 4: no stale FITS
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS", "preview.png", "sample_00000.fits", "sample_00001.fits", "samples.h5"]
    assert not temps(tmp_path)


def test_sample_onto_a_folder_of_user_fits(tiny, tmp_path, capsys, no_compute):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "sample_00000.fits").write_bytes(b"SIMPLE  = T" + b" " * 2869)
    before = hashes(out)
    assert sample(tiny, out, "--overwrite") == 2  # no samples.h5: not ours, never touched
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "is not a samples folder" in line
    assert hashes(out) == before


def test_sample_target_not_writable_fails_before_sampling(tiny, tmp_path, capsys,
                                                           no_compute):
    if os.geteuid() == 0:  # chmod does not stop root: a file where a folder is expected
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out, problem, bad = blocker / "out", "is a file, not a folder", blocker
    else:
        bad = tmp_path / "ro"
        bad.mkdir()
        bad.chmod(0o555)
        out, problem = bad / "out", "is not writable"
    try:
        assert sample(tiny, out) == 2
    finally:
        bad.chmod(0o755) if bad.is_dir() else None
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and str(bad) in line and problem in line


@pytest.mark.skipif(os.geteuid() == 0, reason="chmod does not stop root")
def test_sample_read_only_folder(tiny, tmp_path, capsys, no_compute):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert sample(tiny, ro / "out") == 2
    finally:
        ro.chmod(0o755)
    assert "is not writable" in one_line(capsys.readouterr().err)


def test_sample_target_is_a_file(tiny, tmp_path, capsys, no_compute):
    out = tmp_path / "out.fits"
    out.write_bytes(b"precious")
    assert sample(tiny, out, "--overwrite") == 2
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "is not a folder" in line
    assert out.read_bytes() == b"precious" and sorted(os.listdir(tmp_path)) == ["out.fits"]


def test_sample_not_enough_space_fails_before_sampling(tiny, tmp_path, capsys, no_compute,
                                                       monkeypatch):
    import shutil
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(artifacts.shutil, "disk_usage",
                        lambda p: usage._replace(free=1000))
    assert sample(tiny, tmp_path / "out") == 2
    line = one_line(capsys.readouterr().err)
    assert str(tmp_path / "out") in line and "not enough free space" in line


def test_sample_full_disk_mid_write(tiny, tmp_path, capsys, monkeypatch):
    import radiodiff.io.fits as fits_io

    out = tmp_path / "s"
    assert sample(tiny, out) == 0
    before = hashes(out)
    real, calls = fits_io.atomic_write, []

    def flaky(path, write, fsync=False):
        calls.append(path)
        if len(calls) < 3:
            return real(path, write, fsync)

        def partial(tmp):
            Path(tmp).write_bytes(b"\0" * 2880)
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
        return real(path, partial, fsync)
    monkeypatch.setattr(fits_io, "atomic_write", flaky)
    assert main(["sample", "--model", str(tiny), "--n", "4", "--steps", "2", "--out", str(out),
                 "--overwrite"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out / "sample_00002.fits") in line and "no space left" in line
    assert hashes(out) == before  # the earlier output is intact, no partial set beside it
    assert not temps(tmp_path)


def test_sample_full_disk_in_hdf5(tiny, tmp_path, capsys, monkeypatch):
    import radiodiff.io.samples as samples_io

    real = samples_io.atomic_write

    def h5py_like(path, write, fsync=False):
        def partial(tmp):  # h5py says it in the text, errno is None
            Path(tmp).write_bytes(b"\x89HDF\r\n\x1a\n")
            raise OSError("Can't write data (file write failed: errno = 28, error message "
                          "= 'No space left on device')")
        return real(path, partial, fsync)
    monkeypatch.setattr(samples_io, "atomic_write", h5py_like)
    out = tmp_path / "s"
    assert sample(tiny, out) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out / "samples.h5") in line and "no space left" in line
    assert os.listdir(tmp_path) == []  # no partial set, no temporary


def test_swap_failure_puts_the_old_artifact_back(tmp_path, monkeypatch):
    target = tmp_path / "rep"
    target.mkdir()
    (target / "metrics.json").write_text("{}")
    before = hashes(target)
    real = os.replace

    def second_fails(src, dst):
        if Path(dst) == target and Path(src).name.startswith(".rdtmp-"):
            # the old one is moved aside; moving the new one in fails
            raise OSError(errno.EIO, "I/O error", str(dst))
        return real(src, dst)
    monkeypatch.setattr(artifacts.os, "replace", second_fails)
    with pytest.raises(OSError, match="I/O error"):
        with artifacts.artifact_dir(target, "report", overwrite=True) as tmp:
            (tmp / "metrics.json").write_text('{"new": 1}')
    monkeypatch.undo()
    assert hashes(target) == before and not temps(tmp_path)


@pytest.mark.parametrize("appears", ["file", "folder"])
def test_swap_failure_with_something_at_the_target_keeps_the_old_artifact(
        tmp_path, monkeypatch, appears):
    """The second rename fails and something is at the target meanwhile: the old artifact
    cannot go back, and is kept beside it, named in the error (before: it was deleted)."""
    target, new = tmp_path / "rep", tmp_path / "new"
    for folder, text in ((target, "{}"), (new, '{"new": 1}')):
        folder.mkdir()
        (folder / "metrics.json").write_text(text)
    before, real, calls = hashes(target), os.replace, []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old one is aside; something takes its place, then fails
            if appears == "file":
                Path(dst).write_text("another program's")
            else:
                Path(dst).mkdir()
                (Path(dst) / "x").write_text("another program's")
            raise OSError(errno.EIO, "I/O error", str(dst))
        return real(src, dst)
    monkeypatch.setattr(artifacts.os, "replace", second_fails)
    with pytest.raises(artifacts.OutputError, match="the previous rep is kept as") as info:
        artifacts._swap(new, target)
    monkeypatch.undo()
    kept = tmp_path / f"rep.previous-{os.getpid()}"
    assert str(kept) in str(info.value) and hashes(kept) == before
    assert not temps(tmp_path)  # nothing left where the clean-up of temporaries would go


# --------------------------------------------------------------------------- evaluate

def test_evaluate_onto_samples_folder_and_under_a_file(tiny, tmp_path, capsys, monkeypatch):
    from radiodiff.evaluation.sets import Compared

    def refuse(*a, **k):
        raise AssertionError("evaluation started before the output was checked")
    monkeypatch.setattr(Compared, "image_set", refuse)
    samples = tmp_path / "s"
    samples.mkdir()
    (samples / "samples.h5").write_bytes(b"x")
    before = hashes(samples)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, problem in ((samples, "is not a report folder"), (blocker / "r", "is a file")):
        assert main(["evaluate", "--reference", str(tmp_path / "none.h5"), "--model",
                     str(tiny), "--out", str(out), "--overwrite"]) == 2
        line = one_line(capsys.readouterr().err)
        assert str(out) in line and problem in line
    assert hashes(samples) == before and blocker.read_text() == "x"


# --------------------------------------------------------------------------- prepare

def test_prepare_onto_existing_files(tmp_path, capsys):
    other = tmp_path / "notes.h5"
    other.write_text("not HDF5")
    h5 = tmp_path / "first.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    for out, extra, problem in ((other, ["--overwrite"], "is not a prepared HDF5 file"),
                                (h5, [], "already exists; give --overwrite")):
        before = hashes(out)
        assert main(["prepare", "data=first", "--out", str(out), *extra]) == 2
        line = one_line(capsys.readouterr().err)
        assert str(out) in line and problem in line
        assert hashes(out) == before


# --------------------------------------------------------------------------- helpers

def test_artifact_dir_failure_restores_nothing_and_leaves_no_temp(tmp_path):
    target = tmp_path / "rep"
    target.mkdir()
    (target / "metrics.json").write_text("{}")
    before = hashes(target)
    with pytest.raises(RuntimeError, match="boom"):
        with artifacts.artifact_dir(target, "report", overwrite=True) as tmp:
            (tmp / "metrics.json").write_text('{"new": 1}')
            raise RuntimeError("boom")
    assert hashes(target) == before and not temps(tmp_path)


def test_replacing_a_linked_artifact_keeps_what_the_link_pointed_to(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "metrics.json").write_text("{}")
    before = hashes(real)
    link = tmp_path / "rep"
    link.symlink_to(real, target_is_directory=True)
    with artifacts.artifact_dir(link, "report", overwrite=True) as tmp:
        (tmp / "metrics.json").write_text('{"new": 1}')
    assert not link.is_symlink() and (link / "metrics.json").read_text() == '{"new": 1}'
    assert hashes(real) == before and not temps(tmp_path)


def test_stale_temps_of_dead_processes_are_cleared(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".rdtmp-{dead}-out"
    stale.mkdir()
    (stale / "sample_00000.fits").write_bytes(b"partial")
    mine = tmp_path / f".rdtmp-{os.getppid()}-out"  # a live process's: kept
    mine.mkdir()
    with artifacts.artifact_dir(tmp_path / "out", "samples") as tmp:
        (tmp / "samples.h5").write_bytes(b"x")
    assert not stale.exists() and mine.exists()


@pytest.mark.slow  # imports Lightning
def test_checkpoint_io_writes_beside_the_target_only(tmp_path, monkeypatch):
    import tempfile

    from radiodiff.training.fit import AtomicCheckpointIO

    def no_system_temp(*a, **k):
        raise AssertionError("a temporary file in the system temp folder")
    monkeypatch.setattr(tempfile, "mkstemp", no_system_temp)
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.ckpt"]


_KILLED_WRITER = """
import os, sys, time, torch
from radiodiff.io import artifacts
def stall(fd):  # every byte is written, the rename not yet done
    print("written", flush=True)
    time.sleep(120)
artifacts.os.fsync = stall
artifacts.save_torch({"w": torch.zeros(8_000_000)}, sys.argv[1])  # 32 MB
"""


@pytest.mark.slow
def test_kill_during_checkpoint_write(tmp_path):
    ckdir, systmp = tmp_path / "run", tmp_path / "systmp"
    ckdir.mkdir()
    systmp.mkdir()
    last = ckdir / "last.ckpt"
    artifacts.save_torch({"w": torch.ones(4)}, last)
    before = hashes(last)
    env = dict(os.environ, PYTHONPATH=SRC, TMPDIR=str(systmp), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(last)], env=env,
                            stdout=subprocess.PIPE, text=True)
    with proc.stdout:
        try:
            assert proc.stdout.readline().strip() == "written"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    stale = ckdir / f".rdtmp-{proc.pid}@{artifacts._HOST}-last.ckpt"
    assert stale.stat().st_size > 30e6  # the killed writer's full temporary copy
    assert hashes(last) == before  # the previous checkpoint is intact
    assert not list(systmp.iterdir())  # nothing in the system temp folder
    time.sleep(0.1)
    artifacts.save_torch({"w": torch.full((4,), 2.0)}, last)  # the next save cleans up
    assert os.listdir(ckdir) == ["last.ckpt"]
    assert torch.equal(torch.load(last, weights_only=True)["w"], torch.full((4,), 2.0))


_TERMINATED_SAMPLER = """
import sys, time
import radiodiff.io.fits as fits_io
real = fits_io.write_hdu
def slow(path, *a, **k):
    out = real(path, *a, **k)
    print("wrote", path.name, flush=True)
    time.sleep(120)
    return out
fits_io.write_hdu = slow
from radiodiff.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_during_sample_leaves_nothing(tiny, tmp_path):
    out = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _TERMINATED_SAMPLER, "sample", "--model",
                             str(tiny), "--n", "3", "--steps", "2", "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    with proc.stdout:
        try:
            line = proc.stdout.readline()
            while line and not line.startswith("wrote "):  # the sampler line comes first
                line = proc.stdout.readline()
            assert line.startswith("wrote sample_00000")
            assert temps(tmp_path)  # the half-written set, in its temporary folder
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []  # no partial set, no temporary


def test_a_failed_write_leaves_no_folders_it_made(tmp_path):
    from radiodiff.io.artifacts import artifact_dir

    target = tmp_path / "a" / "b" / "report"
    with pytest.raises(RuntimeError, match="boom"):
        with artifact_dir(target, "report"):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
