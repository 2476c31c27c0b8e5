"""generate(): conditions drawn from the training rows' joint distribution, image by image.

(Sampling from releases in general, with fixed conditions: tests/pipeline/test_release.py.)
"""

import dataclasses

import numpy as np
import pytest
import torch

from helpers.releases import train_table, tiny_physical_release
from radiodiff.pipeline.generate import generate
from radiodiff.pipeline.release import load_release

FAST = dict(steps=2, batch_size=4)
PEAK_ONE = {"floor": None, "halo_px": 0, "peak_one": True}


@pytest.fixture(scope="module")
def table():
    return train_table(40)


@pytest.fixture(scope="module")
def drawing(tmp_path_factory, table):
    """A release with its training rows' conditions whose output depends on them (the
    zero-initialised output layer randomised) and whose projection puts each peak at 1."""
    path = tiny_physical_release(tmp_path_factory.mktemp("rel") / "drawing",
                                 train_conditions=table, projection=PEAK_ONE)
    release = load_release(path)
    g = torch.Generator().manual_seed(1)
    out = release.denoiser.net.conv_out
    with torch.no_grad():
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * 0.1)
    return release


def _rows(table):
    """The table's rows as (label, peak_flux, las_arcsec) tuples."""
    c = table.columns
    return set(zip(c["label"].tolist(), c["peak_flux"].tolist(), c["las_arcsec"].tolist()))


def _drawn(result):
    c = result.conditions
    return list(zip(c["label"].tolist(), c["peak_flux"].tolist(), c["las_arcsec"].tolist()))


def test_unset_conditions_are_training_rows(drawing, table):
    r = generate(drawing, 12, seed=3, **FAST)
    assert r.settings["conditions"] == "draw"
    drawn = _drawn(r)
    assert set(drawn) <= _rows(table)  # every image: one whole training row (joint)
    assert len(set(drawn)) > 1
    assert r.conditions["class"].tolist() == [drawing.classes[k] for k, _, _ in drawn]
    # restored with each image's own peak flux: its peak is its condition
    assert r.unit == "Jy/beam"
    np.testing.assert_allclose(r.physical.reshape(12, -1).max(1),
                               r.conditions["peak_flux"], rtol=1e-6)
    np.testing.assert_array_equal(
        r.physical, r.images * r.conditions["peak_flux"].astype(np.float32)[:, None, None, None])


def test_each_image_is_sampled_with_its_own_conditions(drawing):
    r = generate(drawing, 3, seed=5, **FAST)
    for k, (label, peak, las) in enumerate(_drawn(r)):
        one = generate(drawing, 1, seed=5 + k, label=drawing.classes[label], peak_flux=peak,
                       las_arcsec=las, **FAST)
        np.testing.assert_array_equal(one.images[0], r.images[k])
        np.testing.assert_array_equal(one.physical[0], r.physical[k])


def test_draws_are_seeded_per_image_and_batch_size_invariant(drawing):
    a = generate(drawing, 6, seed=3, steps=2, batch_size=4)
    b = generate(drawing, 6, seed=3, steps=2, batch_size=1)
    assert _drawn(a) == _drawn(b) and np.array_equal(a.images, b.images)
    c = generate(drawing, 3, seed=6, steps=2, batch_size=2)  # images 3..5 of a
    assert _drawn(c) == _drawn(a)[3:] and np.array_equal(c.images, a.images[3:])
    assert _drawn(generate(drawing, 6, seed=100, **FAST)) != _drawn(a)


def test_a_fixed_class_draws_from_its_rows(drawing, table):
    r = generate(drawing, 10, label="FRII", **FAST)
    assert r.conditions["class"].tolist() == ["FRII"] * 10
    frii = {row for row in _rows(table) if row[0] == 1}
    assert set(_drawn(r)) <= frii


def test_a_fixed_peak_flux_draws_the_size_of_sources_of_that_peak(drawing, table):
    peak = float(table.columns["peak_flux"][8])
    r = generate(drawing, 8, peak_flux=peak, **FAST)
    pool, _ = table.pool(drawing.transform, fixed={"peak_flux": peak})  # the 7 nearest
    assert len(pool) == 7
    near = {(int(table.columns["label"][i]), float(table.columns["las_arcsec"][i]))
            for i in pool}
    assert {(k, las) for k, _, las in _drawn(r)} <= near
    assert r.conditions["peak_flux"].tolist() == [peak] * 8
    np.testing.assert_allclose(r.physical.reshape(8, -1).max(1), peak, rtol=1e-6)


def test_all_fixed_draws_nothing(drawing):
    r = generate(drawing, 2, label="FRI", peak_flux=0.02, las_arcsec=30.0, **FAST)
    assert _drawn(r) == [(0, 0.02, 30.0)] * 2
    assert r.settings["conditions"] == "given"  # not "draw": nothing was drawn
    partly = generate(drawing, 2, label="FRI", peak_flux=0.02, **FAST)  # LAS drawn
    assert partly.settings["conditions"] == "draw"


def test_null_conditions_are_the_unconditional_model(drawing):
    null = generate(drawing, 3, conditions="null", **FAST)
    assert null.settings["conditions"] == "null" and null.unit == "normalised"
    assert null.conditions["label"].tolist() == [-1] * 3
    assert np.isnan(null.conditions["peak_flux"]).all() and null.physical is None
    no_table = dataclasses.replace(drawing, train_conditions=None)
    old = generate(no_table, 3, **FAST)  # a release without a table: null by default
    assert old.settings["conditions"] == "null"
    np.testing.assert_array_equal(old.images, null.images)
    assert not np.array_equal(generate(drawing, 3, **FAST).images, null.images)
    with pytest.raises(ValueError, match=r"conditions='draw' needs the training rows' "
                       r"conditions \(train_conditions\.csv\), which this release lacks"):
        generate(no_table, 1, conditions="draw", **FAST)
    with pytest.raises(ValueError, match="conditions must be one of draw, null, got 'joint'"):
        generate(drawing, 1, conditions="joint", **FAST)


def test_a_class_without_rows_falls_back_to_all_rows(drawing):
    only_fri = train_table(10, labels=[0] * 10)
    release = dataclasses.replace(drawing, train_conditions=only_fri)
    with pytest.warns(UserWarning, match=r"has no row of class 'FRII'; its other conditions "
                      "are drawn from the rows of all classes"):
        r = generate(release, 4, label="FRII", **FAST)
    assert r.conditions["class"].tolist() == ["FRII"] * 4
    assert set(r.conditions["peak_flux"].tolist()) <= set(
        only_fri.columns["peak_flux"].tolist())


# --------------------------------------------------------------------------- per-image inputs

PER_IMAGE = dict(label=["FRI", None, "FRII", "FRI"], peak_flux=[0.01, None, 0.05, 0.02],
                 las_arcsec=[20.0, None, None, 15.0], seeds=[7, 123_456_789, 2**40, 5])


@pytest.mark.parametrize("mode, guidance", [("draw", 1.0), ("draw", 1.5), ("null", 1.5)])
def test_per_image_conditions_and_seeds_give_the_one_by_one_images(drawing, mode, guidance):
    """A batch of images with their own conditions and seeds is, bit for bit, the images
    drawn one by one (batch_invariant): the rule that lets a sky map batch its sources."""
    kw = dict(steps=2, guidance=guidance, conditions=mode)
    batch = generate(drawing, 4, batch_size=3, **PER_IMAGE, **kw)
    assert batch.seeds.tolist() == PER_IMAGE["seeds"]
    for k in range(4):
        one = generate(drawing, 1, seed=PER_IMAGE["seeds"][k], label=PER_IMAGE["label"][k],
                       peak_flux=PER_IMAGE["peak_flux"][k],
                       las_arcsec=PER_IMAGE["las_arcsec"][k], **kw)
        assert one.images[0].tobytes() == batch.images[k].tobytes()
        for name, values in one.conditions.items():
            assert str(values[0]) == str(batch.conditions[name][k])
    if mode == "draw":  # every image has a peak flux: all restored to Jy/beam
        assert batch.conditions["class"][0] == "FRI" and batch.conditions["peak_flux"][2] == 0.05
        np.testing.assert_array_equal(batch.physical[3], generate(
            drawing, 1, seed=5, label="FRI", peak_flux=0.02, las_arcsec=15.0, **kw).physical[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(seeds=[1, 2]), r"seeds has 2 values for n=3 images"),
    (dict(seeds=[1, -2, 3]), r"seeds must be an integer >= 0, got -2"),
    (dict(seeds=[1, 2, 2**63]), r"out of range"),
    (dict(label=["FRI", "FRII"]), r"label has 2 values for n=3 images"),
    (dict(label=["FRI", "FRIII", None]), r"unknown class 'FRIII'"),
    (dict(peak_flux=[0.1, -0.1, 0.2]), r"peak_flux must be a positive number \(Jy/beam\)"),
])
def test_per_image_inputs_are_checked(drawing, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(drawing, 3, **FAST, **kwargs)
