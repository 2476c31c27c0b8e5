"""Temporary files and failed writes (issue 27, item 4): one naming rule
(:func:`radiodiff.io.artifacts.temp_name`) and one clean-up
(:func:`~radiodiff.io.artifacts.clear_stale_temps`) that matches every name it makes, tested
by killing checkpoint writes at random points; a full disk or an I/O error, however the
library words it, is one line naming the file; a corrupt chunk of a prepared file read for
training names the file and the rows."""

import errno
import importlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch
from safetensors import SafetensorError

from helpers import synth
from helpers.outputs import SRC, hashes, one_line, temps
from radiodiff.cli import main
from radiodiff.io import artifacts
from radiodiff.io.artifacts import (OLD_PREFIX, OutputError, atomic_write, clear_stale_temps,
                                    lock_output, save_torch, temp_name, unlock_output,
                                    write_manifest)
from radiodiff.io.integrity import MANIFEST


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


# --------------------------------------------------------------------------- names

def test_one_naming_rule_never_doubles_a_prefix(tmp_path, monkeypatch):
    last, me = tmp_path / "last.ckpt", f"{os.getpid()}@{artifacts._HOST}"
    tmp = temp_name(last)  # what ResumeCheckpoint writes, checks, then renames
    assert tmp.name == f".rdtmp-{me}-last.ckpt" and temp_name(tmp) == tmp
    assert temp_name(tmp, OLD_PREFIX).name == f".rdold-{me}-last.ckpt"
    assert temp_name(tmp_path / f".rdtmp-{os.getpid()}-last.ckpt") == tmp  # an old name
    written, real = [], torch.save

    def recording(obj, f, *a, **k):
        written.append(Path(f).name)
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", recording)
    save_torch({"w": torch.ones(2)}, tmp)  # the checkpoint writer on its own temporary
    assert written == [tmp.name]  # written in place: no .rdtmp-<pid>-.rdtmp-<pid>-
    write_manifest(tmp_path, [tmp.name])
    assert sorted(os.listdir(tmp_path)) == sorted([tmp.name, MANIFEST])


def test_one_clean_up_matches_every_name(tmp_path):
    dead, alive, host = _dead_pid(), os.getppid(), artifacts._HOST
    stale = [f".rdtmp-{dead}@{host}-last.ckpt",
             f".rdtmp-{dead}@{host}-.rdtmp-{dead}@{host}-last.ckpt",
             f".rdtmp-{dead}-last.ckpt",  # without a host: an earlier version's names
             f".rdtmp-{dead}-.rdtmp-{dead}-last.ckpt",
             f".rdtmp-{dead}@{host}-prev.ckpt", f"SHA256SUMS.tmp-{dead}",
             f".rdtmp-{dead}-SHA256SUMS", ".rdlock-out", ".rdlock-old"]
    live = [f".rdtmp-{alive}@{host}-last.ckpt", f".rdtmp-{alive}-last.ckpt",
            f"SHA256SUMS.tmp-{alive}", ".rdlock-other"]
    users = ["last.ckpt", "notes.tmp-12", ".rdtmp-notes", "SHA256SUMS", ".rdlock-",
             ".rdtmp-12@-x"]
    for name in stale + live + users:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".rdlock-out").write_text(f"{dead}@{host}\n")  # a lock holds its owner
    (tmp_path / ".rdlock-old").write_text(f"{dead}\n")  # an earlier version's: pid only
    (tmp_path / ".rdlock-other").write_text(f"{alive}@{host}\n")
    for rel in ("rel", "rel2", "rel3"):  # releases being replaced when the writer died
        (tmp_path / f".rdold-{dead}@{host}-{rel}").mkdir()
        (tmp_path / f".rdold-{dead}@{host}-{rel}" / "model.safetensors").write_bytes(b"old")
    (tmp_path / f".rdtmp-{dead}@{host}-rel").mkdir()  # rel: cut between the two renames
    (tmp_path / "rel2").mkdir()  # rel2's swap finished: its old copy goes
    # rel3: killed while deleting its old copy after the swap (the new one since removed
    # by the user): a partial old copy is not put back
    # the checkpoint writer's clean-up of last.ckpt takes the doubled names too
    assert sorted(p.name for p in clear_stale_temps(tmp_path, "last.ckpt")) == sorted(
        stale[:4])
    clear_stale_temps(tmp_path)  # the one clean-up: every dead process's temporary
    # killed between a swap's two renames, rel is missing: its old copy is put back
    assert sorted(os.listdir(tmp_path)) == sorted(live + users + ["rel", "rel2"])
    assert (tmp_path / "rel" / "model.safetensors").read_bytes() == b"old"
    assert not list((tmp_path / "rel2").iterdir())


def test_the_clean_up_never_touches_another_hosts_temporaries(tmp_path):
    """Multi-node training on a shared file system: every rank clears the checkpoint
    folder, and a pid of another node means nothing here (before: another node's rank
    judged rank 0's temporary dead by its pid and deleted it mid-write)."""
    dead = _dead_pid()  # dead here; on the other node, rank 0 writing
    other = "node_7.cluster"  # as temp_name writes "node-7.cluster" ("-" ends the owner)
    assert artifacts._HOST != other
    names = [f".rdtmp-{dead}@{other}-last.ckpt", f".rdold-{dead}@{other}-rel", ".rdlock-s"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".rdlock-s").write_text(f"{dead}@{other}\n")
    assert clear_stale_temps(tmp_path, "last.ckpt") == [] and clear_stale_temps(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    with pytest.raises(OutputError, match=f"pid {dead} on {other}"):
        lock_output(tmp_path / "s")  # its lock is held: not taken over
    assert (tmp_path / ".rdlock-s").read_text() == f"{dead}@{other}\n"
    lock_output(tmp_path / "t")
    try:
        assert (tmp_path / ".rdlock-t").read_text() == f"{os.getpid()}@{artifacts._HOST}\n"
    finally:
        unlock_output(tmp_path / "t")


def test_a_lock_of_this_pid_that_this_process_does_not_hold_is_a_previous_life(tmp_path):
    """A container's trainer is pid 1 in every restart: the lock its killed run left names
    this very pid, and must not block the resume forever."""
    (tmp_path / ".rdlock-s").write_text(f"{os.getpid()}@{artifacts._HOST}\n")
    lock_output(tmp_path / "s")  # taken over
    try:
        assert clear_stale_temps(tmp_path) == []  # a lock this process holds stays
        assert (tmp_path / ".rdlock-s").is_file()
    finally:
        unlock_output(tmp_path / "s")
    assert not (tmp_path / ".rdlock-s").exists()


_BDSF_KILLED = """
import sys, time
from radiodiff.evaluation.sourcefind import _work_folder
with _work_folder(sys.argv[1]) as tmp:  # as find_sources does around PyBDSF
    print(tmp, flush=True)
    time.sleep(120)
"""


def test_pybdsf_work_folders_of_killed_processes_are_removed_by_the_next_run(tmp_path,
                                                                             monkeypatch):
    """PyBDSF runs in a work folder per image, in worker processes; after kill -9 those
    folders stayed forever (tempfile's ``radiodiff-bdsf-XXXX``, which nothing recognised).
    Now they are named by the one rule for temporaries and the next run removes those of
    dead processes, in ``workdir`` and in the default place, never a live process's or
    another host's."""
    import tempfile
    from types import SimpleNamespace

    import numpy as np

    from radiodiff.evaluation import sourcefind

    work, system = tmp_path / "work", tmp_path / "sys"
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _BDSF_KILLED, str(work)], env=env,
                            stdout=subprocess.PIPE, text=True)
    with proc.stdout:
        killed = Path(proc.stdout.readline().strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert killed.parent == work and killed.is_dir()  # what kill -9 leaves
    host, dead, alive = artifacts._HOST, _dead_pid(), os.getppid()
    stale = [f".rdtmp-{dead}@{host}-bdsf-a1b2c3"]
    kept = [f".rdtmp-{alive}@{host}-bdsf-d4e5f6", f".rdtmp-{dead}@node_7.cluster-bdsf-x",
            "radiodiff-bdsf-mine", "notes"]
    default = system / f"radiodiff-bdsf-{os.getuid()}"
    for root in (work, default):
        for name in stale + kept:
            (root / name).mkdir(parents=True)
            (root / name / "image.fits").write_bytes(b"x")
    used = []

    def process_image(path, outdir, **options):  # PyBDSF that finds nothing
        used.append(Path(outdir))
        return SimpleNamespace(gaussians=[], sources=[])
    monkeypatch.setattr(sourcefind, "_import_bdsf",
                        lambda: SimpleNamespace(process_image=process_image))
    monkeypatch.setattr(tempfile, "tempdir", str(system))
    image = np.zeros((16, 16))
    image[8, 8] = 1.0
    for workdir, root in ((work, work), (None, default)):
        found = sourcefind.find_sources(image, 1.8, 5.4, rms=0.01, workdir=workdir)
        assert found["n_sources"] == 0 and used[-1].parent == root
        assert sorted(os.listdir(root)) == sorted(kept)  # the dead ones and its own gone
    me = f".rdtmp-{os.getpid()}@{host}-bdsf-"
    assert all(p.name.startswith(me) for p in used), used


# What ResumeCheckpoint.save uses of a Lightning Trainer, saving a minimal checkpoint.
class _Trainer:
    is_global_zero, lightning_module = True, None

    def __init__(self, step: int) -> None:
        self.global_step, self.strategy = step, self

    def barrier(self, name: str) -> None:
        pass

    def broadcast(self, obj, src=0):  # one process: rank 0's object
        return obj

    def save_checkpoint(self, path, weights_only=False) -> None:
        from radiodiff.training.fit import AtomicCheckpointIO

        hp = {"cfg": {"model": {}, "data": {}, "train": {}}, "num_classes": 0,
              "scalar_conditions": [], "transform": {}, "sigma_data": 0.5}
        state = {"w": torch.full((250_000,), float(self.global_step))}  # 1 MB
        AtomicCheckpointIO().save_checkpoint(
            {"hyper_parameters": hp, "state_dict": state, "global_step": self.global_step},
            path)


def _save_forever(ckdir: Path, first_step: int) -> None:
    """A training run that saves its checkpoint at every step (in a forked child)."""
    from radiodiff.training.fit import ResumeCheckpoint

    trainer, callback = _Trainer(first_step), ResumeCheckpoint(ckdir, 1, 0)
    while True:
        trainer.global_step += 1
        callback.save(trainer)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_killed_checkpoint_writes_leave_nothing_after_one_clean_up(tmp_path):
    from radiodiff.pipeline.checkpoint import LAST, PREV, read_checkpoint

    importlib.import_module("radiodiff.training.fit")  # Lightning: once, before the forks

    ckdir, rng, left = tmp_path / "ckpt", random.Random(0), []
    ckdir.mkdir()
    k = 0
    while k < 20 or not any(left) and k < 60:  # 20 kills, more until one lands mid-write
        k += 1
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                # one thread: a forked child that enters an OpenMP region the parent's
                # earlier tests started hangs (GNU OpenMP), and is then killed having
                # written nothing (what CI saw under the full suite)
                torch.set_num_threads(1)
                _save_forever(ckdir, k * 10**6)
            except BaseException as exc:  # said in the assertion below
                (tmp_path / "child-error.txt").write_text(repr(exc))
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.02, 0.5))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        err = tmp_path / "child-error.txt"
        assert os.WIFSIGNALED(status), (  # the writer never stops on its own
            f"the checkpoint writer failed: {err.read_text() if err.exists() else '?'}")
        left.append(sorted(set(os.listdir(ckdir)) - {LAST, PREV, MANIFEST}))
    assert LAST in os.listdir(ckdir), "no writer ever finished a checkpoint"
    assert any(left)  # some kills landed mid-write and left temporaries
    clear_stale_temps(ckdir)  # one clean-up
    names = set(os.listdir(ckdir))
    assert LAST in names and names <= {LAST, PREV, MANIFEST}, names
    for name in sorted(names - {MANIFEST}):  # its hash in SHA256SUMS, layout, finite
        ck = read_checkpoint(ckdir / name, alternative=False)
        assert torch.equal(ck["state_dict"]["w"], torch.full((250_000,), ck["global_step"],
                                                            dtype=torch.float32))


@pytest.mark.slow  # imports Lightning
def test_a_save_killed_mid_rotation_is_completed_by_the_next(tmp_path):
    from radiodiff.io.integrity import read_manifest, sha256_file
    from radiodiff.pipeline.checkpoint import LAST, PREV, read_checkpoint
    from radiodiff.training.fit import ResumeCheckpoint

    for step in (1, 2):
        ResumeCheckpoint(tmp_path, 1, 0).save(_Trainer(step))
    step1, step2 = sha256_file(tmp_path / PREV), sha256_file(tmp_path / LAST)
    # killed after SHA256SUMS named step 2 the next prev.ckpt, before the link was made
    write_manifest(tmp_path, [], {LAST: "ab" * 32, PREV: step2, f"{PREV}.old": step1})
    (tmp_path / f".rdtmp-{_dead_pid()}-last.ckpt").write_bytes(b"unverified")
    ResumeCheckpoint(tmp_path, 1, 0).save(_Trainer(4))  # the next piece
    assert sorted(os.listdir(tmp_path)) == sorted([LAST, MANIFEST, PREV])
    assert sha256_file(tmp_path / PREV) == step2 == read_manifest(tmp_path)[PREV]
    assert read_checkpoint(tmp_path / PREV)["global_step"] == 2  # verifiable, not "corrupt"
    assert read_checkpoint(tmp_path / LAST)["global_step"] == 4


@pytest.mark.slow  # imports Lightning
def test_the_second_save_killed_mid_rotation_keeps_the_first(tmp_path):
    """No prev.ckpt yet: the manifest already names last.ckpt the next prev.ckpt when the
    kill lands; the next save links it (before: it was overwritten, and SHA256SUMS listed a
    prev.ckpt that did not exist)."""
    from radiodiff.io.integrity import read_manifest, sha256_file
    from radiodiff.pipeline.checkpoint import LAST, PREV, read_checkpoint
    from radiodiff.training.fit import ResumeCheckpoint

    ResumeCheckpoint(tmp_path, 1, 0).save(_Trainer(1))
    step1 = sha256_file(tmp_path / LAST)
    write_manifest(tmp_path, [], {LAST: "ab" * 32, PREV: step1})  # killed before the link
    ResumeCheckpoint(tmp_path, 1, 0).save(_Trainer(3))
    assert sorted(os.listdir(tmp_path)) == sorted([LAST, MANIFEST, PREV])
    assert sha256_file(tmp_path / PREV) == step1 == read_manifest(tmp_path)[PREV]
    assert read_checkpoint(tmp_path / PREV)["global_step"] == 1
    assert read_checkpoint(tmp_path / LAST)["global_step"] == 3


# --------------------------------------------------------------------------- full disk, I/O

_FAILURES = {  # how a full disk or a bad disk reads, by who reports it
    "errno": OSError(errno.ENOSPC, "No space left on device"),
    "quota": OSError(errno.EDQUOT, "Disk quota exceeded"),
    "h5py": OSError("Can't write data (file write failed: time = Sun Dec 6, filename = "
                    "'x.h5', file descriptor = 5, errno = 28, error message = 'No space "
                    "left on device', buf = 0x1, total write size = 4096)"),
    "torch": RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 "
                          "vs 4054"),
    "torch-writer": RuntimeError("PytorchStreamWriter failed writing file data/0: file write "
                                 "failed"),
    "safetensors": SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                                   "StorageFull, message: \"No space left on device\" })"),
    "io": OSError(errno.EIO, "Input/output error"),
}


@pytest.mark.parametrize("who", sorted(_FAILURES))
def test_full_disk_and_io_errors_are_one_line_naming_the_file(tmp_path, who):
    path = tmp_path / "rel" / "model.safetensors"
    path.parent.mkdir()
    path.write_bytes(b"old")

    def partial(tmp):
        tmp.write_bytes(b"partial")
        raise _FAILURES[who]
    with pytest.raises(OutputError) as info:
        atomic_write(path, partial)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert ("I/O error" if who == "io" else "no space left on device") in text
    assert path.read_bytes() == b"old" and os.listdir(path.parent) == [path.name]


def test_full_disk_at_checkpoint_time_names_the_checkpoint(tmp_path, monkeypatch):
    last = tmp_path / "last.ckpt"
    save_torch({"w": torch.ones(2)}, last)
    before = last.read_bytes()

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise _FAILURES["torch"]
    monkeypatch.setattr(torch, "save", full)
    for target in (last, temp_name(last)):  # a plain save, and ResumeCheckpoint's temporary
        with pytest.raises(OutputError, match=re.escape(f"{last}: no space left on device")):
            save_torch({"w": torch.zeros(2)}, target)
    assert last.read_bytes() == before and os.listdir(tmp_path) == [last.name]


class _Rank(_Trainer):
    """One rank of a two-process run: Lightning's ``save_checkpoint`` (rank 0 writes through
    the strategy's IO plugin, then every rank meets at a barrier) and a broadcast that
    hands rank 1 what rank 0 sent."""

    def __init__(self, rank: int, sent: list) -> None:
        from radiodiff.training.fit import AtomicCheckpointIO

        super().__init__(3)
        self.is_global_zero, self.sent, self.barriers = rank == 0, sent, []
        self.checkpoint_io = AtomicCheckpointIO()

    def save_checkpoint(self, path, weights_only=False) -> None:
        if self.is_global_zero:
            self.checkpoint_io.save_checkpoint({"global_step": self.global_step}, path)
        self.barrier("Trainer.save_checkpoint")

    def barrier(self, name: str) -> None:
        self.barriers.append(name)

    def broadcast(self, obj, src=0):
        if self.is_global_zero:
            self.sent.append(obj)
            return obj
        return self.sent[-1]


@pytest.mark.slow  # imports Lightning
def test_full_disk_in_a_multi_process_save_stops_every_rank(tmp_path, monkeypatch):
    """Rank 0's write fails (a full disk): it still meets the others at Lightning's barrier
    after the save, then every rank stops with the same line (none waits for a rank 0 that
    left)."""
    from radiodiff.training import fit

    def full(obj, path):
        raise OutputError(f"{path}: no space left on device")
    monkeypatch.setattr(fit, "save_torch", full)
    sent: list = []
    zero, one = _Rank(0, sent), _Rank(1, sent)
    with pytest.raises(OutputError, match="no space left on device") as failed:
        fit.ResumeCheckpoint(tmp_path, 1, 0).save(zero)
    assert zero.barriers == ["Trainer.save_checkpoint"]  # reached before it raised
    with pytest.raises(OutputError) as heard:
        fit.ResumeCheckpoint(tmp_path, 1, 0).save(one)
    assert str(heard.value) == str(failed.value) and one.barriers == ["Trainer.save_checkpoint"]
    assert not (tmp_path / "last.ckpt").exists()
    # outside a checkpoint's save the plugin raises at once, as Lightning expects
    with pytest.raises(OutputError, match="no space left on device"):
        fit.AtomicCheckpointIO().save_checkpoint({}, tmp_path / "x.ckpt")


@pytest.mark.slow  # imports Lightning
def test_full_disk_during_export_as_safetensors_says_it(ckpt, release_copy, tmp_path, capsys,
                                                        monkeypatch):
    import safetensors.torch

    target = release_copy
    before = hashes(target)

    def full(state, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 1000)
        raise _FAILURES["safetensors"]
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target), "--overwrite"]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{target / 'model.safetensors'}: no space left on device" in line
    assert hashes(target) == before and not temps(tmp_path)


# --------------------------------------------------------------------------- corrupt chunk

def _corrupt_chunk(path: Path, rows: int = 8, first: int = 16) -> tuple[int, int]:
    """Re-chunk ``images`` by ``rows`` rows and damage the chunk starting at row ``first``;
    returns its first and last row."""
    with h5py.File(path, "r+") as f:
        data = f["images"][()]
        del f["images"]
        f.create_dataset("images", data=data, chunks=(rows, *data.shape[1:]),
                         compression="gzip", shuffle=True)
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info_by_coord((first, 0, 0, 0))
    raw = bytearray(path.read_bytes())
    at = info.byte_offset + info.size // 2
    raw[at:at + 16] = bytes(b ^ 0xFF for b in raw[at:at + 16])
    path.write_bytes(bytes(raw))
    return first, first + rows - 1


def test_training_loader_names_the_file_and_rows_of_a_corrupt_chunk(tmp_path):
    from radiodiff.data.datamodule import CutoutDataModule, CutoutDataset

    path = synth.write_blob_set(tmp_path / "set.h5",
                                n_per=(("train", 20), ("valid", 10), ("test", 10)))
    a, b = _corrupt_chunk(path)
    expect = re.escape(f"{path}: dataset 'images' is unreadable, a corrupt chunk at rows "
                       f"{a}-{b} (")
    with pytest.raises(ValueError, match=expect) as info:
        CutoutDataset(path, range(40))  # in memory: one read of all rows
    assert "\n" not in str(info.value) and "radiodiff prepare" in str(info.value)
    lazy = CutoutDataset(path, range(40), in_memory=False)
    assert lazy[a - 1][0].shape == (1, 16, 16)  # rows of intact chunks still read
    with pytest.raises(ValueError, match=expect):
        lazy[a + 1]
    with pytest.raises(ValueError, match=expect):
        CutoutDataModule(path, batch_size=4).setup("fit")  # what `train` does first
