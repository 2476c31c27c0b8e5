"""The code version recorded with every artifact: radiodiff's own commit, marked dirty, or
None (never another repository's commit)."""

import re
import subprocess

import pytest

from radiodiff.io import provenance
from radiodiff.io.provenance import git_commit


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A repository holding a radiodiff-like source tree at ``tmp_path/repo``."""
    root = tmp_path / "repo"
    (root / "src" / "radiodiff").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'radiodiff'\n")
    (root / "src" / "radiodiff" / "x.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q", str(root))
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    monkeypatch.setattr(provenance, "_ROOT", root)
    return root


def test_the_commit_and_a_dirty_tree(tree):
    head = _git(tree, "rev-parse", "HEAD")
    assert git_commit() == head
    (tree / "src" / "radiodiff" / "x.py").write_text("x = 2\n")  # uncommitted change
    assert git_commit() == f"{head}-dirty"
    _git(tree, "tag", "v1")  # tags are not names: still the full hash
    assert git_commit() == f"{head}-dirty"


def test_another_repository_is_not_radiodiffs(tree, tmp_path, monkeypatch):
    """radiodiff copied (vendored, or installed into a venv) inside another repository:
    that repository's commit says nothing about radiodiff's code (before: it was recorded)."""
    inner = tree / "vendor" / "radiodiff_copy"
    (inner / "src" / "radiodiff").mkdir(parents=True)
    (inner / "pyproject.toml").write_text("")
    monkeypatch.setattr(provenance, "_ROOT", inner)
    assert git_commit() is None
    monkeypatch.setattr(provenance, "_ROOT", tmp_path / "nothing")  # no source tree at all
    assert git_commit() is None


def test_this_checkout():
    value = git_commit()
    assert value is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", value)
