"""The faint end: a pair that differs only below 1 % of the peak must not be called alike."""

import numpy as np
import pytest

from helpers import synth

from radiodiff.evaluation.metrics import EvalSettings, evaluate
from radiodiff.evaluation.report import write_report
from radiodiff.evaluation.sets import ImageSet, reference_set
from radiodiff.evaluation.faint import background_fractions, faint_view

FAST = EvalSettings(classifier_epochs=4, rvf_folds=3, rvf_epochs=15, sourcefinder=False,
                    n_repeats=3)


def _thresholded(s: ImageSet) -> ImageSet:
    """FIRST-like: everything below 1 % of the peak exactly 0 (the survey's 3-rms cut)."""
    x = s.images.copy()
    x[x < 0.01 * x.max(axis=(2, 3), keepdims=True)] = 0.0
    return ImageSet(x, s.labels, s.name)


def test_background_fractions_and_view_have_known_values():
    x = np.zeros((2, 1, 10, 10), np.float32)
    x[:, 0, 5, 5] = 1.0
    x[0, 0, 0, :4] = 0.005          # 4 pixels in (0, 1 %] of the peak
    x[1, 0, 0, 0] = 0.5             # bright: neither zero nor faint
    f = background_fractions(x)
    assert f["zero"] == pytest.approx((99 - 4 + 98) / 200)
    assert f["faint"] == pytest.approx(4 / 200)
    assert faint_view(x)[0, 0, 0, 0] == pytest.approx(0.005 ** 0.25)
    with pytest.raises(ValueError, match="power"):
        faint_view(x, 2.0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("faint") / "set.h5")


def test_a_faint_haze_alone_is_caught(prepared, tmp_path):
    """Same sources, plus a 2e-4 haze on half of the exactly-zero sky (issue 10's numbers)."""
    real, other, train = (_thresholded(reference_set(prepared, split)[0])
                          for split in ("test", "valid", "train"))
    rng = np.random.default_rng(0)
    hazy = other.images.copy()
    sky = hazy == 0
    haze = rng.exponential(2e-4, hazy.shape).astype(np.float32) * (rng.random(hazy.shape) < 0.5)
    hazy[sky] = haze[sky]
    fake = ImageSet(hazy, other.labels.copy(), "hazy copy of valid")
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    m = evaluate(real, fake, train, {"classes": ["blob", "double"], "data_sha256": "cd" * 32,
                                     "pixel_scale_arcsec": 1.8, "beam_arcsec": [5.4, 5.4]},
                 settings)
    # the linear shape statistics are guarded and do not see the haze ...
    for key in ("size", "elongation", "radius"):
        assert m.distances[key]["wasserstein1"]["ratio"] < 3, key
    # ... but the faint view, the background fractions and the verdict do
    assert m.real_vs_fake_faint["mean_accuracy"] > 0.85
    assert m.background["fake"]["zero"] < m.background["real"]["zero"] - 0.2
    checks = m.verdict["checks"]
    assert not checks["zero_fraction_pp"]["pass"] and not checks["real_vs_fake_faint"]["pass"]
    assert m.verdict["alike"] is False
    paths = write_report(m, real, fake, tmp_path / "report", ["blob", "double"])
    md = paths["report.md"].read_text()
    assert "**Verdict**: distinguishable" in md and "Faint end" in md


def test_every_image_in_the_html_report_exists(prepared, tmp_path):
    import re
    real, _ = reference_set(prepared, "test")
    other, _ = reference_set(prepared, "valid")
    train, _ = reference_set(prepared, "train")
    settings = EvalSettings(**{**FAST.__dict__, "cache_dir": str(tmp_path / "cache")})
    m = evaluate(real, other, train, {"classes": ["blob", "double"], "data_sha256": "ef" * 32,
                                      "pixel_scale_arcsec": 1.8, "beam_arcsec": [5.4, 5.4]},
                 settings)
    out = tmp_path / "report"
    html = write_report(m, real, other, out, ["blob", "double"])["report.html"].read_text()
    sources = re.findall(r"<img src='([^']*)'", html)
    assert len(sources) >= 6 and "confusion_real.png" in sources
    for src in sources:
        assert (out / src).is_file(), src
