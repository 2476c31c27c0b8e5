"""generate(): conditions drawn from the training rows' joint distribution, image by image.

(Sampling from releases in general, with fixed conditions: tests/io/test_release.py.)
"""

import dataclasses

import numpy as np
import pytest
import torch

from helpers.releases import train_table, tiny_physical_release
from radiodiff.diffusion.generate import generate
from radiodiff.io.release import load_release

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
