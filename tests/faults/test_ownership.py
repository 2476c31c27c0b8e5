"""``--overwrite`` replaces only what the command wrote, and one writer at a time per output
(issue 27, item 3): every output folder records its files (``SHA256SUMS``); an overwrite
replaces those and keeps everything else (a release's ``refiner/`` and model card, the
user's notes) unless a fresh release is asked for; a second writer of the same output is
refused in one line naming the first one's pid (radiodiff.io.artifacts)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from helpers.outputs import CLASSES, SRC, hashes, one_line, sample, temps
from helpers.releases import tiny_release
from radiodiff.cli import main
from radiodiff.io import artifacts
from radiodiff.io.artifacts import OutputError, artifact_dir
from radiodiff.io.integrity import read_manifest


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """A release with its faint-end refiner in refiner/ (as models/first ships)."""
    from radiodiff.pipeline.release import attach_refiner

    root = tmp_path_factory.mktemp("pair")
    base = tiny_release(root / "base", CLASSES)
    refiner = tiny_release(root / "refiner", CLASSES, busy=True)
    return attach_refiner(base, refiner, root / "paired", sigma=0.5, steps=2)


def _with_card(src, dst):
    """A copy of the release ``src`` with a model card and a user's notes beside it."""
    shutil.copytree(src, dst)
    (dst / "README.md").write_text("# model card\n")
    (dst / "notes").mkdir()
    (dst / "notes" / "todo.txt").write_text("mine\n")
    return dst


# --------------------------------------------------------------------------- release

def test_export_overwrite_keeps_refiner_and_model_card(ckpt, paired, tmp_path):
    from radiodiff.pipeline.release import load_release

    target = _with_card(paired, tmp_path / "first")
    kept = {k: v for k, v in hashes(target).items()
            if k.startswith(("refiner/", "README", "notes/"))}
    assert len(kept) >= 5
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target), "--overwrite"]) == 0
    after = hashes(target)
    assert {k: after.get(k) for k in kept} == kept  # byte-identical, still there
    meta = json.loads((target / "meta.json").read_text())
    assert meta["step"] == 7  # the new weights
    release = load_release(target)  # the refiner is still this release's refiner
    assert release.refiner is not None and release.refine.steps == 2
    assert sorted(read_manifest(target)) == ["config.yaml", "meta.json", "model.safetensors"]
    assert not temps(tmp_path)


def test_export_fresh_replaces_the_whole_release(ckpt, paired, tmp_path):
    target = _with_card(paired, tmp_path / "first")
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target), "--fresh"]) == 0
    assert sorted(p.name for p in target.iterdir()) == [
        "SHA256SUMS", "config.yaml", "meta.json", "model.safetensors"]
    assert "refine" not in json.loads((target / "meta.json").read_text())


def test_export_onto_a_refiner_that_no_longer_fits_is_refused(ckpt, tmp_path, capsys):
    from radiodiff.pipeline.release import attach_refiner

    other = ["FRI", "FRII"]  # the checkpoint's classes are blob, double
    target = attach_refiner(tiny_release(tmp_path / "b", other),
                            tiny_release(tmp_path / "r", other), tmp_path / "rel", steps=2)
    before = hashes(target)
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target), "--overwrite"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(target) in line and "refiner/" in line and "--fresh" in line
    assert hashes(target) == before and not temps(tmp_path)


# --------------------------------------------------------------------------- sample, demo, report

def test_sample_overwrite_keeps_the_users_files(tiny, tmp_path):
    out = tmp_path / "s"
    assert sample(tiny, out, "--n", "3") == 0
    assert sorted(read_manifest(out)) == [
        "preview.png", "sample_00000.fits", "sample_00001.fits", "sample_00002.fits",
        "samples.h5"]
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "sample_00009.fits").write_bytes(b"SIMPLE  = T")
    (out / "empty").mkdir()
    users = {k: v for k, v in hashes(out).items() if k.startswith(("notes", "mine"))}
    assert sample(tiny, out, "--overwrite") == 0  # 2 images replace 3: no stale FITS
    assert sorted(os.listdir(out)) == [
        "SHA256SUMS", "empty", "mine", "notes.txt", "preview.png", "sample_00000.fits",
        "sample_00001.fits", "samples.h5"]
    assert {k: v for k, v in hashes(out).items() if k in users} == users
    assert not temps(tmp_path)


@pytest.mark.parametrize("kind, files", [
    ("demo", ("summary.md", "report/metrics.json", "samples/blob/samples.h5")),
    ("report", ("metrics.json", "report.md", "histograms.png")),
])
def test_overwrite_replaces_only_what_the_writer_wrote(tmp_path, kind, files):
    out = tmp_path / kind

    def write(names, text):
        with artifact_dir(out, kind, overwrite=True) as tmp:
            for name in names:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text(text)

    write(files, "old")
    mine = {"my_plot.png": "user", "report/by_hand.md": "user", "x/y/z.txt": "user"}
    for name, text in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    write(files[:-1], "new")  # this run writes one file less
    assert not (out / files[-1]).exists()  # the writer's stale file went
    assert all((out / n).read_text() == "new" for n in files[:-1])
    assert all((out / n).read_text() == t for n, t in mine.items())
    assert sorted(read_manifest(out)) == sorted(files[:-1])
    assert os.listdir(tmp_path) == [kind]


# An older version's folder (no SHA256SUMS): old files, the new run's, what stays.
_LEGACY = {
    "samples": ([f"sample_{k:05d}.fits" for k in range(100)] + ["samples.h5", "preview.png"],
                [f"sample_{k:05d}.fits" for k in range(10)] + ["samples.h5", "preview.png"],
                ["notes.txt", "sample_mine.fits", "mine/sample_00050.fits"]),
    "report": (["metrics.json", "report.md", "report.html", "histograms.png", "noise.png",
                "release/model.safetensors", "tstr/release/meta.json"],
               ["metrics.json", "report.md", "report.html", "histograms.png"],
               ["my_plot.png", "notes/report.md"]),
    "demo": (["summary.md", "real_vs_generated.png", "report/metrics.json",
              "report/confusion_real.png", "samples/FRI/samples.h5", "samples/FRI/preview.png",
              "samples/FRI/sample_00005.fits", "samples/FRII/samples.h5"],
             ["summary.md", "real_vs_generated.png", "report/metrics.json",
              "samples/FRI/samples.h5", "samples/FRI/sample_00000.fits"],
             ["README.md", "samples/FRI/notes.txt", "report/by_hand.md"]),
    "release": (["config.yaml", "model.safetensors", "meta.json", "train_conditions.csv"],
                ["config.yaml", "model.safetensors", "meta.json"],
                ["README.md", "refiner/model.safetensors", "refiner/meta.json"]),
}


@pytest.mark.parametrize("kind", sorted(_LEGACY))
def test_overwrite_of_an_older_versions_folder_leaves_none_of_its_files(tmp_path, kind):
    """A folder written before SHA256SUMS recorded the writer's files: an overwrite replaces
    the files that writer makes and keeps the rest (before: nothing was the writer's, and
    `sample --n 10 --overwrite` onto 100 images kept sample_00010..99.fits beside the new
    10-image samples.h5)."""
    old, new, users = _LEGACY[kind]
    out = tmp_path / kind
    for name in old + users:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old" if name in old else "user")
    with artifact_dir(out, kind, overwrite=True) as tmp:
        for name in new:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text("new")
    after = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    want = {**{n: "new" for n in new}, **{n: "user" for n in users}}
    assert {k: v for k, v in after.items() if k != "SHA256SUMS"} == want
    assert os.listdir(tmp_path) == [kind]


# --------------------------------------------------------------------------- one writer at a time

_HOLDER = """
import sys, time
from radiodiff.io.artifacts import check_output
check_output(sys.argv[1], "samples")  # as `radiodiff sample` does before it samples
print("holding", flush=True)
time.sleep(120)
"""


def test_second_writer_is_refused_naming_the_first_ones_pid(tiny, tmp_path, capsys,
                                                            monkeypatch):
    out = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], env=env,
                            stdout=subprocess.PIPE, text=True)
    with proc.stdout:
        try:
            assert proc.stdout.readline().strip() == "holding"
            with monkeypatch.context() as m:
                import radiodiff.pipeline.generate as gen
                m.setattr(gen, "generate", lambda *a, **k: pytest.fail("sampled"))
                assert sample(tiny, out) == 2  # refused before the compute
                line = one_line(capsys.readouterr().err)
                assert f"pid {proc.pid}" in line and str(out) in line
                with pytest.raises(OutputError, match=f"pid {proc.pid}"):
                    with artifact_dir(out, "samples", overwrite=True):
                        pass
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert [p.name for p in tmp_path.iterdir()] == [".rdlock-s"]  # a dead run's lock
    assert sample(tiny, out) == 0  # taken over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_premade_lock_of_a_live_process(tiny, tmp_path, capsys, no_compute):
    out = tmp_path / "s"
    (tmp_path / ".rdlock-s").write_text(f"{os.getppid()}\n")  # pytest's parent: alive
    assert sample(tiny, out) == 2
    line = one_line(capsys.readouterr().err)
    assert f"pid {os.getppid()}" in line and "another radiodiff run" in line
    assert (tmp_path / ".rdlock-s").read_text() == f"{os.getppid()}\n" and not out.exists()


def test_two_threads_writing_one_output(tmp_path):
    out, inside, leave = tmp_path / "r", threading.Event(), threading.Event()

    def first():
        with artifact_dir(out, "report") as tmp:
            (tmp / "metrics.json").write_text("{}")
            inside.set()
            leave.wait(30)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
            with artifact_dir(out, "report", overwrite=True) as tmp:
                (tmp / "metrics.json").write_text('{"second": 1}')
    finally:
        leave.set()
        t.join(30)
    assert (out / "metrics.json").read_text() == "{}"  # the first one's, not replaced
    assert sorted(os.listdir(tmp_path)) == ["r"]


def test_a_failed_command_gives_its_lock_back(tiny, tmp_path, capsys, monkeypatch):
    import radiodiff.pipeline.generate as gen

    def broken(*a, **k):
        raise ValueError("no such condition")
    monkeypatch.setattr(gen, "generate", broken)
    assert sample(tiny, tmp_path / "s") == 2  # checked (locked), then failed
    assert os.listdir(tmp_path) == [] and not artifacts._HELD


def test_prepare_onto_a_file_another_run_is_writing(tmp_path, capsys):
    out = tmp_path / "first.h5"
    (tmp_path / ".rdlock-first.h5").write_text(f"{os.getppid()}\n")
    assert main(["prepare", "data=first", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and f"pid {os.getppid()}" in line and not out.exists()
