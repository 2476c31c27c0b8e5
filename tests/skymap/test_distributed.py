"""``radiodiff skymap --devices N``: the shards under Lightning's predict loop (DDP on CPU)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from helpers.launch import held_lock, run_external_ranks
from radiodiff.cli import main
from radiodiff.skymap.build import build_skymap, merge_shards
from radiodiff.skymap.config import load_skymap_config
from radiodiff.skymap.distributed import ShardIndices

REPO = Path(__file__).resolve().parents[2]


def _overrides(tmp_path, release_dir):
    (tmp_path / "c.csv").write_text("ra,dec,flux,las,class,pa,q\n"
                                    "150.0,30.0,0.05,30,FRII,10,\n"
                                    "150.01,29.985,0.02,40,FRI,,\n"
                                    "149.99,30.0167,0.004,8,,35,0.4\n"
                                    "150.02,30.02,0.002,0,,,\n")
    return ["sky.size_deg=[0.06,0.06]", f"sources.catalog={tmp_path / 'c.csv'}",
            f"render.model={release_dir}", "render.steps=2", "render.batch_size=3", "seed=4"]


@pytest.mark.slow
def test_ddp_two_cpu_processes_give_the_single_process_map(tmp_path, busy_release_dir):
    overrides = _overrides(tmp_path, busy_release_dir)
    single = build_skymap(load_skymap_config("first", overrides), tmp_path / "one")["paths"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "radiodiff.cli", "skymap", *overrides,
                           "--devices", "2", "--accelerator", "cpu", "--out",
                           str(tmp_path / "ddp")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("4 sources on a 120 x 120 px map") == 1  # rank 0 reports
    assert "litlogger" not in proc.stdout + proc.stderr  # Lightning's advertisement dropped
    assert sorted(p.name for p in (tmp_path / "ddp" / "shards").iterdir()) == [
        "shard-0-of-2.fits", "shard-1-of-2.fits", "skymap_config.yaml"]  # the merge's config
    assert str(tmp_path) not in (tmp_path / "ddp" / "skymap_config.yaml").read_text()
    for key in ("map", "model"):
        a, b = fits.getdata(single[key]), fits.getdata(tmp_path / "ddp" / single[key].name)
        assert a.tobytes() == b.tobytes()
    ta, tb = Table.read(single["truth"]), Table.read(tmp_path / "ddp" / "truth.fits")
    assert all(np.array_equal(ta[c], tb[c]) for c in ta.colnames)


def test_shard_indices():
    assert [ShardIndices(3)[k] for k in range(len(ShardIndices(3)))] == [0, 1, 2]


@pytest.mark.parametrize("argv, match", [
    (["--devices", "0"], "--devices must be a count >= 1, -1 .all. or auto, got '0'"),
    (["--devices", "2", "--shard", "0/2"], "--devices renders every shard of the map"),
    (["--accelerator", "cpu"], "--accelerator: only with --devices N"),
    (["--merge", "--devices", "2"], "--merge takes only --out"),
])
def test_devices_options_are_checked(tmp_path, capsys, argv, match):
    overrides = [] if "--merge" in argv else ["sky.size_deg=[0.05,0.05]"]
    rc = main(["skymap", *overrides, "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and re.search(match, err), err


def test_fewer_shards_than_processes_is_refused_before_any_rendering(tmp_path):
    from radiodiff.skymap.distributed import build_skymap_on_devices
    cfg = load_skymap_config("first", ["sky.size_deg=[0.02,0.02]"])
    with pytest.raises(ValueError, match="fewer than the 2 processes"):
        build_skymap_on_devices(cfg, tmp_path / "m", devices=2, accelerator="cpu",
                                strategy="ddp", shards=1)
    assert not (tmp_path / "m" / "shards").exists()


def test_a_merged_map_is_refused_before_any_shard_is_rendered(tmp_path, capsys, monkeypatch):
    """Without --overwrite, ``--shard K/N`` and ``--devices N`` refuse a folder that holds a
    map before rendering anything, in the single run's line, and leave its files as they
    were; with --overwrite a shard is rendered and merged as before."""
    import lightning.pytorch as L

    import radiodiff.skymap.build as build

    out, size = tmp_path / "m", "sky.size_deg=[0.02,0.02]"
    assert main(["skymap", size, "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    single = fits.getdata(out / "map.fits")
    capsys.readouterr()

    def rendered(*args, **kwargs):
        raise AssertionError("rendered before the refusal")

    with monkeypatch.context() as m:
        m.setattr(build, "render_rows", rendered)
        m.setattr(L.Trainer, "predict", rendered)
        errs = []
        for argv in ([], ["--shard", "1/2"], ["--devices", "2", "--accelerator", "cpu"]):
            assert main(["skymap", size, "--out", str(out), *argv]) == 2, argv
            errs.append(capsys.readouterr().err.strip())
    assert errs == [f"radiodiff skymap: error: {out}: is already a skymap folder; give "
                    "--overwrite to replace it"] * 3
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    cfg = load_skymap_config("first", [size])
    build_skymap(cfg, out, shard=(0, 1), overwrite=True)
    merged = merge_shards(out, overwrite=True)["paths"]
    assert fits.getdata(merged["map"]).tobytes() == single.tobytes()


def test_a_shard_run_leaves_other_files_to_the_merge(tmp_path):
    """A shard run refuses a file, a folder holding a file the merge would replace that is
    not a sky map's, and, without --overwrite, a merged map: a scheduler's log in the
    folder (written before the job starts) does not stop it."""
    from radiodiff.io.artifacts import OutputError
    from radiodiff.skymap.build import check_shard_output

    out = tmp_path / "m"
    out.mkdir()
    (out / "slurm-1234_0.out").write_text("job log\n")
    assert check_shard_output(out) == out
    (out / "model.fits").write_bytes(b"theirs")  # a name the merge writes, not a map's
    with pytest.raises(OutputError, match=r"holds model\.fits but is not a skymap folder"):
        check_shard_output(out, overwrite=True)
    (out / "skymap_config.yaml").write_text("seed: 0\n")  # a sky map's: the merge's to replace
    assert check_shard_output(out) == out
    (out / "map.fits").write_bytes(b"")
    with pytest.raises(OutputError, match="already a skymap folder; give --overwrite"):
        check_shard_output(out)
    assert check_shard_output(out, overwrite=True) == out
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        check_shard_output(tmp_path / "f")
    assert not list(tmp_path.glob(".rdlock-*")) and not list(out.glob(".rdlock-*"))  # no lock


@pytest.mark.slow
def test_a_map_being_written_is_refused_on_every_externally_launched_rank(tmp_path):
    """``--devices`` under torchrun / srun: a second run's refusal (another run writes the
    folder) reaches every rank instead of leaving rank 1 waiting for a rank 0 that has gone;
    with Lightning's own launcher, rank 0 refuses before starting the others."""
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "radiodiff.cli", "skymap", "sky.size_deg=[0.02,0.02]",
           "--devices", "2", "--accelerator", "cpu", "--out", str(out)]
    with held_lock(out) as holder:
        ranks = run_external_ranks(cmd, cwd=REPO)
        env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR",
                                                                "RADIODIFF_DEBUG")}
        own = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                             env=dict(env, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE"))
    line = (f"radiodiff skymap: error: {out}: being written by another radiodiff run "
            f"(pid {holder.pid}); wait for it")
    assert "Initializing distributed" in ranks[0][1]  # refused once the process group exists
    for rc, err in [*ranks, (own.returncode, own.stderr)]:
        assert rc == 2 and err.strip().splitlines()[-1].startswith(line), err[-3000:]
    assert own.stderr.count("radiodiff skymap: error:") == 1, own.stderr[-3000:]
    assert "Initializing distributed" not in own.stderr  # refused before starting rank 1
    assert not out.exists()
