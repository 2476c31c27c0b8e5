"""Background noise of clipped cutouts: rms, mask and autocorrelation on known noise."""

import numpy as np
import pytest

from helpers import synth

from radiodiff.evaluation.noise import (MAX_LAG, autocorrelation, background_mask,
                                        background_stats, halfnormal_rms)


def test_halfnormal_rms_recovers_sigma_of_clipped_noise():
    rng = np.random.default_rng(0)
    clipped = np.clip(rng.normal(0.0, 2.5e-4, 200_000), 0.0, None)
    assert (clipped == 0).mean() == pytest.approx(0.5, abs=0.01)
    assert halfnormal_rms(clipped) == pytest.approx(2.5e-4, rel=0.01)
    # the naive std of the clipped values is far off: the estimator is not a plain std
    assert clipped.std() < 0.65 * 2.5e-4
    assert np.isnan(halfnormal_rms(np.zeros(100)))


def test_background_mask_leaves_the_source_out():
    rng = np.random.default_rng(1)
    noise = synth.beam_noise(rng, 1, 64)[0]
    y, x = np.mgrid[:64, :64]
    source = 200.0 * np.exp(-((x - 32) ** 2 + (y - 32) ** 2) / (2 * 3.0 ** 2))
    mask, rms = background_mask(np.clip(noise + source, 0, None), beam_px=3.0)
    assert not mask[28:37, 28:37].any()          # the source and its wings are out
    assert mask.mean() > 0.85                    # most of the image is background
    assert rms == pytest.approx(1.0, rel=0.1)    # the noise, not the source


def test_autocorrelation_tells_white_from_beam_noise():
    rng = np.random.default_rng(2)
    white = np.clip(synth.beam_noise(rng, 1, 96, beam_px=0)[0], 0, None)
    beam = np.clip(synth.beam_noise(rng, 1, 96, beam_px=3.0)[0], 0, None)
    everywhere = np.ones(white.shape, bool)
    a_white, a_beam = autocorrelation(white, everywhere), autocorrelation(beam, everywhere)
    assert a_white.shape == (MAX_LAG + 1,) and a_white[0] == pytest.approx(1.0)
    assert np.abs(a_white[1:]).max() < 0.05
    # Gaussian beam of FWHM 3 px: underlying correlation exp(-k^2 / (4 s^2)), 0.84 at lag
    # 1 and 0.21 at lag 3; clipping lowers it a little, never to white
    assert a_beam[1] > 0.7 and 0.1 < a_beam[3] < 0.3 and abs(a_beam[MAX_LAG]) < 0.05
    # a mask: pairs are taken only inside it
    half = everywhere.copy()
    half[:, 48:] = False
    noisy = beam.copy()
    noisy[:, 48:] = rng.uniform(0, 100, (96, 48))
    assert autocorrelation(noisy, half)[3] == pytest.approx(a_beam[3], abs=0.08)


def test_background_stats_per_image_beam_lag():
    rng = np.random.default_rng(3)
    images = np.clip(synth.beam_noise(rng, 4, 48, beam_px=3.0), 0, None)[:, None] * 1e-4
    bg = background_stats(images, np.array([3.0, 3.0, 1.0, 20.0]))
    assert len(bg) == 4 and bg.acf.shape == (4, MAX_LAG + 1)
    assert bg.rms == pytest.approx(1e-4, rel=0.15)
    assert bg.acf_beam[0] == pytest.approx(bg.acf[0, 3])      # the curve at the beam lag
    assert bg.acf_beam[2] == pytest.approx(bg.acf[2, 1])
    assert np.isnan(bg.acf_beam[3])                          # beyond MAX_LAG
    assert bg.pixels[0].dtype == np.float32 and bg.pixels[0].size <= 48 * 48
