"""Placing sources: positions to 0.1 px, integrated flux through resampling, overlaps add."""

import numpy as np
import pytest

from radiodiff.skymap.render import (Cutout, ModelCutouts, extent_px, gaussian_stamp,
                                     place_cutout, render_tile)
from radiodiff.skymap.sky import FWHM_PER_SIGMA, Beam
from radiodiff.skymap.sources import Sources, fill_position_angles


def _centroid(stamp):
    yy, xx = np.mgrid[:stamp.data.shape[0], :stamp.data.shape[1]]
    w = stamp.data
    return (w * xx).sum() / w.sum() + stamp.x0, (w * yy).sum() / w.sum() + stamp.y0


def _flux(stamp, grid):
    return stamp.data.sum() / grid.beam.area_px(grid.pixel_scale_arcsec)


def _symmetric_cutout(size=32, sigma_px=3.0, peak=0.02, scale=0.9, beam=None):
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    img = peak * np.exp(-0.5 * (xx**2 / sigma_px**2 + yy**2 / (2 * sigma_px) ** 2))
    return Cutout(img, scale, beam)


def test_gaussian_lands_on_pixel_and_keeps_flux(grid):
    ra, dec = 150.0123, 29.9871
    x, y = grid.to_pixel(ra, dec)
    s = gaussian_stamp(grid, float(x), float(y), flux=0.01, las=4.0)
    cx, cy = _centroid(s)
    assert abs(cx - x) < 0.1 and abs(cy - y) < 0.1
    assert _flux(s, grid) == pytest.approx(0.01, rel=1e-3)
    peak = 0.01 * 5.4**2 / (5.4**2 + 16)  # off a pixel centre the sampled peak is lower
    assert 0.95 * peak < s.data.max() <= peak


def test_unresolved_gaussian_peak_is_flux(grid):
    x, y = 100.0, 80.0  # on a pixel centre: the sampled peak is the analytic one
    s = gaussian_stamp(grid, x, y, flux=0.003, las=0.0)
    assert s.data.max() == pytest.approx(0.003, rel=1e-9)


def _moments(stamp):
    """(centroid x, y; covariance (2, 2) on the pixel axes) of a stamp [px, px^2]."""
    yy, xx = np.mgrid[:stamp.data.shape[0], :stamp.data.shape[1]]
    cx, cy = _centroid(stamp)
    w = stamp.data / stamp.data.sum()
    dx, dy = xx + stamp.x0 - cx, yy + stamp.y0 - cy
    cov = np.array([[(w * dx * dx).sum(), (w * dx * dy).sum()],
                    [(w * dx * dy).sum(), (w * dy * dy).sum()]])
    return cx, cy, cov


def _sky_pa_of_major_axis(grid, stamp):
    """PA (deg east of north, in [0, 180)) of the stamp's major axis, measured with the
    map's WCS: from the centroid one pixel along the axis, as astropy sees it on the sky."""
    from astropy.coordinates import SkyCoord

    cx, cy, cov = _moments(stamp)
    ex, ey = np.linalg.eigh(cov)[1][:, 1]
    (ra0, ra1), (dec0, dec1) = grid.wcs.pixel_to_world_values([cx, cx + ex], [cy, cy + ey])
    a, b = SkyCoord(ra0, dec0, unit="deg"), SkyCoord(ra1, dec1, unit="deg")
    return a.position_angle(b).deg % 180.0


def _angle_diff(a, b):
    return abs((a - b + 90.0) % 180.0 - 90.0)


@pytest.mark.parametrize("pa", [0.0, 30.0, 90.0, 135.0])
def test_elliptical_gaussian_keeps_flux_and_lies_at_its_pa(grid, pa):
    """PA east of north (astronomical): checked on the sky through the WCS, where RA grows
    to the left, so PA 90 lies along -x."""
    x, y = grid.to_pixel(150.0041, 29.9967)
    s = gaussian_stamp(grid, float(x), float(y), flux=0.02, las=20.0, q=0.3, pa=pa)
    assert _flux(s, grid) == pytest.approx(0.02, rel=1e-3)
    assert _angle_diff(_sky_pa_of_major_axis(grid, s), pa) < 2.0
    cov = _moments(s)[2]
    if pa == 90.0:
        assert cov[0, 0] > 3 * cov[1, 1]
    if pa == 135.0:  # south-east (-x, -y) to north-west: along the x = y diagonal
        assert cov[0, 1] > 0.0 and cov[0, 0] == pytest.approx(cov[1, 1], rel=0.02)


def test_elliptical_gaussian_is_the_beam_convolved_with_the_source():
    """Second moments of the stamp = beam covariance + source covariance."""
    from radiodiff.skymap.sky import gaussian_covariance, make_grid

    g = make_grid(150.0, 30.0, [0.1, 0.1], 1.0, Beam(6.0, 4.0, 20.0))
    s = gaussian_stamp(g, 180.3, 170.6, flux=0.01, las=15.0, q=0.4, pa=70.0)
    expect = g.beam.covariance() + gaussian_covariance(15.0, 6.0, 70.0 + g.north_deg(180.3,
                                                                                      170.6))
    np.testing.assert_allclose(_moments(s)[2], expect, rtol=2e-3, atol=1e-3)
    assert _flux(s, g) == pytest.approx(0.01, rel=1e-6)


def test_pa_is_east_of_local_north_far_from_the_map_centre():
    """At Dec 75 the corner of a 3 deg map has north tilted by ~5 deg from +y: the PA is
    measured from the local north, as on the sky."""
    from radiodiff.skymap.sky import make_grid

    g = make_grid(150.0, 75.0, [3.0, 3.0], 6.0, Beam(18.0, 18.0))
    x, y = 100.0, 1700.0
    assert abs(g.north_deg(x, y)) > 4.0
    s = gaussian_stamp(g, x, y, flux=1.0, las=60.0, q=0.3, pa=20.0)
    assert _angle_diff(_sky_pa_of_major_axis(g, s), 20.0) < 1.0


def test_round_gaussian_ignores_the_pa(grid):
    a = gaussian_stamp(grid, 50.2, 60.7, flux=0.01, las=8.0, pa=10.0)
    b = gaussian_stamp(grid, 50.2, 60.7, flux=0.01, las=8.0, q=1.0, pa=123.0)
    assert a.data.tobytes() == b.data.tobytes()


@pytest.mark.parametrize("pa", [0.0, 37.0])
def test_cutout_lands_on_pixel(grid, pa):
    ra, dec = 149.9911, 30.0142
    x, y = grid.to_pixel(ra, dec)
    s = place_cutout(grid, _symmetric_cutout(), ra, dec, pa, flux=0.05)
    cx, cy = _centroid(s)
    assert abs(cx - x) < 0.1 and abs(cy - y) < 0.1
    assert _flux(s, grid) == pytest.approx(0.05, rel=1e-9)


def test_cutout_rotation_follows_pa(grid):
    """The cutout's long (y) axis ends up along PA east of north: at PA 90 along -x."""
    s = place_cutout(grid, _symmetric_cutout(), 150.0, 30.0, 90.0, flux=0.05)
    yy, xx = np.mgrid[:s.data.shape[0], :s.data.shape[1]]
    cx, cy = _centroid(s)
    w = s.data / s.data.sum()
    var_x = (w * (xx + s.x0 - cx) ** 2).sum()
    var_y = (w * (yy + s.y0 - cy) ** 2).sum()
    assert var_x > 3 * var_y


def test_cutout_integrated_flux_conserved_across_scales_and_beams(grid):
    """A Jy/beam cutout at 3.6"/px with a 7" beam, kept at its own flux (flux=None),
    onto the 1.8"/px, 5.4"-beam map: the integrated flux (Jy) is preserved to 2 %."""
    beam_c = Beam(7.0, 7.0)
    cut = _symmetric_cutout(size=40, sigma_px=2.5, scale=3.6, beam=beam_c)
    true = cut.image.sum() / beam_c.area_px(3.6)
    s = place_cutout(grid, cut, 150.0031, 30.0017, 23.0, flux=None)
    assert _flux(s, grid) == pytest.approx(true, rel=0.02)


@pytest.mark.parametrize("pa", [0.0, 40.0])
def test_flat_cutout_keeps_flux_at_its_edges(grid, pa):
    """Emission up to the cutout's border: edge pixels partly cover map pixels."""
    beam_c = Beam(5.0, 4.0)
    cut = Cutout(np.full((16, 16), 0.01), 1.8, beam_c)
    s = place_cutout(grid, cut, 150.0007, 30.0003, pa, flux=None)
    assert _flux(s, grid) == pytest.approx(cut.image.sum() / beam_c.area_px(1.8), rel=1e-6)


def test_normalised_cutout_needs_flux(grid):
    with pytest.raises(ValueError, match="needs the source's flux"):
        place_cutout(grid, _symmetric_cutout(), 150.0, 30.0, 0.0, flux=None)


def test_extent_of_a_bar():
    img = np.zeros((20, 20))
    img[10, 3:15] = 1.0
    assert extent_px(img) == pytest.approx(12.0)


def test_extent_ignores_companions_but_keeps_both_lobes():
    """A double (two lobes 1 px apart) spans both lobes; a far companion is not the source."""
    img = np.zeros((40, 40))
    img[20, 10:14] = 1.0
    img[20, 15:19] = 0.8          # second lobe, 1 px gap: same source
    img[35, 35] = 0.5             # companion in the field
    assert extent_px(img) == pytest.approx(9.0)


def test_las_rule_never_shrinks_below_the_release_pixel_scale(shape_release_dir):
    """Shrinking a cutout would shrink its beam below the survey's: the release scale is a floor."""
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.pipeline.release import load_release

    release = load_release(shape_release_dir)
    cuts = ModelCutouts(release, SamplerSpec(steps=2))
    assert cuts.las_rule and cuts.scale == release.meta["pixel_scale_arcsec"]
    small = cuts(0.01, 1.0, release.classes[0], seed=3)   # a 1" LAS would need ~0.1"/px
    assert small.pixel_scale_arcsec == cuts.scale
    assert cuts.max_radius_arcsec(1.0) >= release.image_size * cuts.scale * np.sqrt(0.5)


def test_overlapping_sources_add(grid):
    src = Sources.build([150.0, 150.0005], [30.0, 30.0003], [0.01, 0.02], las=[0.0, 3.0])
    src = fill_position_angles(src, seed=0)
    both, truth = render_tile(grid, src, (0, grid.shape[0]))
    singles = [render_tile(grid, src.take([i]), (0, grid.shape[0]))[0] for i in (0, 1)]
    np.testing.assert_allclose(both, singles[0] + singles[1], rtol=0, atol=1e-15)
    assert truth["id"] == [0, 1] and truth["kind"] == ["gaussian", "gaussian"]
    np.testing.assert_allclose(truth["flux_meas"], [0.01, 0.02], rtol=1e-6)


def test_model_cutouts_physical_release(physical_release, grid):
    """A flux/LAS-conditioned Jy/beam release: release pixel scale, its beam, Jy/beam."""
    from radiodiff.diffusion.sampling import SamplerSpec

    cuts = ModelCutouts(physical_release, SamplerSpec(steps=2))
    assert not cuts.shape_only and not cuts.las_rule
    a = cuts(0.01, 20.0, "FRII", seed=5)
    b = cuts(0.01, 20.0, "FRII", seed=5)
    assert a.pixel_scale_arcsec == 1.8 and a.beam == Beam(5.0, 4.0)
    np.testing.assert_array_equal(a.image, b.image)  # one seed per source
    assert a.image.shape == (16, 16) and a.image.max() == pytest.approx(0.01, rel=1e-5)


def test_render_resolved_source_with_model(physical_release, grid):
    from radiodiff.diffusion.sampling import SamplerSpec

    cuts = ModelCutouts(physical_release, SamplerSpec(steps=2))
    src = fill_position_angles(Sources.build([150.0], [30.0], [0.05], las=[30.0],
                                             cls_=["FRI"]), seed=1)
    tile, truth = render_tile(grid, src, (0, grid.shape[0]), cuts, seed=1)
    assert truth["kind"] == ["model"] and truth["seed"][0] >= 0
    assert truth["flux_meas"][0] == pytest.approx(0.05, rel=1e-6)
    assert tile.sum() / grid.beam.area_px(1.8) == pytest.approx(0.05, rel=1e-6)


def test_fwhm_constant():
    assert FWHM_PER_SIGMA == pytest.approx(2.35482, rel=1e-5)


def test_empty_model_image_falls_back_to_a_gaussian(grid):
    class Empty:
        def max_radius_arcsec(self, las):
            return las

        def many(self, peaks, lases, classes, seeds):
            return [Cutout(np.zeros((16, 16)), 1.8, None) for _ in seeds]

    empty = Empty()

    src = fill_position_angles(Sources.build([150.0], [30.0], [0.05], las=[30.0]), seed=1)
    tile, truth = render_tile(grid, src, (0, grid.shape[0]), empty, seed=1)
    assert truth["kind"] == ["fallback"]
    assert truth["flux_meas"][0] == pytest.approx(0.05, rel=1e-6)


def test_model_cutouts_in_a_batch_are_the_cutouts_made_one_by_one(busy_release_dir):
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.pipeline.release import load_release

    cuts = ModelCutouts(load_release(busy_release_dir), SamplerSpec(steps=2))
    args = ([0.01, 0.03, 0.02], [20.0, 35.0, 12.0], ["FRII", "", "FRI"], [5, 2**40, 77])
    batch = cuts.many(*args)
    for k, one in enumerate(cuts(*(a[k] for a in args)) for k in range(3)):
        assert one.image.tobytes() == batch[k].image.tobytes()
        assert one.pixel_scale_arcsec == batch[k].pixel_scale_arcsec and one.beam == batch[k].beam


def test_render_settings_are_checked(grid):
    from radiodiff.skymap.render import RenderSettings

    src = fill_position_angles(Sources.build([150.0], [30.0], [0.01]), seed=0)
    with pytest.raises(ValueError, match="render.batch_size must be an integer >= 1, got 0"):
        render_tile(grid, src, (0, 10), settings=RenderSettings(batch_size=0))
    with pytest.raises(ValueError, match="render.flux_from must be one of auto, catalogue, model"):
        render_tile(grid, src, (0, 10), settings=RenderSettings(flux_from="peak"))


def test_source_only_drops_the_generated_background_noise():
    from radiodiff.skymap.render import source_only
    rng = np.random.default_rng(0)
    rms = 1.5e-4
    noise = np.clip(rng.normal(0, rms, (80, 80)), 0, None)   # clipped, as the cutouts are
    y, x = np.mgrid[:80, :80]
    source = 0.02 * np.exp(-((x - 40) ** 2 + (y - 30) ** 2) / (2 * 3.0 ** 2))
    faint = 2.0 * rms * np.exp(-((x - 10) ** 2 + (y - 70) ** 2) / (2 * 2.0 ** 2))  # < 5 rms
    image = (source + faint + noise).astype(np.float32)
    out = source_only(image, rms)
    assert out.dtype == np.float32 and out.max() == image.max()
    assert out[30, 40] == image[30, 40]                       # the source is kept as is
    assert out[70, 10] == 0 and out[0:10, 60:80].sum() == 0   # no peak > 5 rms; sky: 0
    kept = out > 0
    assert np.all(image[kept] > 3 * rms)
    assert abs(out.sum() / (source[source > 3 * rms].sum()) - 1) < 0.05
    assert not source_only(noise.astype(np.float32), rms).any()


def test_source_only_drops_noise_islands_around_a_bright_source():
    from radiodiff.skymap.render import source_only
    rng = np.random.default_rng(1)
    rms = 1.5e-4
    y, x = np.mgrid[:80, :80]
    bright = 0.065 * np.exp(-((x - 40) ** 2 + (y - 40) ** 2) / (2 * 3.0 ** 2))
    # noise at 1 % of the peak (4 rms): islands above 5 rms everywhere
    image = (bright + np.clip(rng.normal(0, 6.5e-4, (80, 80)), 0, None)).astype(np.float32)
    assert (image[:20] > 5 * rms).sum() > 20
    out = source_only(image, rms)
    assert out[:20].sum() == 0 and out[40, 40] == image[40, 40]


def test_map_cutouts_leave_out_the_datas_noise_islands(tmp_path):
    """The map adds its own noise: a release whose projection lays FIRST's noise islands
    under its images gives the map clean cutouts (the same as islands=False)."""
    from helpers.releases import tiny_release
    from radiodiff.pipeline.generate import generate
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.pipeline.release import load_release

    islands = dict(k_mean=2.0, k_std=0.0, ln_r_mean=-3.0, ln_r_std=0.0, r_max=0.2,
                   beam_fwhm_px=3.0, factor=2)
    rel = load_release(tiny_release(tmp_path / "rel", ["FRI"], size=32, busy=True,
                                    projection={"floor": 8e-4, "halo_px": 2,
                                                "peak_one": True, "islands": islands}))
    spec = SamplerSpec.build(sampler="dpmpp_2m", steps=3)
    cut = ModelCutouts(rel, spec).many([0.01], [20.0], ["FRI"], [5])[0]
    kw = dict(label=["FRI"], spec=spec, seeds=[5], batch_size=1)
    clean = generate(rel, 1, islands=False, **kw).output[0, 0]
    noisy = generate(rel, 1, **kw).output[0, 0]
    assert (noisy > 0).sum() > (clean > 0).sum()       # the release does draw islands
    np.testing.assert_array_equal(cut.image, clean)
