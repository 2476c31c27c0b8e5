"""Source morphology on images with known answers, and its per-class comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radiodiff.evaluation.morphology import (MORPHOLOGY_KEYS, compare_by_class, ks_ratios,
                                             morphology_stats, source_mask)

H = W = 80
BEAM = 3.0


def gauss(img, x, y, amp, sx, sy=None):
    sy = sx if sy is None else sy
    yy, xx = np.mgrid[:H, :W]
    img += amp * np.exp(-0.5 * (((xx - x) / sx) ** 2 + ((yy - y) / sy) ** 2))
    return img


def test_compact_source_is_round_centred_and_one_component():
    img = gauss(np.zeros((H, W)), 39.5, 39.5, 1.0, BEAM / 2.3548)  # the beam itself
    s = morphology_stats(img[None], BEAM)
    assert tuple(s) == MORPHOLOGY_KEYS
    assert s["n_components"][0] == 1
    assert s["elongation"][0] == pytest.approx(1.0, abs=1e-6)
    assert s["brightest_offset"][0] == pytest.approx(0.0, abs=1e-6)
    # flux beyond one FWHM of the peak: 2**-4 of a beam-shaped source (within the 5 % cut)
    assert s["outer_flux_fraction"][0] == pytest.approx(2 ** -4, abs=0.02)
    # 5 % of the peak of a beam: radius 1.274 sqrt(2 ln 20) = 3.12 px
    assert 5 < s["las"][0] < 9


def test_double_lobed_source_two_components_long_and_outer_flux():
    img = np.zeros((H, W))
    gauss(img, 15, 40, 1.0, 2.0)
    gauss(img, 65, 40, 0.8, 2.0)
    s = morphology_stats(img[None], BEAM)
    assert s["n_components"][0] == 2
    assert s["las"][0] > 55
    assert s["elongation"][0] > 5
    assert s["outer_flux_fraction"][0] > 0.4       # the second lobe is far from the peak
    assert s["brightest_offset"][0] == pytest.approx(24.5 / 80, abs=0.01)


def test_faint_unrelated_source_is_not_part_of_the_source():
    img = gauss(np.zeros((H, W)), 40, 40, 1.0, 2.0)
    gauss(img, 10, 10, 0.1, 2.0)                    # 10 % of the peak: under f_hi
    mask, groups = source_mask(img, BEAM)
    assert not mask[10, 10] and mask[40, 40]
    assert groups.max() == 1
    assert morphology_stats(img[None], BEAM)["n_components"][0] == 1


def test_components_within_a_beam_are_linked():
    img = np.zeros((H, W))
    img[40, 30:38] = 1.0
    img[40, 40:48] = 0.9                              # 2-pixel gap < beam 3 px
    assert morphology_stats(img[None], BEAM)["n_components"][0] == 1
    assert morphology_stats(img[None], 1.0)["n_components"][0] == 2


@pytest.mark.parametrize("beam, gap, linked", [
    (1.5, 1, True), (1.5, 2, False),           # FIRST: 5.4" beam on 3.6" pixels
    (3.0, 2, True), (3.0, 3, False), (4.2, 4, True), (4.2, 5, False)])
def test_the_gap_under_one_beam_links_whatever_the_beam(beam, gap, linked):
    img = np.zeros((H, W))
    img[40, 20:30] = 1.0
    img[40, 30 + gap:40 + gap] = 0.8                        # `gap` empty pixels between
    assert morphology_stats(img[None], beam)["n_components"][0] == (1 if linked else 2)
    # a chain of components each within a beam of the next is one source
    chain = np.zeros((H, W))
    chain[20, 10:50:gap + 1] = 1.0
    assert morphology_stats(chain[None], beam)["n_components"][0] == (
        1 if linked else len(range(10, 50, gap + 1)))


def test_the_gap_is_measured_on_the_sky_not_along_rows():
    img = np.zeros((H, W))
    img[40, 30] = img[42, 31] = 1.0                         # centres sqrt(5) apart: gap 1.24
    assert morphology_stats(img[None], 1.5)["n_components"][0] == 1
    img[42, 31], img[42, 32] = 0.0, 1.0                      # sqrt(8) apart: gap 1.83
    assert morphology_stats(img[None], 1.5)["n_components"][0] == 2


def test_line_is_elongated_and_finite():
    img = np.zeros((H, W))
    img[40, 20:60] = 1.0
    e = morphology_stats(img[None], BEAM)["elongation"][0]
    assert math.isfinite(e) and e > 30


def test_blank_image_and_bad_beam():
    s = morphology_stats(np.zeros((1, H, W)), BEAM)
    assert s["n_components"][0] == 0 and math.isnan(s["elongation"][0])
    with pytest.raises(ValueError, match="beam_px"):
        morphology_stats(np.zeros((1, H, W)), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        morphology_stats(np.full((1, H, W), np.nan), BEAM)


def test_per_image_beams_and_scale_invariance():
    img = gauss(np.zeros((H, W)), 40, 40, 1.0, 3.0, 1.5)
    a = morphology_stats(np.stack([img, 1e-3 * img]), [BEAM, BEAM])
    for k in MORPHOLOGY_KEYS:
        assert a[k][0] == pytest.approx(a[k][1])


def _population(rng, n, length):
    imgs = []
    for _ in range(n):
        img = np.zeros((H, W))
        d = rng.normal(length, 3)
        gauss(img, 40 - d / 2, 40, 1.0, 2.0)
        gauss(img, 40 + d / 2, 40, rng.uniform(0.5, 1.0), 2.0)
        imgs.append(img + 0.01 * rng.random((H, W)))
    return np.stack(imgs)


def test_compare_by_class_separates_a_wrong_class_and_not_a_right_one():
    rng = np.random.default_rng(0)
    real = np.concatenate([_population(rng, 40, 40), _population(rng, 40, 10)])
    labels = np.repeat([0, 1], 40)
    good = np.concatenate([_population(rng, 20, 40), _population(rng, 20, 10)])
    bad = np.concatenate([_population(rng, 20, 40), _population(rng, 20, 25)])  # class 1 wrong
    fl = np.repeat([0, 1], 20)
    rs = morphology_stats(real, BEAM)
    ok = ks_ratios(compare_by_class(rs, labels, morphology_stats(good, BEAM), fl, ["A", "B"]))
    wrong = ks_ratios(compare_by_class(rs, labels, morphology_stats(bad, BEAM), fl, ["A", "B"]))
    assert set(ok) >= {"all/las", "A/las", "B/las"}
    assert wrong["B/las"] > 3 and ok["B/las"] < 2
    assert wrong["A/las"] < 2


def test_a_statistic_constant_in_the_real_set_still_counts():
    """Every real Compact source is one component: the floor is 0, and generated doubles
    are a failure (inf), not a cell left out; generated singles are at the floor."""
    real = {"n_components": np.ones(40)}
    labels = np.zeros(40, int)
    doubles = {"n_components": np.r_[np.ones(14), np.full(6, 2.0)]}
    singles = {"n_components": np.ones(20)}
    fl = np.zeros(20, int)
    bad = ks_ratios(compare_by_class(real, labels, doubles, fl, ["Compact"]))
    good = ks_ratios(compare_by_class(real, labels, singles, fl, ["Compact"]))
    assert bad == {"all/n_components": math.inf, "Compact/n_components": math.inf}
    assert good == {"all/n_components": 1.0, "Compact/n_components": 1.0}
    few = ks_ratios(compare_by_class(real, labels, {"n_components": np.ones(0)},
                                     np.zeros(0, int), ["Compact"]))
    assert math.isnan(few["all/n_components"])  # no floor could be had: no cell
