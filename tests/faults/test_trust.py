"""Release trust (issue 27, item 5): the shipped models' hashes are recorded in the package;
`radiodiff verify` says OK / modified / unknown, and loading a release that cannot be vouched
for logs one warning line (no refusal). A release whose weights were replaced by noise and
whose SHA256SUMS was recomputed used to load and sample without a word. A copy is known by
its weights alone; a release this process exported itself is not reported."""

import json
import logging
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from helpers.releases import tiny_release
from radiodiff.cli import main
from radiodiff.io.release_files import WEIGHTS_FILE, models_dir, seal_release
from radiodiff.pipeline.release import load_release
from radiodiff.io.trust import (TRUSTED_FILE, record_trusted_releases, trusted_releases,
                                verify_release)

TRUST_LOGGER = "radiodiff.io.trust"


def test_recorded_hashes_are_the_shipped_models(tmp_path):
    """Re-exporting a shipped model must update src/radiodiff/trusted_releases.json
    (python -m radiodiff.io.trust): until then this fails."""
    recorded = trusted_releases()
    shipped = sorted(p.name for p in models_dir().iterdir() if (p / WEIGHTS_FILE).is_file())
    assert shipped and set(shipped) <= set(recorded)
    for name in recorded:
        report = verify_release(models_dir() / name)
        assert report.status == "ok" and report.name == name, report.line()
    again = record_trusted_releases(out=tmp_path / "record.json")
    assert json.loads(again.read_text())["releases"] == recorded
    assert TRUSTED_FILE.parent.name == "radiodiff"  # ships inside the package


def _noise_weights(folder):
    """Replace the weights by noise of the same shapes and re-seal SHA256SUMS."""
    with safe_open(str(folder / WEIGHTS_FILE), "pt") as f:
        metadata = f.metadata()
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=g).to(v.dtype) if v.is_floating_point() else v
             for k, v in load_file(folder / WEIGHTS_FILE).items()}
    save_file(state, folder / WEIGHTS_FILE, metadata=metadata)
    seal_release(folder)


def _trust_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == TRUST_LOGGER]


def test_noise_weights_load_with_one_warning_and_verify_says_so(tmp_path, caplog, capsys):
    copy = shutil.copytree(models_dir() / "first", tmp_path / "first")
    _noise_weights(copy)
    with caplog.at_level(logging.WARNING, logger=TRUST_LOGGER):
        release = load_release(copy)  # loads: SHA256SUMS matches, no refusal
        load_release(copy)            # once per folder in a process
    assert release.refiner is not None
    lines = _trust_lines(caplog)
    assert len(lines) == 1, lines  # the base only: its refiner/ is vouched for with it
    assert "UNKNOWN release" in lines[0] and "cannot be vouched for" in lines[0]
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"{copy}: UNKNOWN")


def test_a_copy_is_known_by_its_weights(tmp_path, capsys):
    """The shipped weights with another meta.json: a MODIFIED copy, whatever its name; a
    release of one's own named after a shipped one: UNKNOWN (before: a MODIFIED copy)."""
    copy = shutil.copytree(models_dir() / "mirabest", tmp_path / "mine")
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "note": "edited"}))
    seal_release(copy)
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"{copy}: MODIFIED copy of the shipped "
                                               "release 'mirabest' (meta.json differ")
    own = tiny_release(tmp_path / "first", ["A", "B"])
    assert verify_release(own).status == "unknown", verify_release(own).line()


def test_verify_of_a_folder_that_is_not_a_release(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{tmp_path}: not a release folder (no meta.json/model.safetensors)"]


def test_a_release_exported_by_this_process_is_not_reported(tmp_path, caplog):
    """E.g. `evaluate --model last.ckpt` exports the checkpoint to a temporary folder and
    loads it: the user's own model, nothing to warn about (before: an UNKNOWN release line
    on every evaluation of a checkpoint); the same release elsewhere is reported."""
    mine = tiny_release(tmp_path / "report" / "release", ["A", "B"])
    copy = shutil.copytree(mine, tmp_path / "elsewhere")
    with caplog.at_level(logging.WARNING, logger=TRUST_LOGGER):
        load_release(mine)
        assert _trust_lines(caplog) == []
        load_release(copy)
    lines = _trust_lines(caplog)
    assert len(lines) == 1 and str(copy) in lines[0] and "UNKNOWN release" in lines[0]


def test_unknown_release_and_the_shipped_ones(tmp_path, caplog, capsys):
    # another process's release (one exported here is the user's own: not reported)
    tiny = shutil.copytree(tiny_release(tmp_path / "made", ["A", "B"]), tmp_path / "tiny")
    with caplog.at_level(logging.WARNING, logger=TRUST_LOGGER):
        load_release(tiny)
        load_release(models_dir() / "mirabest")
    lines = _trust_lines(caplog)
    assert len(lines) == 1 and "UNKNOWN release" in lines[0] and str(tiny) in lines[0]
    assert main(["verify", str(tiny)]) == 1
    assert "UNKNOWN release, not one of the shipped releases (first" in capsys.readouterr().out
    for name in ("mirabest", "first"):
        assert main(["verify", name]) == 0
        assert f"OK, the shipped release {name!r} unchanged" in capsys.readouterr().out


def test_a_renamed_file_set_is_modified_not_ok(tmp_path):
    """Dropping a file (the training conditions) is a modification too."""
    copy = shutil.copytree(models_dir() / "mirabest", tmp_path / "mb")
    (copy / "train_conditions.csv").unlink()
    report = verify_release(copy)
    assert report.status == "modified" and report.differing == ("train_conditions.csv",)


def test_the_record_command_help_writes_nothing(tmp_path, capsys, monkeypatch):
    import pytest
    from radiodiff.io import trust
    written = []
    monkeypatch.setattr(trust, "record_trusted_releases", lambda models=None: written.append(
        models) or tmp_path / "record.json")
    with pytest.raises(SystemExit) as e:
        trust.main(["--help"])
    assert e.value.code == 0 and "--models" in capsys.readouterr().out and written == []
    trust.main(["--models", str(tmp_path)])
    assert written == [str(tmp_path)] and "wrote" in capsys.readouterr().out
