"""The data's noise islands (FIRST: 3-rms cut, 8 bit, 1.8" -> 3.6"): the model's parameters
checked, islands that follow the cut and the noise level, drawn per image from its seed,
laid under generated images by the release's output projection and switchable off."""

import json

import numpy as np
import pytest
from scipy import ndimage

from helpers.releases import tiny_release
from radiodiff.data.islands import IslandModel, add_islands, island_layer
from radiodiff.data.projection import apply_projection, project_like_data
from radiodiff.pipeline.generate import generate
from radiodiff.pipeline.release import load_release
from radiodiff.seeds import island_rng

FIRST = dict(k_mean=3.15, k_std=0.3, ln_r_mean=-4.5, ln_r_std=1.2, r_max=0.2,
             beam_fwhm_px=3.0, factor=2)
FAST = dict(sampler="dpmpp_2m", steps=3, batch_size=2)


def _islands(layer):
    return ndimage.label(layer > 0)[1]


def test_islands_follow_the_cut_and_the_noise_level():
    fixed = dict(FIRST, k_std=0.0, ln_r_std=0.0, ln_r_mean=np.log(0.02))
    n = {k: np.mean([_islands(island_layer(IslandModel(**dict(fixed, k_mean=k)), 80,
                                           island_rng(s))) for s in range(20)])
         for k in (2.5, 3.0, 3.5)}
    assert n[2.5] > 1.5 * n[3.0] > 1.5 * n[3.5] > 0   # a lower cut lets more noise through
    # rms far below a quantum (a bright source): the cut noise rounds to 0 everywhere
    faint = IslandModel(**dict(fixed, ln_r_mean=np.log(1e-4)))
    assert not island_layer(faint, 80, island_rng(0)).any()
    layer = island_layer(IslandModel(**fixed), 80, island_rng(1))
    assert layer.shape == (80, 80) and layer.dtype == np.float32
    assert layer.min() >= 0 and 0 < layer.max() < 0.2   # islands are faint beside the peak


def test_a_draw_whose_cut_reaches_the_peak_keeps_no_noise():
    from radiodiff.data.islands import beam_noise, native_levels
    m = IslandModel(**dict(FIRST, r_max=0.3, k_std=1.0))      # k_mean r_max = 0.945 < 1
    w = beam_noise(m, (64, 64), island_rng(0))
    assert native_levels(m, w, z_r=5.0, z_k=-1.0).any()        # cut at 0.645 of the peak
    # a draw of the cut above the peak (k = 4.15, t = 1.245): nothing, not sign-flipped noise
    assert not native_levels(m, w, z_r=5.0, z_k=1.0).any()


def test_island_model_rejects_absurd_parameters():
    IslandModel.from_dict(FIRST)
    for bad, what in [(dict(k_mean=-1), "k_mean"), (dict(r_max=0.5), "r_max"),
                      (dict(factor=2.5), "factor"), (dict(beam_fwhm_px=float("nan")),
                                                     "beam_fwhm_px"),
                      (dict(levels=0), "levels"), (dict(ln_r_std=True), "ln_r_std")]:
        with pytest.raises(ValueError, match=what):
            IslandModel.from_dict(dict(FIRST, **bad))
    with pytest.raises(ValueError, match="must have"):
        IslandModel.from_dict(dict(FIRST, extra=1))
    with pytest.raises(ValueError, match="must have"):
        IslandModel.from_dict({k: v for k, v in FIRST.items() if k != "k_std"})


def test_each_image_takes_its_islands_from_its_own_seed():
    m = IslandModel(**FIRST)
    x = np.zeros((3, 1, 32, 32), np.float32)
    x[:, 0, 16, 16] = [0.5, 2.0, 1.0]
    a = add_islands(x, m, [7, 8, 9])
    b = add_islands(x[[2, 0]], m, [9, 7])
    np.testing.assert_array_equal(a[[2, 0]], b)          # independent of order and company
    assert (a[:, 0, 16, 16] == [0.5, 2.0, 1.0]).all()    # each image keeps its scale
    assert (x[:, 0, 16, 16] == [0.5, 2.0, 1.0]).all()    # the input is not modified
    # islands relative to each image's peak: image 1 (peak 2) gets image 0's layer x 4
    same = add_islands(x[[0, 1]], m, [7, 7])
    np.testing.assert_allclose(same[1] - np.where(x[1] > 0, x[1], 0),
                               4 * (same[0] - np.where(x[0] > 0, x[0], 0)), rtol=1e-6)
    wide = add_islands(np.pad(x, ((0, 0), (0, 0), (0, 0), (0, 32))), m, [7, 8, 9])
    assert wide.shape == (3, 1, 32, 64) and (wide[:, :, :, 32:] > 0).any()
    with pytest.raises(ValueError, match="2 seeds for 3 images"):
        add_islands(x, m, [1, 2])


def test_the_projection_keeps_an_islands_halo_but_not_the_network_haze_around_it():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1e-5, (4, 1, 40, 40)).astype(np.float32)   # a network's faint haze
    x[:, 0, 20, 20] = 1.0
    proj = {"floor": 8e-4, "halo_px": 2, "peak_one": True}
    seeds = [3, 4, 5, 6]
    plain = apply_projection(x, proj, seeds)
    np.testing.assert_array_equal(plain, project_like_data(x, **proj))
    with_islands = apply_projection(x, dict(proj, islands=FIRST), seeds)
    off = apply_projection(x, dict(proj, islands=FIRST), seeds, islands=False)
    np.testing.assert_array_equal(off, plain)
    layers = np.stack([island_layer(IslandModel(**FIRST), 40, island_rng(s)) for s in seeds])
    assert (with_islands > 0).sum() > (plain > 0).sum()
    # every nonzero sky pixel is an island's (or its resampling halo), none the haze's
    sky = (with_islands > 0) & (plain == 0)
    assert (layers[:, None][sky] > 0).all()
    assert np.allclose(with_islands.max(axis=(1, 2, 3)), 1.0)
    with pytest.raises(ValueError, match="needs the seeds"):
        apply_projection(x, dict(proj, islands=FIRST))


def test_a_release_with_islands_generates_them_and_can_leave_them_out(tmp_path):
    proj = {"floor": 8e-4, "halo_px": 2, "peak_one": True, "islands": FIRST}
    rel = load_release(tiny_release(tmp_path / "rel", ["FRI", "FRII"], size=32, busy=True,
                                    projection=proj))
    assert rel.projection["islands"] == IslandModel(**FIRST).to_dict()
    on = generate(rel, 4, label="FRI", seed=2, **FAST)
    off = generate(rel, 4, label="FRI", seed=2, islands=False, **FAST)
    assert on.settings["islands"] and not off.settings["islands"]
    np.testing.assert_array_equal(on.raw, off.raw)              # the same network images
    assert (on.images > 0).sum() > (off.images > 0).sum()
    np.testing.assert_array_equal(off.images, apply_projection(off.raw, proj, islands=False))
    with pytest.raises(ValueError, match="islands must be True or False"):
        generate(rel, 1, islands="yes", **FAST)


def test_a_release_with_bad_islands_is_refused_on_load(tmp_path):
    path = tiny_release(tmp_path / "rel", ["FRI"], size=16,
                        projection={"floor": 8e-4, "halo_px": 2, "peak_one": True,
                                    "islands": FIRST})
    (path / "SHA256SUMS").unlink()  # unsealed: the content check speaks
    meta = json.loads((path / "meta.json").read_text())
    meta["projection"]["islands"]["k_mean"] = -3
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"meta\.json.*projection islands.*k_mean"):
        load_release(path)


def test_fits_cards_and_samples_file_record_the_islands(tmp_path):
    import h5py

    from radiodiff.io.samples import sample_images, save_samples
    proj = {"floor": 8e-4, "halo_px": 2, "peak_one": True, "islands": FIRST}
    rel = load_release(tiny_release(tmp_path / "rel", ["FRI"], size=16, projection=proj))
    (_, h), = sample_images(rel, generate(rel, 1, label="FRI", **FAST))
    assert h["ISLANDS"] is True and h["PROJECTD"] is True
    off = generate(rel, 1, label="FRI", islands=False, **FAST)
    (_, h0), = sample_images(rel, off)
    assert h0["ISLANDS"] is False and h0["PROJECTD"] is True
    save_samples(tmp_path / "out", rel, off)
    with h5py.File(tmp_path / "out" / "samples.h5") as f:
        assert not f.attrs["islands"] and f.attrs["projected"]
