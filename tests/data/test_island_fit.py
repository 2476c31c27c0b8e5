"""The noise-island fit (`radiodiff fit-islands`): the one island count, a fit that recovers
the model that drew synthetic images, and the shipped numbers of conf/data/first.yaml."""

import json
from pathlib import Path

import numpy as np
import pytest

from radiodiff.config import load_config
from radiodiff.data.island_fit import (SUMMARY_NAMES, FitSettings, NativeGrid, bootstrap_se,
                                       first_native_grid, first_train_levels,
                                       fit_island_model, island_counts, island_summary)
from radiodiff.data.islands import (IslandModel, beam_noise, island_table, native_levels,
                                    small_islands)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "bench" / "results" / "fit_islands.json"


def _synthetic_levels(model: IslandModel, n: int, side: int, seed: int) -> list:
    """``n`` images of noise islands drawn from ``model`` around a bright 4x4 'source'."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = native_levels(model, beam_noise(model, (side, side), rng), rng.standard_normal(),
                          rng.standard_normal())
        c = side // 2
        x[c - 2:c + 2, c - 2:c + 2] = model.levels
        out.append(x)
    return out


def test_island_table_counts_by_connectivity_and_small_islands_skip_the_source():
    x = np.zeros((8, 8))
    x[1, 1], x[2, 2] = 1, 2            # two corner-touching pixels
    x[5:8, 5:8] = 9                   # the source: the most flux
    four, eight = island_table(x), island_table(x, connectivity=2)
    assert len(four.area) == 3 and len(eight.area) == 2
    assert sorted(eight.area) == [2, 9] and sorted(eight.peak) == [2, 9]
    assert sorted(four.flux) == [1, 2, 81]
    assert small_islands(x, max_area=5, skip_main=True) == (2, [1.0, 2.0])
    assert small_islands(x, max_area=9, skip_main=False)[0] == 3
    assert small_islands(np.zeros((4, 4)), 5, True) == (0, [])
    with pytest.raises(ValueError, match="connectivity must be 1"):
        island_table(x, connectivity=4)


def test_the_fit_recovers_the_model_that_drew_the_images():
    truth = IslandModel(k_mean=3.0, k_std=0.15, ln_r_mean=-4.0, ln_r_std=0.5, r_max=0.2,
                        beam_fwhm_px=3.0, factor=2)
    counts, peaks = island_counts(_synthetic_levels(truth, 200, 96, seed=3), max_area=5)
    assert 2 < np.mean(counts) < 6          # the source itself is not counted
    grid = {"k_mean": (2.6, 3.0, 3.4), "k_std": (0.15,), "ln_r_mean": (-4.5, -4.0, -3.5),
            "ln_r_std": (0.5,)}
    fit = fit_island_model(counts, peaks, NativeGrid(96, 3.0, 2),
                           FitSettings(fields=200, grid=grid, seed=13))
    assert fit.best == truth
    losses = [row[0] for row in fit.rows]
    assert losses == sorted(losses) and len(losses) == 9
    assert losses[1] > 5 * losses[0]        # a clear winner, not a tie
    d = fit.to_dict()
    assert d["best"] == truth.to_dict() and len(d["grid"]) == 9
    assert list(d["real"]) == list(SUMMARY_NAMES)
    assert "| real |" in fit.table(2) and len(fit.table(2).splitlines()) == 5


def test_summary_and_bootstrap_are_per_image():
    counts, peaks = [2, 0, 1], [1.0, 3.0, 1.0]
    s = island_summary(counts, peaks)
    np.testing.assert_allclose(s, [1, 1, 0.2, 1.8, 2 / 3, 5 / 3, 2.6])
    se = bootstrap_se(counts, peaks, 50, np.random.default_rng(0))
    assert se.shape == (7,) and (se >= 1e-3).all()
    assert island_summary([0, 0], [])[4:].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("bad, match", [(dict(fields=0), "fields must be an integer >= 1"),
                                        (dict(max_area=2.5), "max_area"),
                                        (dict(seed=-1), "seed"),
                                        (dict(grid={"k_mean": (3.0,)}), "the grid needs")])
def test_bad_settings_are_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        FitSettings(**bad)
    with pytest.raises(ValueError, match="no real images"):
        fit_island_model([], [], NativeGrid(16, 3.0, 2), FitSettings(fields=1))


def test_the_shipped_fit_is_the_one_first_yaml_ships():
    shipped = json.loads(SHIPPED.read_text())
    d = load_config(["data=first"]).data
    assert dict(d.projection_islands) == shipped["best"]
    grid = first_native_grid()
    assert (grid.crop_px, grid.beam_fwhm_px, grid.factor) == (160, 3.0, 2)
    assert shipped["best"]["beam_fwhm_px"] == grid.beam_fwhm_px
    assert shipped["best"]["factor"] == grid.factor
    assert shipped["grid"][0]["loss"] == min(g["loss"] for g in shipped["grid"])


def test_the_real_numbers_of_the_shipped_fit_come_from_the_first_training_split(
        first_wheel):
    shipped = json.loads(SHIPPED.read_text())
    counts, peaks = island_counts(first_train_levels(160), shipped["max_area"])
    assert len(counts) == shipped["n_images"] == 1758
    np.testing.assert_allclose(island_summary(counts, peaks),
                               [shipped["real"][k] for k in SUMMARY_NAMES], rtol=1e-12)
    se = bootstrap_se(counts, peaks, 200, np.random.default_rng(shipped["seed"]))
    np.testing.assert_allclose(se, [shipped["real_se"][k] for k in SUMMARY_NAMES],
                               rtol=1e-12)
