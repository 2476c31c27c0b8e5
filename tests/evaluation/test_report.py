"""The report: metrics.json is EvalResult.to_dict(); the title names a checkpoint or a release."""

import json

import numpy as np
import pytest

from helpers import synth
from helpers.releases import tiny_release

from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.evaluation.metrics import EvalSettings
from radiodiff.evaluation.run import run_evaluation
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
    import radiodiff.pipeline.checkpoint as export
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    compared = Compared(model=tiny, n=4, spec=SamplerSpec(steps=2))
    result, paths = run_evaluation(prepared, compared, tmp_path / "a", "test", settings)
    assert _title(paths) == "# radiodiff evaluation: generated (release tiny, heun 2) vs real test"
    data = json.loads(paths["metrics.json"].read_text())
    assert list(data) == list(result.to_dict()) and data["sets"]["fake"]["n"] == 4
    assert data["settings"]["cache_dir"] == "<local path>"  # no folder of this machine
    assert str(tmp_path) not in paths["metrics.json"].read_text()
    # a training checkpoint is exported first (here: stood in for by the release)
    ckpt = tmp_path / "run" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    monkeypatch.setattr(export, "export_checkpoint", lambda path, out: tiny)
    import radiodiff.evaluation.sets as sets
    record = sets.model_data(tiny)
    monkeypatch.setattr(sets, "model_data", lambda model: record)
    _, paths = run_evaluation(prepared, Compared(model=ckpt, n=4, spec=SamplerSpec(steps=2)),
                              tmp_path / "b", "test", settings)
    assert _title(paths) == ("# radiodiff evaluation: generated (checkpoint run/last.ckpt, "
                             "heun 2) vs real test")
    again = json.loads(paths["metrics.json"].read_text())
    for key in ("distances", "real_vs_fake", "verdict"):  # the same weights, the same numbers
        assert again[key] == data[key], key


def _cutouts(n, seed, **kw):
    from radiodiff.evaluation.sets import ImageSet
    images, conditions = synth.physical_cutouts(n, seed=seed, **kw)
    return ImageSet(images, np.full(n, -1), f"set {seed}", conditions)


def test_physical_units_section_only_for_jy_per_beam_sets(tmp_path):
    from radiodiff.evaluation.metrics import evaluate
    from radiodiff.evaluation.report import write_report
    from radiodiff.evaluation.sets import ImageSet
    meta = {"classes": [], "data_sha256": "cd" * 32, "pixel_scale_arcsec": 1.8,
            "beam_arcsec": [5.4, 5.4], "image_unit": "Jy/beam", "scaling": "per_image",
            "negatives": "clip", "cutout": {"k_las": 1.5, "min_size_arcsec": 57.6}}
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    real, train = _cutouts(40, 0), _cutouts(60, 2)
    fake = _cutouts(40, 1, rms=1.3 * 1.5e-4)
    result = evaluate(real, fake, train, meta, settings)
    paths = write_report(result, real, fake, tmp_path / "phys", [])
    data = json.loads(paths["metrics.json"].read_text())
    assert list(data)[-3:] == ["verdict", "physical", "morphology"]  # old keys first
    checks = data["physical"]["checks"]
    assert checks["rms_ratio_deviation"]["pass"] is False and data["physical"]["pass"] is False
    assert "las_fraction_within_20pct" in checks and "real" in data["conditioning"]["las_arcsec"]
    md = paths["report.md"].read_text()
    section = md[md.index("## Physical units"):md.index("## Image statistics")]
    assert "| background rms, abs(median ratio fake / real - 1) |" in section
    assert "| LAS scatter about the catalogue LAS, IQR of ln(measured / catalogue) |" in section
    assert checks["las_vs_catalogue_iqr_log_ratio"]["target"] == "≤ 1.25× floor"
    assert "| FAIL |" in section and "not met" in section
    assert "real images, measured vs catalogue" in md
    assert paths["background noise"].stat().st_size > 1000
    assert "<td>background rms" in paths["report.html"].read_text()
    # the same images without a peak flux (a class-only model): nothing new appears
    plain = ImageSet(fake.images, fake.labels, "class only")
    result = evaluate(real, plain, train, meta, settings)
    paths = write_report(result, real, plain, tmp_path / "plain", [])
    assert "physical" not in json.loads(paths["metrics.json"].read_text())
    assert "Physical units" not in paths["report.md"].read_text()
    assert "background noise" not in paths


def test_conditioning_words_give_scatter_and_size_bins():
    from radiodiff.evaluation.metrics import conditioning_accuracy
    from radiodiff.evaluation.report import _accuracy
    rng = np.random.default_rng(0)
    requested = np.exp(rng.uniform(np.log(10), np.log(200), 60))
    # regression to the mean: small sources come out larger, large ones smaller
    c = conditioning_accuracy(requested, 40 * (requested / 40) ** 0.5, size_bins=(20, 40, 80))
    words = _accuracy(c)
    assert f"scatter (IQR of ln measured/requested, n=60) {c['iqr_log_ratio']:.4g}" in words
    small, large = c["by_size"][0], c["by_size"][-1]
    assert small["median_ratio"] > 1 > large["median_ratio"]
    assert (f"0–20: {small['median_ratio']:.4g} (n={small['n']})" in words
            and f"≥80: {large['median_ratio']:.4g} (n={large['n']})" in words)
    # without bins or with too few rows, nothing is made up
    assert "by requested size" not in _accuracy(conditioning_accuracy(requested, requested))
    assert "scatter" not in _accuracy(conditioning_accuracy(requested[:2], requested[:2]))


def test_a_reference_without_a_beam_is_refused_before_sampling(tmp_path, tiny, monkeypatch):
    from radiodiff.data.prepared import read_prepared
    n = 140
    some = np.full((n, 2), 5.4)
    some[::3] = np.nan                                   # fields without BMAJ among others
    part = synth.write_blob_set(tmp_path / "part.h5", beam=some)
    assert read_prepared(part, images=False).geometry()["beam_arcsec"] == [5.4, 5.4]
    none = synth.write_blob_set(tmp_path / "none.h5", beam=np.full((n, 2), np.nan))
    assert read_prepared(none, images=False).geometry()["beam_arcsec"] is None
    monkeypatch.setattr(Compared, "_drawn", lambda *a: pytest.fail("sampled"))
    with pytest.raises(ValueError) as err:
        run_evaluation(none, Compared(model=tiny, n=4), tmp_path / "r", "test", FAST)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{none}: no clean row records its restoring")
    assert not (tmp_path / "r").exists()
