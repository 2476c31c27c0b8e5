"""`radiodiff evaluate`: end to end on synthetic sets with known answers, and bad input."""

import json

import numpy as np
import pytest

from radiodiff.cli import main
from radiodiff.evaluate import EvalSettings, ImageSet, evaluate, reference_set, write_report
from radiodiff.h5io import FLOAT_COLUMNS, write_prepared

FAST = EvalSettings(classifier_epochs=4, rvf_folds=3, rvf_epochs=4, sf_max_images=12,
                    sf_processes=1, n_repeats=3)


def _blobs(rng, n, kind, size=16):
    """kind 0: compact blob; kind 1: double source along a random axis."""
    y, x = np.mgrid[:size, :size]
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        cx, cy = rng.uniform(6, 9, 2)
        if kind == 0:
            img = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rng.uniform(1.0, 1.6) ** 2))
        else:
            a = rng.uniform(0, np.pi)
            d = rng.uniform(3, 5)
            img = sum(np.exp(-((x - cx - s * d * np.cos(a)) ** 2 + (y - cy - s * d * np.sin(a))
                               ** 2) / 2.0) for s in (-1, 1))
        out[i, 0] = img / img.max()
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    rng = np.random.default_rng(0)
    n_per = {"train": 60, "valid": 40, "test": 40}
    images, labels, splits = [], [], []
    for split, n in n_per.items():
        for k in (0, 1):
            images.append(_blobs(rng, n // 2, k))
            labels += [k] * (n // 2)
            splits += [split] * (n // 2)
    images = np.concatenate(images)
    n = len(images)
    cols = {c: np.full(n, 1.0) for c in FLOAT_COLUMNS}
    cols["pixel_scale_arcsec"][:] = 1.8
    cols.update(label=np.array(labels, np.int16), split=np.array(splits, dtype=object),
                source_id=np.array([f"s{i}" for i in range(n)], dtype=object),
                flags=np.zeros(n, np.uint8), beam_arcsec=np.full((n, 2), 5.4))
    path = tmp_path_factory.mktemp("eval") / "set.h5"
    return write_prepared(path, images, cols, {"name": "blobs", "classes": ["blob", "double"],
                                               "data_sha256": "ab" * 32})


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


def test_conditioning_accuracy_known_answer():
    from radiodiff.evaluate import conditioning_accuracy
    req = np.array([10.0, 20.0, 40.0, 80.0])
    c = conditioning_accuracy(req, req * 1.1)
    assert c["n"] == 4 and c["median_relative_error"] == pytest.approx(0.1)
    assert c["spearman"] == pytest.approx(1.0)
    c = conditioning_accuracy(req, req[::-1])
    assert c["spearman"] == pytest.approx(-1.0) and c["median_abs_relative_error"] > 0.5
    assert conditioning_accuracy(req[:2], req[:2]) == {"n": 2}
    assert conditioning_accuracy(req, np.ones(4))["spearman"] is None  # constant: undefined


def test_bad_inputs(prepared, tmp_path, capsys):
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
    assert main(["evaluate", "--reference", str(prepared)]) == 2
    assert "give --model" in capsys.readouterr().err


def test_cli_real_vs_real(prepared, tmp_path, capsys):
    assert main(["evaluate", "--reference", str(prepared), "--real-split", "valid",
                 "--no-sourcefinder", "--rvf-folds", "2", "--rvf-epochs", "2",
                 "--classifier-epochs", "2", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert "real valid vs real test" in capsys.readouterr().out
