"""The package's layers and the absence of import cycles (``[tool.importlinter]`` in
pyproject.toml): entry point > training, skymap > evaluation > pipeline > diffusion, data >
io, config, seeds, progress, each importing only downwards, and no cycle between packages
or between the files of one. Function-level imports count (import-linter's graph has them).
A scratch copy with one upward import and one file cycle shows the check can fail."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
# lint-imports (import-linter's command) from this interpreter: it parses the files, it
# imports none of them.
LINT = ("import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())")


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The contracts of pyproject.toml checked on the ``radiodiff`` package under ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run([sys.executable, "-c", LINT, str(REPO / "pyproject.toml"),
                           "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_layers_are_kept_and_no_import_cycle(tmp_path):
    run = lint_imports(SRC, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 kept, 0 broken" in run.stdout


def test_an_upward_import_and_a_file_cycle_break_the_contracts(tmp_path):
    copy = tmp_path / "src" / "radiodiff"
    shutil.copytree(SRC / "radiodiff", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "io" / "text.py", "a", encoding="utf-8") as f:  # io -> training
        f.write("\n\ndef _upward():\n    import radiodiff.training  # noqa\n")
    with open(copy / "data" / "preprocess.py", "a", encoding="utf-8") as f:  # islands <->
        f.write("\n\ndef _cycle():\n    from radiodiff.data import islands  # noqa\n")
    run = lint_imports(tmp_path / "src", tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "0 kept, 2 broken" in out, out
    assert "radiodiff.io.text -> radiodiff.training" in out, out
    assert "No cycles are allowed in radiodiff.data" in out and ".preprocess -> .islands" in out
