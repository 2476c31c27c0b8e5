"""bench/ is thin: its scripts call public library functions only (issue 25, item 5) — no
script imports another (nor through sys.path), none reads a release's meta.json itself or
takes a private name from the package, and none names a run on a train.py command line
(``train.run_name=``: an ablation's arms are conf/experiment/ files)."""

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


def test_the_ablation_row_carries_what_a_model_card_quotes():
    import importlib.util
    spec = importlib.util.spec_from_file_location("ablation_capacity",
                                                  BENCH / "ablation_capacity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checks = {"rms_ratio_deviation": {"value": 0.06, "floor": 0.03, "target": "≤ 0.1",
                                      "pass": True}}
    m = {"real_vs_fake": {"mean_accuracy": 0.6, "std_accuracy": 0.05},
         "real_vs_fake_faint": {"mean_accuracy": 0.55},
         "background": {"fake": {"zero": 0.49}, "real": {"zero": 0.5}},
         "conditioning": {"las_arcsec": {"iqr_log_ratio": 0.63, "real": {"iqr_log_ratio": 0.58},
                                         "paired": {"fraction_within": 0.4,
                                                    "real": {"fraction_within": 0.6}}}},
         "morphology": {"ks_ratio": {"all/las": 0.8, "FRI/las": float("nan")},
                        "worst": ["all/las"], "within_1.5": 1, "n": 2},
         "class_fidelity": {"fidelity_ratio": 0.7}, "physical": {"checks": checks}}
    r = module.row("arm", m)
    assert r["class_fidelity"] == 0.7 and r["physical_checks"] == checks
    assert (r["real_vs_fake_std"], r["real_vs_fake_faint_std"]) == (0.05, None)
    assert r["ks_ratio"] == {"all/las": 0.8, "FRI/las": None}  # NaN is no number in JSON
    assert (r["las_within_20"], r["las_within_20_floor"], r["las_iqr_log_ratio_floor"]) == (
        0.4, 0.6, 0.58)
    bare = module.row("real", {**m, "class_fidelity": None, "physical": None})
    assert bare["class_fidelity"] is None and bare["physical_checks"] is None
    assert "| arm |" in module.table([r]) and "1/2" in module.table([r])
