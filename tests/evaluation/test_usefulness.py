"""Train-synthetic-test-real: the protocol, and the synthetic set drawn like the train split."""

import json

import numpy as np
import pytest

from helpers import synth
from helpers.releases import tiny_release

from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.evaluation.metrics import EvalSettings
from radiodiff.evaluation.run import run_evaluation
from radiodiff.evaluation.sets import Compared, reference_splits
from radiodiff.evaluation.usefulness import binomial_se, real_arm_path, recalls, tstr


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("tstr") / "set.h5")


def test_recalls_are_the_diagonal_over_the_rows():
    assert recalls([[3, 1], [0, 0]]) == [0.75, None]
    assert recalls([[2, 0, 0], [1, 1, 2], [0, 0, 5]]) == [1.0, 0.25, 1.0]


def test_binomial_standard_errors():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(0.54, 50) == pytest.approx(0.0705, abs=1e-4)
    assert binomial_se(1.0, 50) == 0.0 and binomial_se(None, 50) is None
    assert binomial_se(0.5, 0) is None


def test_real_images_are_as_useful_as_real_ones_and_noise_is_not(prepared):
    test, train, val, ps = reference_splits(prepared, "test")
    classes = list(ps.classes)
    same = tstr((train.images, train.labels), (val.images, val.labels),
                (test.images, test.labels), classes, epochs=4)
    assert same["real"]["accuracy"] > 0.9 and same["synthetic"]["accuracy_ratio"] > 0.85
    n_class = [sum(row) for row in same["real"]["confusion"]]
    assert same["real"]["recall_se"] == [binomial_se(r, n) for r, n in
                                         zip(same["real"]["recall"], n_class)]
    assert same["real"]["accuracy_se"] == binomial_se(same["real"]["accuracy"], len(test.labels))
    assert len(same["synthetic"]["recall_ratio"]) == 2 and same["epochs"] == 4
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, train.images.shape).astype(np.float32) ** 4
    useless = tstr((train.images, train.labels), (noise, train.labels),
                   (test.images, test.labels), classes, epochs=4)
    assert useless["synthetic"]["accuracy"] < 0.8 * useless["real"]["accuracy"]
    unlabelled = tstr((train.images, train.labels), (noise, np.full(len(noise), -1)),
                      (test.images, test.labels), classes, epochs=1)
    assert unlabelled["n_synthetic"] == 0 and "synthetic" not in unlabelled
    one_class = np.where(train.labels == 1, -1, train.labels)  # a class the model lacks
    lacking = tstr((train.images, train.labels), (noise, one_class),
                   (test.images, test.labels), classes, epochs=1)
    assert "synthetic" not in lacking and lacking["n_synthetic"] == (train.labels == 0).sum()
    assert lacking["synthetic_skipped"] == f"fewer than 2 synthetic images of class {classes[1]!r}"


def test_evaluate_tstr_draws_one_image_per_training_row(prepared, tmp_path):
    tiny = tiny_release(tmp_path / "tiny", ["blob", "double"])
    settings = EvalSettings(classifier_epochs=1, rvf_folds=2, rvf_epochs=1,
                            sourcefinder=False, n_repeats=2, tstr=True,
                            cache_dir=str(tmp_path / "cache"))
    compared = Compared(model=tiny, n=4, spec=SamplerSpec(steps=1), seed=3)
    _, train, _, _ = reference_splits(prepared, "test")
    synthetic = compared.train_like(prepared, train, tmp_path / "t")
    assert np.array_equal(synthetic.labels, train.labels)
    assert Compared(real_split="valid").train_like(prepared, train, tmp_path) is None
    result, paths = run_evaluation(prepared, compared, tmp_path / "r", "test", settings)
    u = json.loads(paths["metrics.json"].read_text())["usefulness"]
    assert u["n_synthetic"] == len(train.labels) and u["n_real_train"] == len(train.labels)
    assert set(u) >= {"real", "synthetic", "real+synthetic"} and u["real_cached"] is False
    report = paths["report.md"].read_text()
    assert "## Usefulness" in report and "binomial standard error" in report
    row = next(line for line in report.splitlines() if line.startswith("| real |"))
    assert f"{u['real']['accuracy']:.3f} ± {u['real']['accuracy_se']:.3f}" in row
    no_tstr = EvalSettings(**{**settings.__dict__, "tstr": False})
    result, _ = run_evaluation(prepared, compared, tmp_path / "s", "test", no_tstr)
    assert result.usefulness is None


def test_real_arm_is_trained_once_per_training_split(prepared, tmp_path, caplog):
    test, train, val, ps = reference_splits(prepared, "test")
    args = ((train.images, train.labels), (val.images, val.labels),
            (test.images, test.labels), list(ps.classes))
    fresh = tstr(*args, epochs=2)
    first = tstr(*args, epochs=2, cache_dir=tmp_path)
    again = tstr(*args, epochs=2, cache_dir=tmp_path)
    assert (fresh["real_cached"], first["real_cached"], again["real_cached"]) == \
        (False, False, True)
    # the cached classifier scores exactly as the one trained afresh
    for name in ("real", "synthetic", "real+synthetic"):
        assert again[name] == first[name] == fresh[name]
    path = real_arm_path(tmp_path, (train.images, train.labels), 2, 2, 0)
    assert path.is_file() and len(list(tmp_path.glob("tstr-real-*"))) == 1
    # another training split, label set, epoch count or seed is another file
    swapped = (train.images, 1 - train.labels)
    others = {real_arm_path(tmp_path, swapped, 2, 2, 0),
              real_arm_path(tmp_path, (train.images[1:], train.labels[1:]), 2, 2, 0),
              real_arm_path(tmp_path, (train.images, train.labels), 2, 3, 0),
              real_arm_path(tmp_path, (train.images, train.labels), 2, 2, 1)}
    assert path not in others and len(others) == 4
    # a damaged cache is named, trained again and replaced; the scores do not change
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        healed = tstr(*args, epochs=2, cache_dir=tmp_path)
    assert healed["real_cached"] is False and healed["real"] == fresh["real"]
    assert str(path) in caplog.text and "does not read" in caplog.text
    assert tstr(*args, epochs=2, cache_dir=tmp_path)["real_cached"] is True
    # so is one of another architecture (it loads as a file, not as this network)
    from safetensors.torch import save_file
    from radiodiff.evaluation.classifier import SmallCNN
    save_file({k: v.contiguous() for k, v in SmallCNN(2, widths=(8,)).state_dict().items()},
              str(path))
    caplog.clear()
    with caplog.at_level("WARNING"):
        healed = tstr(*args, epochs=2, cache_dir=tmp_path)
    assert healed["real_cached"] is False and healed["real"] == fresh["real"]
    assert str(path) in caplog.text


def test_the_protocol_is_part_of_the_key(monkeypatch, tmp_path):
    from radiodiff.evaluation import classifier
    train = (np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 0, 1]))
    before = real_arm_path(tmp_path, train, 2, 2, 0)
    monkeypatch.setattr(classifier, "_RECAL_IMAGES", 256)
    assert real_arm_path(tmp_path, train, 2, 2, 0) != before
    monkeypatch.undo()
    assert real_arm_path(tmp_path, train, np.int64(2), np.int64(2), np.int64(0)) == before
