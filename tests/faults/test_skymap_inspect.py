"""``radiodiff skymap`` and ``radiodiff inspect`` write their folders as every other writer
does (issue 27): whole and atomically, one writer at a time (a second one is refused in one
line naming the first one's pid, before any work), their own files listed in
``SHA256SUMS`` so that ``--overwrite`` replaces those only, an earlier output refused
without ``--overwrite``, and no temporaries left. Before: both wrote file by file into any
folder, silently over an earlier output, and two runs could write one folder at once."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers.outputs import SRC, hashes, one_line, temps
from radiodiff.cli import main
from radiodiff.io.integrity import read_manifest

_MAP_FILES = ["map.fits", "model.fits", "preview.png", "provenance.json",
              "skymap_config.yaml", "truth.fits"]


def _skymap(tmp_path, out, *extra, seed=1):
    """A Gaussians-only 36 x 36 px FIRST map of two sources; the exit status."""
    cat = tmp_path / "cat.csv"
    cat.write_text("ra,dec,flux,las\n150.0,30.0,0.01,0\n150.005,30.003,0.004,6\n")
    return main(["skymap", "sky.size_deg=[0.018,0.018]", f"sources.catalog={cat}",
                 f"seed={seed}", "--out", str(out), *extra])


@pytest.fixture
def prepared(tmp_path):
    """A prepared file of four clean 8 x 8 images of one class."""
    from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, write_prepared

    n = 4
    cols = {name: np.linspace(1.0, 2.0, n) for name in FLOAT_COLUMNS}
    cols.update(label=np.zeros(n, np.int16), split=np.asarray(["train"] * n, dtype=object),
                source_id=np.asarray([f"J{i:04d}" for i in range(n)], dtype=object),
                flags=np.zeros(n, np.uint8), beam_arcsec=np.full((n, 2), 5.0))
    images = np.random.default_rng(0).random((n, 1, 8, 8)).astype(np.float32)
    attrs = {"name": "toy", "classes": ["FRI"], "data_sha256": data_sha256(images, cols)}
    return write_prepared(tmp_path / "toy.h5", images, cols, attrs)


def _inspect(prepared, out, *extra):
    return main(["inspect", str(prepared), "--out", str(out), "--n-per-class", "2", *extra])


def _users_files(out):
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "grid_FRI.png").write_bytes(b"my own plot")
    return {k: v for k, v in hashes(out).items() if k.startswith(("notes", "mine"))}


# --------------------------------------------------------------------------- --overwrite

def test_skymap_overwrite_replaces_its_own_files_only(tmp_path, capsys):
    out = tmp_path / "m"
    assert _skymap(tmp_path, out) == 0
    assert sorted(read_manifest(out)) == _MAP_FILES
    assert not temps(tmp_path)
    users = _users_files(out)
    (out / "evaluation").mkdir()  # evaluate-map's default report folder
    (out / "evaluation" / "evaluation.json").write_text("{}")
    users["evaluation/evaluation.json"] = hashes(out)["evaluation/evaluation.json"]
    before = hashes(out)
    capsys.readouterr()
    assert _skymap(tmp_path, out, seed=2) == 2  # an earlier map: refused
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "--overwrite" in line
    assert hashes(out) == before
    assert _skymap(tmp_path, out, "--overwrite", seed=2) == 0
    after = hashes(out)
    assert {k: after.get(k) for k in users} == users  # the user's files, byte for byte
    assert after["map.fits"] != before["map.fits"]  # the new map
    assert sorted(read_manifest(out)) == _MAP_FILES
    assert sorted(os.listdir(out)) == sorted(["SHA256SUMS", "evaluation", "mine", "notes.txt",
                                              *_MAP_FILES])
    assert not temps(tmp_path)


def test_skymap_refuses_a_folder_that_is_not_a_map(tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "map.fits").write_bytes(b"the user's own map")
    assert _skymap(tmp_path, out, "--overwrite") == 2
    assert "not a skymap folder" in one_line(capsys.readouterr().err)
    assert os.listdir(out) == ["map.fits"] and not temps(tmp_path)


def test_merge_completes_the_shards_folder_and_keeps_the_shards(tmp_path, capsys):
    out = tmp_path / "m"
    for k in (1, 0):
        assert _skymap(tmp_path, out, "--shard", f"{k}/2") == 0
    shards = {k: v for k, v in hashes(out).items() if k.startswith("shards/")}
    assert main(["skymap", "--merge", "--out", str(out)]) == 0  # first merge: no --overwrite
    assert sorted(read_manifest(out)) == _MAP_FILES
    assert {k: v for k, v in hashes(out).items() if k.startswith("shards/")} == shards
    capsys.readouterr()
    assert main(["skymap", "--merge", "--out", str(out)]) == 2  # a merged map is there
    assert "--overwrite" in one_line(capsys.readouterr().err)
    assert main(["skymap", "--merge", "--out", str(out), "--overwrite"]) == 0
    assert not temps(tmp_path)


def test_inspect_overwrite_replaces_its_own_files_only(prepared, tmp_path, capsys):
    out = tmp_path / "i"
    assert _inspect(prepared, out) == 0
    assert sorted(read_manifest(out)) == ["grid_FRI.png", "summary.json", "summary.txt"]
    assert not temps(tmp_path)
    users = _users_files(out)
    before = hashes(out)
    capsys.readouterr()
    assert _inspect(prepared, out, "--seed", "3") == 2  # an earlier inspect folder: refused
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "--overwrite" in line and hashes(out) == before
    assert _inspect(prepared, out, "--seed", "3", "--overwrite") == 0
    after = hashes(out)
    assert {k: after.get(k) for k in users} == users
    assert sorted(os.listdir(out)) == ["SHA256SUMS", "grid_FRI.png", "mine", "notes.txt",
                                       "summary.json", "summary.txt"]
    assert not temps(tmp_path)


# --------------------------------------------------------------------------- one writer

_HOLDER = """
import sys, time
from radiodiff.io.artifacts import check_output
from radiodiff.skymap.build import check_map_output
check_map_output(sys.argv[1])  # as `radiodiff skymap` does before it renders
check_output(sys.argv[2], "inspect")  # as `radiodiff inspect` does before it reads
print("holding", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_naming_the_first_ones_pid(prepared, tmp_path, capsys,
                                                               monkeypatch):
    import radiodiff.data.summary as summary_mod
    import radiodiff.skymap.build as build_mod

    sky, ins = tmp_path / "m", tmp_path / "i"
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(sky), str(ins)], env=env,
                            stdout=subprocess.PIPE, text=True)
    with proc.stdout:
        try:
            assert proc.stdout.readline().strip() == "holding"
            with monkeypatch.context() as m:  # refused before any work
                m.setattr(build_mod, "plan_skymap", lambda *a: pytest.fail("rendered"))
                m.setattr(summary_mod, "summarize", lambda *a: pytest.fail("read"))
                for run in (lambda: _skymap(tmp_path, sky, "--overwrite"),
                            lambda: _inspect(prepared, ins, "--overwrite")):
                    assert run() == 2
                    line = one_line(capsys.readouterr().err)
                    assert f"pid {proc.pid}" in line and "another radiodiff run" in line
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert not sky.exists() and not ins.exists()
    assert _skymap(tmp_path, sky) == 0 and _inspect(prepared, ins) == 0  # locks taken over
    assert not temps(tmp_path)
