"""Metrics on synthetic sets with known answers; the real statistics' cache."""

import json
import math
import re

import numpy as np
import pytest

from helpers import synth

from radiodiff.evaluation.distances import w1_ratios, w1_summary
from radiodiff.evaluation.metrics import EvalResult, EvalSettings, conditioning_accuracy, evaluate
from radiodiff.evaluation.report import write_report
from radiodiff.evaluation.sets import ImageSet, reference_set

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
    m = evaluate(real, other, train, _meta(tmp_path), settings, synthetic_train=other)
    assert 0.25 <= m.real_vs_fake["mean_accuracy"] <= 0.75
    ratios = [e["wasserstein1"]["ratio"] for e in m.distances.values()
              if e["wasserstein1"]["ratio"] is not None]
    assert len(ratios) > 10 and 0.4 < float(np.median(ratios)) < 2.0
    assert m.class_fidelity["real_accuracy"] > 0.9
    assert m.class_fidelity["fidelity_ratio"] > 0.9
    assert m.memorisation["pixel"]["copy_fraction"] < 0.2
    assert "n_sources" in m.sourcefinder
    paths = write_report(m, real, other, tmp_path / "report", ["blob", "double"])
    for name in ("metrics.json", "report.md", "report.html", "histograms", "centre of emission",
                 "confusion (real)", "confusion (generated)"):
        assert paths[name].is_file() and paths[name].stat().st_size > 100
    data = json.loads(paths["metrics.json"].read_text())
    assert data["sets"]["fake"]["n"] == 40 and "_stats" not in data
    assert "Real-vs-fake classifier" in paths["report.md"].read_text()
    # a second real split is as useful as the real training split, and shaped alike
    u = m.usefulness
    assert u["synthetic"]["accuracy_ratio"] > 0.85 and u["real+synthetic"]["accuracy"] > 0.85
    assert len(u["synthetic"]["recall"]) == 2
    assert set(m.morphology["by_class"]) == {"all", "blob", "double"}
    assert float(np.nanmedian(list(m.morphology["ks_ratio"].values()))) < 2.0
    text = paths["report.md"].read_text()
    assert "## Source morphology" in text and "## Usefulness" in text
    assert "morphology" in data and "usefulness" in data
    assert data["morphology"]["linking"].startswith("gap under one beam")
    # the classifier is cached per data hash: a second run reuses it
    m2 = evaluate(real, other, train, _meta(tmp_path), settings)
    assert m2.class_fidelity["classifier_cached"] is True


def test_obviously_different_sets_are_caught(prepared, tmp_path, capsys):
    real, _ = reference_set(prepared, "test")
    train, _ = reference_set(prepared, "train")
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 1, real.images.shape).astype(np.float32) ** 4
    fake = ImageSet(noise, real.labels.copy(), "noise")
    settings = EvalSettings(**{**FAST.__dict__, "sourcefinder": False,
                               "cache_dir": str(tmp_path / "cache")})
    noise_train = ImageSet(rng.uniform(0, 1, train.images.shape).astype(np.float32) ** 4,
                           train.labels.copy(), "noise")
    m = evaluate(real, fake, train, _meta(tmp_path), settings,
                 synthetic_train=noise_train)
    assert m.real_vs_fake["mean_accuracy"] > 0.9
    assert m.distances["mean"]["wasserstein1"]["ratio"] > 5
    assert m.features["frechet"] > 5 * m.features["frechet_floor"]
    # noise teaches a classifier nothing about real sources, and has no source shape
    assert m.usefulness["synthetic"]["accuracy"] < 0.8 * m.usefulness["real"]["accuracy"]
    assert max(v for v in m.morphology["ks_ratio"].values() if math.isfinite(v)) > 3
    phases = capsys.readouterr().err  # a piped run says which long step it is in
    assert "evaluation: image statistics" in phases and "evaluation: real-vs-fake" in phases


def test_conditioning_accuracy_known_answer():
    req = np.array([10.0, 20.0, 40.0, 80.0])
    c = conditioning_accuracy(req, req * 1.1)
    assert c["n"] == 4 and c["median_relative_error"] == pytest.approx(0.1)
    assert c["spearman"] == pytest.approx(1.0)
    c = conditioning_accuracy(req, req[::-1])
    assert c["spearman"] == pytest.approx(-1.0) and c["median_abs_relative_error"] > 0.5
    assert conditioning_accuracy(req[:2], req[:2]) == {"n": 2}
    assert conditioning_accuracy(req, np.ones(4))["spearman"] is None  # constant: undefined


def test_conditioning_accuracy_counts_within_tolerance_and_ranks_monotone_relations():
    req = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    c = conditioning_accuracy(req, req * np.array([1.0, 1.19, 0.79, 1.5, 1.0]))
    assert c["fraction_within"] == pytest.approx(3 / 5) and c["tolerance"] == 0.2
    assert conditioning_accuracy(req, req * 1.3, tolerance=0.35)["fraction_within"] == 1.0
    # a monotone but non-linear relation: rank correlation 1, yet far from the request
    c = conditioning_accuracy(req, req ** 3)
    assert c["spearman"] == pytest.approx(1.0) and c["fraction_within"] == pytest.approx(0.2)
    rng = np.random.default_rng(0)
    c = conditioning_accuracy(np.arange(1.0, 201.0), rng.uniform(1, 200, 200))
    assert abs(c["spearman"]) < 0.2  # unrelated values: no rank correlation


def test_conditioning_scatter_is_the_iqr_of_log_ratios():
    req = np.arange(10.0, 90.0, 10.0)
    offsets = np.array([-0.4, -0.2, 0.0, 0.1, 0.3, 0.5, -0.1, 0.2])
    c = conditioning_accuracy(req, req * np.exp(offsets))
    iqr = np.percentile(offsets, 75) - np.percentile(offsets, 25)
    assert c["iqr_log_ratio"] == pytest.approx(iqr) and iqr == pytest.approx(0.35)
    # a constant factor is a bias, not a scatter; a measured 0 has no log and is left out
    assert conditioning_accuracy(req, 3 * req * np.exp(offsets))["iqr_log_ratio"] == \
        pytest.approx(iqr)
    c = conditioning_accuracy(np.append(req, 90.0), np.append(req * np.exp(offsets), 0.0))
    assert c["n"] == 9 and c["n_log"] == 8 and c["iqr_log_ratio"] == pytest.approx(iqr)
    assert conditioning_accuracy(req[:3], np.array([1.0, 0.0, 0.0]))["iqr_log_ratio"] is None
    assert "by_size" not in c  # only when bins are asked for


def test_conditioning_by_size_shows_a_regression_to_the_mean():
    req = np.geomspace(5.0, 400.0, 60)
    edges = [20.0, 40.0, 80.0]
    c = conditioning_accuracy(req, np.sqrt(req * 60.0), size_bins=edges)  # 1 at 60
    bins = c["by_size"]
    assert [(b["lo"], b["hi"]) for b in bins] == [(0, 20), (20, 40), (40, 80), (80, None)]
    assert [b["n"] for b in bins] == [int(np.sum((req >= lo) & (req < hi)))
                                      for lo, hi in ((0, 20), (20, 40), (40, 80), (80, 1e9))]
    assert bins[0]["median_ratio"] > 1.5 and bins[1]["median_ratio"] > 1.1
    assert bins[3]["median_ratio"] < 0.8
    ratios = [b["median_ratio"] for b in bins]
    assert ratios == sorted(ratios, reverse=True)
    exact = conditioning_accuracy(req, req, size_bins=edges)["by_size"]
    assert all(b["median_ratio"] == 1.0 for b in exact) and exact[0]["n"] == bins[0]["n"]
    few = conditioning_accuracy(req[:4], req[:4], size_bins=[5.5])["by_size"]
    assert [(b["n"], b["median_ratio"]) for b in few] == [(2, None), (2, None)]  # < 3 rows


def test_las_measured_on_images_of_known_las_and_its_real_floor():
    from radiodiff.evaluation.metrics import _conditioning, image_statistics
    # horizontal bars of L pixels: Feret diameter sqrt(L^2 + 1) pixels; each image's pixel
    # scale follows the cutout rule on its LAS, max(1.5 LAS, 57.6") / 32 pixels
    lengths = np.array([4, 6, 8, 10, 12, 20])
    images = np.zeros((6, 1, 32, 32), np.float32)
    for i, n in enumerate(lengths):
        images[i, 0, 16, 2:2 + n] = 1.0
    meta = {"pixel_scale_arcsec": 1.8, "cutout": {"k_las": 1.5, "min_size_arcsec": 57.6}}
    true = np.hypot(lengths, 1) * 1.8
    catalogue = np.append(true[:5], 50.0)   # the last: 75" cutout, 2.34" pixels
    requested = catalogue * np.array([1, 1, 1.1, 1.5, 0.7, 1])
    real = ImageSet(images, np.full(6, -1), "real", {"las_arcsec": catalogue})
    fake = ImageSet(images, np.full(6, -1), "fake", {"las_arcsec": requested})
    stats = {k: image_statistics(images, 1.8) for k in ("real", "fake")}
    las = _conditioning(real, fake, stats, meta)["las_arcsec"]
    last = np.hypot(20, 1) * 75 / 32 / 50 - 1          # -0.061: its own pixel scale
    errors = np.array([0, 0, 1 / 1.1 - 1, 1 / 1.5 - 1, 1 / 0.7 - 1, last])
    assert las["fraction_within"] == pytest.approx(4 / 6)
    assert las["median_abs_relative_error"] == pytest.approx(np.median(np.abs(errors)))
    assert las["real"]["fraction_within"] == 1.0 and las["real"]["spearman"] == 1.0
    assert las["real"]["median_abs_relative_error"] == pytest.approx(0.0, abs=1e-12)
    assert las["real"]["iqr_log_ratio"] == pytest.approx(0.0, abs=1e-12)
    assert las["iqr_log_ratio"] == pytest.approx(np.subtract(*np.percentile(
        np.log1p(errors), [75, 25])))   # 0.087
    # bins of the requested LAS at 20, 40, 80 pixels of the 1.8" median pixel scale
    assert [b["lo"] for b in las["by_size"]] == pytest.approx([0, 36, 72, 144])
    assert [b["n"] for b in las["real"]["by_size"]] == [5, 1, 0, 0]
    # a set sampled without LAS has no LAS entry
    assert _conditioning(real, ImageSet(images, np.full(6, -1), "x"), stats, meta) is None


def test_w1_ratios_never_hide_a_missing_statistic():
    from radiodiff.evaluation.distances import compare
    rng = np.random.default_rng(0)
    real = {"a": rng.normal(0, 1, 200), "peak": np.ones(200), "gone": rng.normal(0, 1, 200),
            "one": np.ones(200)}
    fake = {"a": rng.normal(3, 1, 100), "peak": np.full(100, 0.9),
            "gone": np.full(100, np.nan), "one": np.ones(100)}
    r = w1_ratios(compare(real, fake, n_repeats=3))
    assert r["a"] > 10                 # shifted by 3 sigma: far above the floor
    assert r["gone"] == float("inf")   # no finite value in the generated set
    # constant in the real data (a zero floor): a generated set off it fails, one that
    # matches it is at its floor
    assert r["peak"] == float("inf") and r["one"] == 1.0
    w = w1_summary(r)
    assert w["worst"][:2] in (["gone", "peak"], ["peak", "gone"]) and w["worst"][2:] == [
        "a", "one"]
    assert w["within"] == 1 and w["n"] == 4 and w["max"] == float("inf")


def test_real_statistics_are_computed_once_then_loaded(prepared, tmp_path, monkeypatch):
    import radiodiff.evaluation.metrics as metrics
    real, _ = reference_set(prepared, "test")
    other, _ = reference_set(prepared, "valid")
    calls = []
    compute = metrics.image_statistics

    def counting(images, *args, **kw):
        calls.append(len(images))
        return compute(images, *args, **kw)

    monkeypatch.setattr(metrics, "image_statistics", counting)
    settings = EvalSettings(**{**FAST.__dict__, "sourcefinder": False, "rvf_epochs": 1,
                               "cache_dir": str(tmp_path / "cache")})
    meta = {"data_sha256": "ab" * 32, "pixel_scale_arcsec": 1.8,  # no classes: no classifier
            "beam_arcsec": [5.4, 5.4]}
    first = evaluate(real, other, other, meta, settings)
    assert len(calls) == 4  # real, fake, and the faint view of each
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].startswith("realstats-abababababababab-test-")
    calls.clear()
    second = evaluate(real, other, other, meta, settings)
    assert calls == [len(other.images)] * 2  # only the compared set is computed
    a, b = first.to_dict(), second.to_dict()
    a.pop("timings_s"), b.pop("timings_s")
    assert a == b
    for key, value in first.stats["real"].items():
        assert np.array_equal(value, second.stats["real"][key], equal_nan=True), key
    assert list(first.stats["real"]) == list(second.stats["real"])  # the order compare() sees
    # another shape floor is another cache entry; a set without a split is never cached
    evaluate(real, other, other, meta, EvalSettings(**{**settings.__dict__,
                                                       "shape_floor": 0.0}))
    evaluate(ImageSet(real.images, real.labels, "copy"), other, other, meta, settings)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_eval_result_dict_is_metrics_json_order(prepared, tmp_path):
    real, _ = reference_set(prepared, "test")
    other, _ = reference_set(prepared, "valid")
    settings = EvalSettings(**{**FAST.__dict__, "sourcefinder": False, "rvf_epochs": 1,
                               "cache_dir": str(tmp_path / "cache")})
    m = evaluate(real, other, other, _meta(tmp_path), settings)
    assert isinstance(m, EvalResult)
    assert list(m.to_dict()) == ["distances", "background", "faint_distances",
                                 "class_fidelity", "features", "memorisation", "conditioning",
                                 "real_vs_fake", "real_vs_fake_faint", "sets", "settings",
                                 "timings_s", "verdict", "morphology"]  # conditioning: flux, LAS
    assert list(m.timings_s) == ["statistics", "classifier", "morphology", "real_vs_fake"]


def test_shapes_must_agree(prepared, tmp_path):
    real, _ = reference_set(prepared, "test")
    small = ImageSet(np.zeros((4, 1, 8, 8), np.float32), np.zeros(4), "small")
    with pytest.raises(ValueError, match="image shapes differ"):
        evaluate(real, small, real, _meta(tmp_path), FAST)


def test_paired_las_compares_measurement_with_measurement():
    from radiodiff.evaluation.metrics import _conditioning, image_statistics
    # the measurement reads 2x the catalogue LAS (as on FIRST: beam and 10 % threshold), so
    # against the catalogue even a copy of the real images fails; paired with the measured
    # LAS of the real row of the same conditions, a copy passes and 1.5x longer bars fail
    lengths = np.array([4, 5, 6, 8, 10, 12])

    def bars(scale=1.0):
        out = np.zeros((6, 1, 32, 32), np.float32)
        for i, n in enumerate(lengths):
            out[i, 0, 16, 2:2 + int(round(n * scale))] = 1.0
        return out

    meta = {"pixel_scale_arcsec": 1.8, "cutout": {"k_las": 1.5, "min_size_arcsec": 57.6}}
    cond = {"las_arcsec": np.hypot(lengths, 1) * 0.9, "peak_flux": np.geomspace(1e-3, 1, 6)}
    real = ImageSet(bars(), np.full(6, -1), "real", cond)
    train = ImageSet(bars(), np.full(6, -1), "train", cond)
    for scale, expected in ((1.0, 1.0), (1.5, 0.0)):
        fake = ImageSet(bars(scale), np.full(6, -1), "fake", cond)
        stats = {"real": image_statistics(real.images, 1.8),
                 "fake": image_statistics(fake.images, 1.8)}
        las = _conditioning(real, fake, stats, meta, train)["las_arcsec"]
        assert las["fraction_within"] == 0.0                    # vs the catalogue
        assert las["paired"]["fraction_within"] == expected
        assert las["paired"]["real"]["fraction_within"] == 1.0  # the floor: train rows


def test_a_damaged_statistics_cache_is_named_and_computed_again(prepared, tmp_path, caplog):
    from radiodiff.evaluation import metrics
    real, _ = reference_set(prepared, "test")
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    stats, faint, cached = metrics.real_statistics(real, 1.8, settings, "ab" * 32)
    (path,) = (tmp_path / "cache").iterdir()
    assert not cached and metrics.real_statistics(real, 1.8, settings, "ab" * 32)[2]
    for damage in (path.read_bytes()[:100], b"not a zip file", None):
        if damage is None:  # a readable archive without the statistics
            np.savez(path.with_suffix(".tmp.npz"), other=np.zeros(3))
            path.with_suffix(".tmp.npz").replace(path)
        else:
            path.write_bytes(damage)
        caplog.clear()
        again, faint_again, cached = metrics.real_statistics(real, 1.8, settings, "ab" * 32)
        assert not cached and path.name in caplog.text and "computing it again" in caplog.text
        assert list(again) == list(stats)
        assert all(np.array_equal(again[k], stats[k], equal_nan=True) for k in stats)
        assert metrics.real_statistics(real, 1.8, settings, "ab" * 32)[2]  # replaced


def test_class_classifier_cache_follows_the_images_without_a_data_hash(prepared):
    from radiodiff.evaluation.metrics import _classifier_cache_path
    train, _ = reference_set(prepared, "train")
    val, _ = reference_set(prepared, "valid")
    key = _classifier_cache_path(train, val, 2, FAST, "")
    assert key == _classifier_cache_path(ImageSet(train.images.copy(), train.labels.copy(),
                                                  "train"), val, 2, FAST, "")
    relabelled = ImageSet(train.images, train.labels[::-1].copy(), "train")
    for other in (_classifier_cache_path(relabelled, val, 2, FAST, ""),
                  _classifier_cache_path(train, ImageSet(val.images[1:], val.labels[1:],
                                                         "valid"), 2, FAST, ""),
                  _classifier_cache_path(train, val, 2, EvalSettings(
                      **{**FAST.__dict__, "classifier_epochs": 5}), ""),
                  _classifier_cache_path(train, val, 2, FAST, "cd" * 32)):
        assert other != key


def test_the_source_finder_and_the_grids_see_every_class_of_a_class_ordered_set():
    from radiodiff.evaluation.metrics import _subset
    from radiodiff.evaluation.report import _spread
    labels = np.repeat([0, 1, 2, 3, 4], 200)        # a generated set: ordered by class
    rows = _subset(1000, 200, seed=0)
    assert len(rows) == 200 and (np.diff(rows) > 0).all()
    assert np.bincount(labels[rows], minlength=5).min() > 20
    assert np.array_equal(rows, _subset(1000, 200, seed=0))  # seeded
    assert np.array_equal(_subset(150, 200, seed=0), np.arange(150))
    assert set(_spread(labels, 32)) == {0, 1, 2, 3, 4} and len(_spread(labels, 32)) == 32
    assert np.array_equal(_spread(labels[:20], 32), labels[:20])


def test_the_class_classifier_is_one_network_fitted_and_selected_on_train(prepared):
    """Fitted on the training split less a seeded seventh, selected on that seventh: never
    on a split it scores, and the same network whatever the compared splits (a model's
    numbers and the real-vs-real floor's come from one classifier)."""
    from radiodiff.evaluation.metrics import _selection
    train, _ = reference_set(prepared, "train")
    fit, select, on = _selection(train, seed=0)
    assert on == "a seeded seventh of train" and len(select.images) == len(train.images) // 7
    assert len(fit.images) + len(select.images) == len(train.images)
    rows = {img.tobytes() for img in fit.images}
    assert not any(img.tobytes() in rows for img in select.images)  # disjoint
    again = _selection(train, seed=0)[1]
    assert np.array_equal(again.images, select.images)             # seeded
    assert not np.array_equal(_selection(train, seed=1)[1].images, select.images)
    tiny = ImageSet(train.images[:3], train.labels[:3], "tiny", split="train")
    assert [len(p.images) for p in _selection(tiny, seed=0)[:2]] == [2, 1]
    with pytest.raises(ValueError, match="1 training image"):
        _selection(ImageSet(train.images[:1], train.labels[:1], "one", split="train"), 0)


def test_scores_against_the_training_split_are_not_measured(prepared, tmp_path):
    """A compared set that is the training split (a floor row of --real-split train): the
    classifier would score its own images, so fidelity, features and memorisation are
    skipped with the reason, and no classifier is trained for it."""
    from radiodiff.evaluation.metrics import _classifier_tests
    val, _ = reference_set(prepared, "valid")
    train, _ = reference_set(prepared, "train")
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    out = _classifier_tests(val, train, train, ["blob", "double"], settings, "")
    skipped = {"skipped": "a compared set is the training split"}
    assert out == {"class_fidelity": skipped, "features": skipped, "memorisation": skipped}
    assert not (tmp_path / "cache").exists()
    scored = _classifier_tests(val, val, train, ["blob", "double"], settings, "")
    assert scored["class_fidelity"]["selected_on"] == "a seeded seventh of train"
    assert scored["features"]["n"] > 0 and "skipped" not in scored["memorisation"]


@pytest.mark.parametrize("split, real_split, message", [
    ("train", None, "--split train: the model and the class classifier were trained on it"),
    ("valid", "valid", "--real-split valid is the compared split itself"),
    ("test", "test", "e.g. --real-split valid"),
])
def test_comparisons_that_cannot_say_anything_are_refused(split, real_split, message):
    from radiodiff.evaluation.sets import check_splits
    with pytest.raises(ValueError, match=re.escape(message)):
        check_splits(split, real_split)
    for fine in (("test", "valid"), ("valid", "train"), ("test", None)):
        check_splits(*fine)


def test_rows_without_a_class_are_left_to_the_class_free_tests(prepared, tmp_path):
    """Label -1 (a row without a class): the class classifiers see the labelled rows only;
    a set with none skips them, with the reason, instead of failing in the classifier."""
    from radiodiff.evaluation.metrics import _labelled
    real, _ = reference_set(prepared, "test")
    train, _ = reference_set(prepared, "train")
    some = ImageSet(train.images, np.where(np.arange(len(train.labels)) % 3 == 0, -1,
                                           train.labels), "some", split="train")
    kept = _labelled(some)
    assert len(kept.images) == int((some.labels >= 0).sum()) and (kept.labels >= 0).all()
    assert kept.split == "train" and _labelled(train) is train
    none = ImageSet(real.images, np.full(len(real.labels), -1), "unlabelled", split="test")
    assert _labelled(none) is None
    settings = EvalSettings(**{**FAST.__dict__, "sourcefinder": False, "rvf_epochs": 1,
                               "morphology": False, "cache_dir": str(tmp_path / "cache")})
    m = evaluate(none, real, train, _meta(tmp_path), settings)
    assert m.class_fidelity == {"skipped": "unlabelled has no labelled image"}
    assert m.real_vs_fake["mean_accuracy"] is not None  # the class-free tests still ran
    text = write_report(m, none, real, tmp_path / "r", ["blob", "double"])["report.md"]
    assert "not measured (unlabelled has no labelled image" in text.read_text()
