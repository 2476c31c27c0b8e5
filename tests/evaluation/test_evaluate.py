"""`radiodiff evaluate`: end to end on synthetic sets with known answers, and bad input."""

import json

import numpy as np
import pytest

from helpers import synth

from radiodiff.cli import main
from radiodiff.evaluation.evaluate import (EvalSettings, ImageSet, evaluate, proportional_labels,
                                           proportional_rows, reference_set, reference_splits,
                                           sample_classes, write_report)

FAST = EvalSettings(classifier_epochs=4, rvf_folds=3, rvf_epochs=4, sf_max_images=12,
                    sf_processes=1, n_repeats=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("eval") / "set.h5")


def _meta(tmp_path):
    return {"classes": ["blob", "double"], "data_sha256": "ab" * 32,
            "pixel_scale_arcsec": 1.8, "beam_arcsec": [5.4, 5.4]}


def test_real_vs_real_sits_at_the_noise_floor(prepared, tmp_path):
    real, _ = reference_set(prepared, "test")
    other, _ = reference_set(prepared, "valid")
    train, _ = reference_set(prepared, "train")
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    m = evaluate(real, other, train, other, _meta(tmp_path), settings)
    assert 0.25 <= m["real_vs_fake"]["mean_accuracy"] <= 0.75
    ratios = [e["wasserstein1"]["ratio"] for e in m["distances"].values()
              if e["wasserstein1"]["ratio"] is not None]
    assert len(ratios) > 10 and 0.4 < float(np.median(ratios)) < 2.0
    assert m["class_fidelity"]["real_accuracy"] > 0.9
    assert m["class_fidelity"]["fidelity_ratio"] > 0.9
    assert m["memorisation"]["pixel"]["copy_fraction"] < 0.2
    assert "n_sources" in m["sourcefinder"]
    paths = write_report(m, real, other, tmp_path / "report", ["blob", "double"])
    for name in ("metrics.json", "report.md", "report.html", "histograms", "centre of emission",
                 "confusion (real)", "confusion (generated)"):
        assert paths[name].is_file() and paths[name].stat().st_size > 100
    data = json.loads(paths["metrics.json"].read_text())
    assert data["sets"]["fake"]["n"] == 40 and "_stats" not in data
    assert "Real-vs-fake classifier" in paths["report.md"].read_text()
    # the classifier is cached per data hash: a second run reuses it
    m2 = evaluate(real, other, train, other, _meta(tmp_path), settings)
    assert m2["class_fidelity"]["classifier_cached"] is True


def test_obviously_different_sets_are_caught(prepared, tmp_path):
    real, _ = reference_set(prepared, "test")
    train, _ = reference_set(prepared, "train")
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 1, real.images.shape).astype(np.float32) ** 4
    fake = ImageSet(noise, real.labels.copy(), "noise")
    settings = EvalSettings(**{**FAST.__dict__, "sourcefinder": False,
                               "cache_dir": str(tmp_path / "cache")})
    m = evaluate(real, fake, train, real, _meta(tmp_path), settings)
    assert m["real_vs_fake"]["mean_accuracy"] > 0.9
    assert m["distances"]["mean"]["wasserstein1"]["ratio"] > 5
    assert m["features"]["frechet"] > 5 * m["features"]["frechet_floor"]


def test_proportional_labels_keep_the_class_shares():
    labels = np.array([2, 0, 1, 0, 2, 2, 0, 1, 2, 2], np.int64)  # shares 3 : 2 : 5
    rows = proportional_rows(labels, 20)
    assert rows.dtype == np.int64 and np.array_equal(labels[rows], np.sort(labels).repeat(2))
    assert np.array_equal(proportional_labels(labels, 20), labels[rows])
    assert np.bincount(proportional_labels(labels, 10)).tolist() == [3, 2, 5]
    assert proportional_labels(labels, 4).tolist() == [0, 0, 2, 2]  # rows 0, 2, 5, 7 of the sorted
    assert np.array_equal(proportional_rows(labels, 10), np.argsort(labels, kind="stable"))
    for n in (1, 7, 23):  # the rule `radiodiff evaluate` and bench_quality always used
        idx = (np.arange(n) * len(labels)) // n
        assert np.array_equal(proportional_labels(labels, n), np.sort(labels)[idx])
        assert np.array_equal(proportional_rows(labels, n), np.argsort(labels, kind="stable")[idx])


def test_reference_splits_are_the_three_reference_sets(prepared):
    real, train, val, ps = reference_splits(prepared, "valid")
    for got, split in ((real, "valid"), (train, "train"), (val, "valid")):
        want, _ = reference_set(prepared, split)
        assert got.name == want.name and np.array_equal(got.images, want.images)
        assert np.array_equal(got.labels, want.labels)
    assert ps.classes == ["blob", "double"]
    assert reference_splits(prepared)[0].name == "real test"
    with pytest.raises(ValueError, match="no clean rows in split 'nope'"):
        reference_splits(prepared, "nope")


def test_sample_classes_runs_the_seeds_on_across_classes(monkeypatch):
    import types
    import radiodiff.diffusion.generate as gen
    calls = []

    def fake_generate(release, n, label=None, seed=0, **kw):
        calls.append((n, label, seed, kw))
        return types.SimpleNamespace(images=np.full((n, 1, 2, 2), seed, np.float32))

    monkeypatch.setattr(gen, "generate", fake_generate)
    release = types.SimpleNamespace(classes=["FRI", "FRII", "Compact"])
    out = sample_classes(release, [(0, 2), (1, 0), (2, 3)], 10, steps=4, batch_size=8)
    assert not calls  # lazy: one class at a time, as the caller consumes them
    got = [(label, res.images[:, 0, 0, 0].tolist()) for label, res in out]
    assert got == [(0, [10, 10]), (2, [12, 12, 12])]
    assert calls == [(2, "FRI", 10, {"steps": 4, "batch_size": 8}),
                     (3, "Compact", 12, {"steps": 4, "batch_size": 8})]  # count 0 skipped
    calls.clear()
    assert [label for label, _ in sample_classes(types.SimpleNamespace(classes=[]),
                                                  [(-1, 5)], 3)] == [-1]
    assert calls == [(5, None, 3, {})]  # -1: no class condition


def test_conditioning_accuracy_known_answer():
    from radiodiff.evaluation.evaluate import conditioning_accuracy
    req = np.array([10.0, 20.0, 40.0, 80.0])
    c = conditioning_accuracy(req, req * 1.1)
    assert c["n"] == 4 and c["median_relative_error"] == pytest.approx(0.1)
    assert c["spearman"] == pytest.approx(1.0)
    c = conditioning_accuracy(req, req[::-1])
    assert c["spearman"] == pytest.approx(-1.0) and c["median_abs_relative_error"] > 0.5
    assert conditioning_accuracy(req[:2], req[:2]) == {"n": 2}
    assert conditioning_accuracy(req, np.ones(4))["spearman"] is None  # constant: undefined


def test_bad_inputs(prepared, tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match="NaN"):
        ImageSet(np.full((2, 1, 16, 16), np.nan, np.float32), np.zeros(2), "bad")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        ImageSet(np.zeros((2, 16, 16), np.float32), np.zeros(2), "bad")
    with pytest.raises(ValueError, match="no images"):
        ImageSet(np.zeros((0, 1, 16, 16), np.float32), np.zeros(0), "empty")
    real, _ = reference_set(prepared, "test")
    small = ImageSet(np.zeros((4, 1, 8, 8), np.float32), np.zeros(4), "small")
    with pytest.raises(ValueError, match="image shapes differ"):
        evaluate(real, small, real, real, _meta(tmp_path), FAST)
    with pytest.raises(ValueError, match="no clean rows in split 'nope'"):
        reference_set(prepared, "nope")
    assert main(["evaluate", "--reference", str(prepared), "--samples",
                 str(tmp_path / "none")]) == 2
    assert "no samples.h5" in capsys.readouterr().err
    # no model named: the built-in one, here absent (an empty models folder)
    monkeypatch.setenv("RADIODIFF_MODELS", str(tmp_path))
    assert main(["evaluate", "--reference", str(prepared)]) == 2
    assert "first: no such release folder, checkpoint or shipped model" in \
        capsys.readouterr().err


def test_cli_real_vs_real(prepared, tmp_path, capsys):
    assert main(["evaluate", "--reference", str(prepared), "--real-split", "valid",
                 "--no-sourcefinder", "--rvf-folds", "2", "--rvf-epochs", "2",
                 "--classifier-epochs", "2", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert "real valid vs real test" in capsys.readouterr().out


def test_w1_ratios_never_hide_a_missing_statistic():
    from radiodiff.evaluation.evaluate import w1_ratios
    from radiodiff.evaluation.distances import compare
    rng = np.random.default_rng(0)
    real = {"a": rng.normal(0, 1, 200), "peak": np.ones(200), "gone": rng.normal(0, 1, 200)}
    fake = {"a": rng.normal(3, 1, 100), "peak": np.full(100, 0.9),
            "gone": np.full(100, np.nan)}
    r = w1_ratios(compare(real, fake, n_repeats=3))
    assert r["a"] > 10                 # shifted by 3 sigma: far above the floor
    assert r["gone"] == float("inf")   # no finite value in the generated set
    assert "peak" not in r             # constant in the real data: no floor, no ratio
    from radiodiff.evaluation.evaluate import w1_summary
    w = w1_summary(r)
    assert w["worst"] == ["gone", "a"] and w["within"] == 0 and w["n"] == 2
    assert w["max"] == float("inf") and w["median"] == float("inf")
