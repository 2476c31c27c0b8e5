"""The report: metrics.json is EvalResult.to_dict(); the title names a checkpoint or a release."""

import json

import pytest

from helpers import synth
from helpers.releases import tiny_release

from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.evaluation.metrics import EvalSettings, run_evaluation
from radiodiff.evaluation.sets import Compared

FAST = EvalSettings(classifier_epochs=1, rvf_folds=2, rvf_epochs=1, sourcefinder=False,
                    n_repeats=2)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("report") / "set.h5")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_release(tmp_path_factory.mktemp("rel") / "tiny", ["blob", "double"])


def _title(paths) -> str:
    return paths["report.md"].read_text().splitlines()[0]


def test_title_says_release_or_checkpoint(prepared, tiny, tmp_path, monkeypatch):
    import radiodiff.training.export as export
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    compared = Compared(model=tiny, n=4, spec=SamplerSpec(steps=2))
    result, paths = run_evaluation(prepared, compared, tmp_path / "a", "test", settings)
    assert _title(paths) == "# radiodiff evaluation: generated (release tiny, heun 2) vs real test"
    data = json.loads(paths["metrics.json"].read_text())
    assert list(data) == list(result.to_dict()) and data["sets"]["fake"]["n"] == 4
    # a training checkpoint is exported first (here: stood in for by the release)
    ckpt = tmp_path / "run" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    monkeypatch.setattr(export, "export_checkpoint", lambda path, out: tiny)
    _, paths = run_evaluation(prepared, Compared(model=ckpt, n=4, spec=SamplerSpec(steps=2)),
                              tmp_path / "b", "test", settings)
    assert _title(paths) == ("# radiodiff evaluation: generated (checkpoint run/last.ckpt, "
                             "heun 2) vs real test")
    again = json.loads(paths["metrics.json"].read_text())
    for key in ("distances", "real_vs_fake", "verdict"):  # the same weights, the same numbers
        assert again[key] == data[key], key
