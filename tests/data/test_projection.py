"""The output projection (floor with its halo, peak at 1, the data floor) on arrays with
known answers, and the checks of the data config's projection keys."""

import numpy as np
import pytest


def test_projection_keeps_sources_and_their_halo_and_zeroes_isolated_specks():
    from radiodiff.data.projection import project_like_data
    x = np.zeros((1, 1, 20, 20), np.float32)
    x[0, 0, 10, 10] = 0.8                  # the source: peak 0.8 -> 1 after projection
    x[0, 0, 10, 12] = 1e-4                 # sub-quantum, 2 px from it: the resampling halo
    x[0, 0, 2, 2] = 1e-4                   # sub-quantum, far away: a speck the data lack
    x[0, 0, 15, 3] = 0.05                  # faint but above the floor: kept
    y = project_like_data(x, floor=1 / 255, halo_px=2)
    assert y.max() == 1.0 and y[0, 0, 10, 10] == 1.0
    assert y[0, 0, 10, 12] == pytest.approx(1e-4 / 0.8) and y[0, 0, 2, 2] == 0.0
    assert y[0, 0, 15, 3] == pytest.approx(0.05 / 0.8)
    assert x[0, 0, 2, 2] == 1e-4           # the input is not modified
    blank = np.zeros((1, 1, 4, 4), np.float32)
    assert (project_like_data(blank, 0.01) == 0).all()
    np.testing.assert_array_equal(project_like_data(x, None, peak_one=False), x)


def test_the_data_floor_is_the_largest_that_leaves_every_real_image_as_it_is(tmp_path):
    from radiodiff.data.projection import largest_kept_floor, project_like_data, read_kept_floor
    rng = np.random.default_rng(3)
    x = np.zeros((6, 1, 24, 24), np.float32)
    x[:, 0, 12, 12] = rng.uniform(0.5, 2.0, 6)             # the sources, peaks not 1
    for img in x[:, 0]:
        img[rng.integers(0, 24, 5), rng.integers(0, 24, 5)] = rng.uniform(1e-4, 1e-2, 5)
    floor = largest_kept_floor(x, halo_px=2)
    np.testing.assert_array_equal(project_like_data(x, floor, 2, peak_one=False), x)
    assert (project_like_data(x, floor * 1.001, 2, peak_one=False) != x).any()
    # the answer is an isolated speck's own ratio to its image's peak
    ratios = [img[(img > 0) & (img < img.max())].min() / img.max() for img in x[:, 0]]
    assert floor == pytest.approx(min(ratios), rel=1e-5)
    # a wider halo lets a faint pixel next to a brighter one through at a higher floor
    assert largest_kept_floor(x, halo_px=30) == pytest.approx(1.0, rel=1e-5)
    assert largest_kept_floor(np.zeros((2, 8, 8))) is None
    # read from a prepared file by rows, a chunk at a time: the same number
    import h5py
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["images"] = x
    assert read_kept_floor(tmp_path / "p.h5", [4, 1, 3], 2, chunk=2) == \
        largest_kept_floor(x[[1, 3, 4]], 2)


def test_halo_0_reproduces_a_pixel_by_pixel_clip_and_keeps_every_real_pixel():
    """MiraBest (conf/data/mirabest.yaml): noise clipped at 0 pixel by pixel, so generated
    near-zero values beside positive noise go to exactly 0 too, and no real pixel moves."""
    from radiodiff.data.projection import largest_kept_floor, project_like_data
    rng = np.random.default_rng(5)
    real = np.clip(rng.normal(0, 0.01, (8, 1, 32, 32)), 0, None).astype(np.float32)
    real[:, 0, 16, 16] = 1.0
    floor = largest_kept_floor(real, halo_px=0)
    np.testing.assert_array_equal(project_like_data(real, floor, 0), real)
    assert (real == 0).mean() == pytest.approx(0.5, abs=0.03)
    fake = real.copy()
    fake[real == 0] = 1e-12                                  # the network's leftovers
    y = project_like_data(fake, floor, 0)
    assert (y == 0).mean() == pytest.approx((real == 0).mean())
    assert (project_like_data(fake, floor, 2) == 0).mean() < 0.05   # a halo keeps them


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "auto", True, [0.1]])
def test_an_absurd_projection_floor_is_one_clear_error(value):
    from radiodiff.data.projection import check_floor
    with pytest.raises(ValueError, match=r"data.projection_floor=.* \(must be a fraction"):
        check_floor(value, "data.projection_floor", data_ok=True)
    for ok in (None, "data", 1 / 255, 5e-4):
        assert check_floor(ok, "data.projection_floor", data_ok=True) == ok
    with pytest.raises(ValueError, match=r"meta.json: floor='data' \(must be a fraction of "
                                         r"the peak in \(0, 1\) or null\)"):
        check_floor("data", "meta.json: floor")  # a release records a number


def test_the_projection_keys_of_a_data_config_are_checked_together():
    from omegaconf import OmegaConf

    from radiodiff.config import load_config
    from radiodiff.data.prepare import validate_data_config
    from radiodiff.data.projection import check_projection_config
    first = load_config(["data=first"]).data
    check_projection_config(first)  # the shipped config: floor "data" and fitted islands
    assert first.projection_floor == "data" and first.projection_islands.k_mean > 0
    bad = OmegaConf.merge(first, {"projection_floor": 2.0, "projection_halo_px": -1,
                                  "projection_islands": {"k_mean": -3.0}})
    with pytest.raises(ValueError) as info:
        validate_data_config(bad)
    text = str(info.value)
    assert "projection_floor=2.0" in text and "projection_halo_px=-1" in text
    assert "data.projection_islands" in text and "k_mean" in text


def test_projection_from_is_the_one_rule_of_a_recorded_projection():
    from radiodiff.config import ProjectionConfig
    from radiodiff.data.islands import IslandModel
    from radiodiff.data.projection import projection_dict, projection_from
    isl = dict(k_mean=3.1, k_std=0.3, ln_r_mean=-4.5, ln_r_std=1.2, r_max=0.2,
               beam_fwhm_px=3.0, factor=2, levels=255)
    d = {"floor": 0.01, "halo_px": 1, "peak_one": True, "islands": isl}
    p = projection_from(d, "here")
    assert p == ProjectionConfig(0.01, 1, True, IslandModel(**isl))
    assert isinstance(p.islands, IslandModel)
    assert projection_dict(p) == d and projection_from(p) == p  # the two forms agree
    plain = {"floor": None, "halo_px": 2, "peak_one": False}
    assert projection_dict(projection_from(plain)) == plain   # no islands: no key
    assert projection_from(None) is None and projection_dict(None) is None
    for bad, match in (({"floor": 0.01}, "here: projection must have floor, halo_px"),
                       (dict(plain, floor="data"), "here: projection floor='data'"),
                       (dict(plain, floor=1.0), "here: projection floor=1.0"),
                       (dict(plain, halo_px=65), "here: projection halo_px=65"),
                       (dict(plain, halo_px=True), "here: projection halo_px=True"),
                       (dict(plain, peak_one=1), "here: projection peak_one"),
                       (dict(plain, islands=dict(isl, k_mean=-1.0)),
                        "here: projection islands: island model: k_mean"),
                       (dict(plain, extra=1), "here: projection must have")):
        with pytest.raises(ValueError, match=match):
            projection_from(bad, "here")


def test_every_projection_default_is_the_config_schemas():
    import inspect

    from radiodiff.config import DataConfig, IslandConfig, ProjectionConfig
    from radiodiff.data import projection as proj
    from radiodiff.data.islands import IslandModel
    halo = ProjectionConfig.halo_px
    assert halo == 2 and ProjectionConfig.peak_one is True and ProjectionConfig.floor is None
    assert DataConfig.projection_halo_px == halo and DataConfig.projection_floor is None
    for fn in (proj.project_like_data, proj.largest_kept_floor, proj.read_kept_floor):
        assert inspect.signature(fn).parameters["halo_px"].default == halo
    assert inspect.signature(proj.project_like_data).parameters["peak_one"].default is True
    assert issubclass(IslandModel, IslandConfig) and IslandModel.levels == IslandConfig.levels
    proj.check_projection_config({})  # the defaults pass


def test_apply_projection_takes_the_typed_projection_or_its_meta_dict():
    from radiodiff.config import ProjectionConfig
    from radiodiff.data.projection import apply_projection
    x = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32) * 0.5
    d = {"floor": 0.3, "halo_px": 0, "peak_one": True}
    a = apply_projection(x, d)
    np.testing.assert_array_equal(a, apply_projection(x, ProjectionConfig(0.3, 0, True)))
    assert a.max() == 1.0 and ((a == 0) == (x < 0.3 * x.max(axis=(2, 3), keepdims=True))).all()
    with pytest.raises(ValueError, match="apply_projection: projection halo_px=-1"):
        apply_projection(x, dict(d, halo_px=-1))
