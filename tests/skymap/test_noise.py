"""Beam-correlated noise: rms per beam as requested, correlation length, tiles agree."""

import math

import numpy as np
import pytest

from radiodiff.skymap.noise import BLOCK, noise_kernel, noise_tile, white_noise
from radiodiff.skymap.sky import Beam, make_grid


@pytest.fixture(scope="module")
def big():
    # 0.3 deg at 1.8": 600 x 600 px, ~32 000 beams: rms known to ~0.5 %.
    g = make_grid(150.0, 30.0, [0.3, 0.3], 1.8, Beam(5.4, 5.4))
    return g, noise_tile(g, (0, g.shape[0]), 1.5e-4, seed=3)


def test_rms_per_beam_matches_request(big):
    _, n = big
    assert n.std() == pytest.approx(1.5e-4, rel=0.05)
    assert abs(n.mean()) < 0.05 * 1.5e-4


def test_autocorrelation_is_the_beam(big):
    """Correlation at one beam sigma is exp(-1/2) (beam FWHM 3 px -> sigma 1.27 px)."""
    _, n = big
    s = 5.4 / (2 * math.sqrt(2 * math.log(2))) / 1.8
    lag = 2  # px
    r = (n[:, lag:] * n[:, :-lag]).mean() / n.var()
    assert r == pytest.approx(math.exp(-lag**2 / (4 * s**2)) ** 2, abs=0.03)


def test_tiles_are_bit_identical(big):
    g, n = big
    np.testing.assert_array_equal(noise_tile(g, (250, 400), 1.5e-4, seed=3), n[250:400])


def test_rms_map_scales_noise(big):
    g, n = big
    rms_map = np.full((10, g.shape[1]), 3e-4)
    np.testing.assert_allclose(noise_tile(g, (0, 10), 1.5e-4, 3, rms_map), 2 * n[:10],
                               rtol=1e-12)


def test_white_noise_blocks_and_margins():
    a = white_noise(7, -5, BLOCK + 5, -5, 30)
    b = white_noise(7, 0, 10, 0, 10)
    np.testing.assert_array_equal(a[5:15, 5:15], b)
    assert abs(a.std() - 1) < 0.05


def test_kernel_is_beam_over_sqrt2():
    k = noise_kernel(Beam(6.0, 6.0), 1.5)
    assert k.shape[0] % 2 == 1 and k.sum() == pytest.approx(1.0, abs=1e-3)


def test_bad_rms():
    g = make_grid(0, 0, [0.01, 0.01], 1.8, Beam(5.4, 5.4))
    with pytest.raises(ValueError, match="noise rms must be a positive"):
        noise_tile(g, (0, 5), 0.0, 0)
