"""bench/ is thin: its scripts call public library functions only (issue 25, item 5) — no
script imports another (nor through sys.path), none reads a release's meta.json itself or
takes a private name from the package, and none builds a train.py override list (an
ablation's arms are conf/experiment/ files)."""

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, alias.name.rsplit(".", 1)[-1]
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                yield node.module or "", alias.name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_bench_script_uses_public_library_functions_only(script):
    text = script.read_text()
    tree = ast.parse(text)
    stems = {p.stem for p in SCRIPTS}
    for module, name in _imports(tree):
        assert module.split(".")[0] not in stems, (module, name)  # another script
        if module.startswith("radiodiff"):
            assert not name.startswith("_"), f"private {module}.{name}"
    assert "sys.path" not in text
    assert '"meta.json"' not in text and "META_FILE).read" not in text
    assert "train.run_name=" not in text  # arms are Hydra experiments
