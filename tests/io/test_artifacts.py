"""Figures through the one helper pair: new_figure (Agg, no pyplot) and save_figure (atomic);
the mode of written files; the caches' read-or-compute rule."""

import os
import stat
import sys

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from radiodiff.io import artifacts
from radiodiff.io.artifacts import atomic_write, new_figure, save_figure


def test_new_figure_is_an_agg_figure_of_that_size():
    pyplot = sys.modules.get("matplotlib.pyplot")
    before = pyplot.get_fignums() if pyplot else None
    fig = new_figure((2.0, 1.5), dpi=50)
    assert isinstance(fig.canvas, FigureCanvasAgg)
    assert tuple(fig.get_size_inches()) == (2.0, 1.5) and fig.dpi == 50
    assert new_figure((1, 1)).dpi > 0  # matplotlib's default
    # pyplot's figure manager never hears of it (nor is pyplot imported for it)
    assert (pyplot.get_fignums() == before) if pyplot else \
        "matplotlib.pyplot" not in sys.modules


def test_save_figure_writes_the_png_and_passes_savefig_options(tmp_path):
    fig = new_figure((2.0, 1.0), dpi=100)
    fig.add_subplot().plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "f.png", dpi=40)
    assert path == tmp_path / "sub" / "f.png"
    assert imread(path).shape[:2] == (40, 80)  # savefig's dpi, not the figure's
    other = save_figure(fig, tmp_path / "g.img", format="png")
    assert other.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.img", "sub"]


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f.png"
    path.write_bytes(b"old")
    fig = new_figure((1.0, 1.0))

    def broken(fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_written_files_get_the_umask_mode_without_touching_the_umask(tmp_path, monkeypatch):
    """The umask is read once at import: changing it for a moment to read it (as before, at
    every write) is not thread-safe, another thread's files would get the wrong mode."""
    def no_umask(mask):
        raise AssertionError("os.umask called while writing")
    monkeypatch.setattr(artifacts.os, "umask", no_umask)
    def write(tmp):
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))  # as safetensors does
    path = atomic_write(tmp_path / "w.bin", write)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~artifacts._UMASK  # not 0600


def test_read_or_compute_reads_heals_and_only_writes_whole_files(tmp_path, caplog):
    from radiodiff.io.artifacts import read_or_compute
    calls = []

    def compute():
        calls.append(1)
        return "value"

    def read(p):
        text = p.read_text()
        if text != "value":
            raise ValueError(f"holds {text!r}")
        return text

    def write(tmp, value):
        tmp.write_text(value)
    path = tmp_path / "c" / "cache.txt"
    assert read_or_compute(None, "test", read, compute, write) == ("value", False)
    assert not (tmp_path / "c").exists()
    assert read_or_compute(path, "test", read, compute, write) == ("value", False)
    assert read_or_compute(path, "test", read, compute, write) == ("value", True)
    assert len(calls) == 2
    path.write_text("damaged")
    with caplog.at_level("WARNING"):
        assert read_or_compute(path, "test", read, compute, write) == ("value", False)
    assert f"test cache {path} does not read (holds 'damaged')" in caplog.text
    assert path.read_text() == "value" and len(calls) == 3
    # an error the caller did not declare is a bug, not a damaged cache: it propagates
    with pytest.raises(KeyError):
        read_or_compute(path, "test", lambda p: {}["x"], compute, write)
    # a failed computation leaves the old file and no temporary
    path.write_text("damaged")
    with pytest.raises(ZeroDivisionError):
        read_or_compute(path, "test", read, lambda: 1 / 0, write)
    assert path.read_text() == "damaged" and [p.name for p in path.parent.iterdir()] == \
        ["cache.txt"]


def test_a_durable_write_also_flushes_the_rename(tmp_path, monkeypatch):
    from radiodiff.io import artifacts
    flushed = []
    monkeypatch.setattr(artifacts, "_fsync_dir", flushed.append)
    artifacts.atomic_write(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"x"), fsync=True)
    artifacts.atomic_write(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"x"))
    assert flushed == [tmp_path] and (tmp_path / "a.bin").read_bytes() == b"x"
    monkeypatch.undo()
    artifacts._fsync_dir(tmp_path)  # the real one runs (and a missing folder is no error)
    artifacts._fsync_dir(tmp_path / "missing")
