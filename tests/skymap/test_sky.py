"""Map grid, beam, tiles and cutout WCS."""

import math

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from radiodiff.skymap.sky import Beam, cutout_wcs, make_grid, tile_rows


def test_grid_wcs_and_shape():
    g = make_grid(150.0, 30.0, [0.2, 0.1], 1.8, Beam(5.4, 5.4), "TAN")
    assert g.shape == (200, 400)
    assert list(g.wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    ra, dec = g.wcs.pixel_to_world_values((400 - 1) / 2, (200 - 1) / 2)  # centre pixel
    assert ra == pytest.approx(150.0, abs=1e-9) and dec == pytest.approx(30.0, abs=1e-9)
    x0, _ = g.to_pixel(150.0, 30.0)
    x1, _ = g.to_pixel(150.0 + 18.0 / 3600 / math.cos(math.radians(30)), 30.0)
    assert x1 - x0 == pytest.approx(-10.0, rel=1e-4)  # RA grows to the left, 1.8"/px


def test_beam_area():
    b = Beam(5.4, 5.4)
    assert b.area_arcsec2 == pytest.approx(1.1331 * 5.4**2, rel=1e-4)
    assert b.area_px(1.8) == pytest.approx(1.1331 * 9, rel=1e-4)
    with pytest.raises(ValueError, match="bmaj >= bmin > 0"):
        Beam(4.0, 5.0)


def test_bad_grid_inputs():
    with pytest.raises(ValueError, match="projection must be one of"):
        make_grid(0, 0, [0.1, 0.1], 1.8, Beam(5, 5), "CAR")
    with pytest.raises(ValueError, match="at least 8 x 8"):
        make_grid(0, 0, [0.001, 0.1], 1.8, Beam(5, 5))
    for size in ([0.1], [0.1, float("nan")], [0.1, -1], [0.1, 0.1, 0.1]):
        with pytest.raises(ValueError, match=r"size_deg must be \[width, height\] > 0"):
            make_grid(0, 0, size, 1.8, Beam(5, 5))
    with pytest.raises(ValueError, match="beam position angle must be finite"):
        Beam(5, 5, float("nan"))


def test_tiles_cover_rows_once():
    edges = [tile_rows(101, k, 4) for k in range(4)]
    assert edges[0][0] == 0 and edges[-1][1] == 101
    assert all(a[1] == b[0] for a, b in zip(edges, edges[1:]))
    with pytest.raises(ValueError, match="0 <= K < N"):
        tile_rows(100, 4, 4)


@pytest.mark.parametrize("pa", [0.0, 30.0, 135.0, 300.0])
def test_cutout_up_axis_points_to_pa(pa):
    w = cutout_wcs(150.0, 30.0, 2.0, pa, 33)
    c0 = SkyCoord(*w.pixel_to_world_values(16, 16), unit="deg")
    c1 = SkyCoord(*w.pixel_to_world_values(16, 26), unit="deg")
    assert c0.position_angle(c1).deg % 360 == pytest.approx(pa, abs=1e-6)
    assert c0.separation(c1).arcsec == pytest.approx(20.0, rel=1e-6)
    assert np.allclose(c0.ra.deg, 150.0) and np.allclose(c0.dec.deg, 30.0)
