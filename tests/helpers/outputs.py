"""What the fault tests check about outputs: file hashes, temporaries left behind, the one
error line of a command, and a tiny `radiodiff sample` run."""

import hashlib
from pathlib import Path

import radiodiff
from radiodiff.cli import main

SRC = str(Path(radiodiff.__file__).resolve().parents[1])  # PYTHONPATH of subprocesses
CLASSES = ["blob", "double"]  # the classes of the fault tests' tiny release and checkpoint


def hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (or of ``root`` itself), by relative path."""
    root = Path(root)
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def temps(folder: Path) -> list[str]:
    """Temporaries and locks (.rdtmp-/.rdold-/.rdlock-) anywhere under ``folder``."""
    return [str(p) for p in Path(folder).rglob(".rd*")]


def one_line(err: str) -> str:
    """The one error line of a command (progress lines aside), no traceback."""
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("sampled ")]
    assert len(lines) == 1 and " error: " in lines[0], err
    return lines[0]


def sample(model, out, *extra):
    """``radiodiff sample`` of 2 images in 2 steps; its exit status."""
    return main(["sample", "--model", str(model), "--n", "2", "--steps", "2",
                 "--out", str(out), *extra])
