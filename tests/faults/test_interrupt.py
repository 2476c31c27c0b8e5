"""Ctrl-C (issue 27, item 6): one line saying what was kept, exit code 130, no traceback
(before: a 38-73-line traceback from `prepare` or `sample`)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import synth
from helpers.releases import tiny_release
from radiodiff import cli
from radiodiff.cli import main
from radiodiff.data import prepare as prepare_mod
from radiodiff.io import fits as fits_mod

SRC = Path(__file__).resolve().parents[2] / "src"


def _interrupt_on(module, name, monkeypatch, after=0):
    """Make ``module.name`` raise KeyboardInterrupt on its call number ``after`` + 1."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapped)


def _one_line(capsys) -> str:
    """The last stderr line; any before it are progress lines ("sampled 1/1 images ...")."""
    err = capsys.readouterr().err.strip().splitlines()
    assert all(re.match(r"^[\w ]+ \d+/\d+ \w+", line) for line in err[:-1]), err
    return err[-1]


@pytest.fixture()
def release_dir(tmp_path):
    return tiny_release(tmp_path / "rel", ["FRI", "FRII"])


def test_sample_interrupted_while_writing(release_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "samples"
    _interrupt_on(fits_mod, "write_hdu", monkeypatch, after=1)  # during the second FITS
    assert main(["sample", "--model", str(release_dir), "--n", "3", "--steps", "2",
                 "--out", str(out)]) == 130
    assert _one_line(capsys) == ("radiodiff sample: interrupted; nothing written (an earlier "
                                 "output there is left as it was)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]  # no folder, no temporary


def test_prepare_interrupted_mid_way(tmp_path, capsys, monkeypatch):
    fx = synth.write_mirabest_like(tmp_path / "mb", n=2, seed=1, compressed=False)
    _interrupt_on(prepare_mod, "_process", monkeypatch, after=1)
    out = tmp_path / "out" / "x.h5"
    assert main(["prepare", "data=mirabest", f"data.fields_dir={fx['root']}",
                 f"data.catalog={fx['catalog']}", "--out", str(out)]) == 130
    assert _one_line(capsys).startswith("radiodiff prepare: interrupted; nothing written")
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_file_by_file_writers_say_what_is_kept():
    assert cli.interrupted_line("skymap").endswith(
        "files finished before it are kept, each whole (none half-written)")
    assert "nothing written" in cli.interrupted_line("evaluate-map")  # a folder writer now
    assert "nothing written" in cli.interrupted_line("export")
    assert "nothing written" in cli.interrupted_line("inspect")  # a folder writer now


def test_debug_still_shows_the_traceback(release_dir, tmp_path, monkeypatch):
    _interrupt_on(fits_mod, "write_hdu", monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "sample", "--model", str(release_dir), "--n", "1", "--steps", "2",
              "--out", str(tmp_path / "o")])


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C as a fresh shell gives it (default disposition,
    unblocked). A signal disposition of SIG_IGN or a blocked SIGINT is inherited across
    exec, and in the full suite something before this test leaves one of them (not seen by
    the Python-level handler check in conftest): the child then cannot be interrupted."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_sigint_to_a_running_sample(release_dir, tmp_path):
    """A real Ctrl-C (SIGINT) to `radiodiff sample` in a subprocess, mid-sampling."""
    out = tmp_path / "o"
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from radiodiff.cli import main; sys.exit(main())",
         "sample", "--model", str(release_dir), "--n", "100", "--steps", "40",
         "--batch-size", "1", "--out", str(out)],
        env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        lines = []  # the release's trust warning, then progress: sampling is under way
        while not (lines and lines[-1].startswith("sampled ")):
            line = proc.stderr.readline()
            assert line, lines
            lines.append(line)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        err = "".join(lines) + proc.stderr.read()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert code == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("radiodiff sample: interrupted; nothing written "
                                            "(an earlier output there is left as it was)")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["rel"]
