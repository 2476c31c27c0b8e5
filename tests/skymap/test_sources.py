"""Catalogue reading (our names, T-RECS, FITS units), bad rows, drawing rules."""

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from radiodiff.seeds import sky_source_seed
from radiodiff.skymap.sky import Beam
from radiodiff.skymap.sources import (Sources, draw_sources, fill_position_angles,
                                      peak_from_total, power_law_fluxes, read_catalogue,
                                      select_on_map, total_from_peak, windhorst_las)


def _csv(path, text):
    path.write_text(text)
    return path


def test_our_columns_csv(tmp_path):
    p = _csv(tmp_path / "c.csv", "ra,dec,flux,las,class,pa\n150,30,0.01,20,FRII,45\n"
             "150.01,30.01,0.002,,FRI,\n")
    s = read_catalogue(p)
    assert len(s) == 2 and list(s.id) == [0, 1]
    assert s.flux[0] == 0.01 and s.las[0] == 20 and s.cls[0] == "FRII" and s.pa[0] == 45
    assert math.isnan(s.las[1]) and math.isnan(s.pa[1])


def test_trecs_columns_in_mjy(tmp_path):
    p = _csv(tmp_path / "t.csv", "lon,lat,I150,I1400,size,RadioClass\n150,30,20,5.0,12,2\n")
    s = read_catalogue(p, freq_hz=1.4e9)
    assert s.flux[0] == pytest.approx(5e-3) and s.las[0] == 12 and s.cls[0] == "2"
    low = read_catalogue(p, freq_hz=1.44e8)  # LoTSS: the I150 column
    assert low.flux[0] == pytest.approx(0.02)


def test_fits_units_are_converted(tmp_path):
    t = Table({"RA": [150.0] * u.deg, "DEC": [30.0] * u.deg, "Total_flux": [3.0] * u.mJy,
               "Peak_flux": [2.0] * u.mJy / u.beam, "LAS": [0.5] * u.arcmin})
    t.write(tmp_path / "c.fits")
    s = read_catalogue(tmp_path / "c.fits")
    assert s.flux[0] == pytest.approx(3e-3) and s.las[0] == pytest.approx(30.0)
    assert s.peak[0] == pytest.approx(2e-3)


def test_explicit_column_names(tmp_path):
    p = _csv(tmp_path / "c.csv", "alpha,delta,S\n150,30,0.5\n")
    s = read_catalogue(p, columns={"ra": "alpha", "dec": "delta", "flux": "S"})
    assert s.ra[0] == 150 and s.flux[0] == 0.5
    with pytest.raises(ValueError, match="column 'nope' .for ra. is not in the catalogue"):
        read_catalogue(p, columns={"ra": "nope"})


def test_missing_columns_one_clear_error(tmp_path):
    p = _csv(tmp_path / "c.csv", "ra,dec,size\n150,30,3\n")
    with pytest.raises(ValueError, match=r"catalogue has no flux column .*sources.columns"):
        read_catalogue(p)


def test_unreadable_and_missing_file(tmp_path):
    (tmp_path / "bad.fits").write_bytes(b"not fits at all")
    with pytest.raises(ValueError, match="not a readable CSV or FITS table"):
        read_catalogue(tmp_path / "bad.fits")
    with pytest.raises(FileNotFoundError, match="catalogue not found"):
        read_catalogue(tmp_path / "none.csv")


def test_bad_rows_are_skipped_and_counted(tmp_path, grid):
    p = _csv(tmp_path / "c.csv", "ra,dec,flux,las\n150,30,0.01,3\n,30,0.01,3\n150,nan,0.01,1\n"
             "150,30,-1,3\n151,30,0.01,3\n150.001,30.001,0.01,\n")
    s = select_on_map(read_catalogue(p), grid)
    assert list(s.id) == [0, 5]
    assert s.skipped == {"bad_position": 2, "bad_flux": 1, "off_map": 1, "no_size": 1,
                         "bad_axis_ratio": 0}
    assert s.las[1] == 0.0  # no size: a point source
    with pytest.raises(ValueError, match="catalogue row 1: bad position .2 such rows"):
        select_on_map(read_catalogue(p), grid, on_bad="stop")


def test_peak_total_rule_roundtrip():
    b = Beam(5.4, 5.4)
    assert peak_from_total(0.01, 0.0, b) == pytest.approx(0.01)
    assert peak_from_total(0.01, 5.4, b) == pytest.approx(0.005)
    assert total_from_peak(peak_from_total(0.02, 11.0, b), 11.0, b) == pytest.approx(0.02)


def test_elliptical_peak_total_rule():
    """Covariances add: a source along the beam's major axis has observed FWHMs
    hypot(bmaj, las) and hypot(bmin, q las); through a round beam its PA does not matter."""
    b = Beam(6.0, 4.0, 30.0)
    expect = 0.01 * 6.0 * 4.0 / (math.hypot(6.0, 10.0) * math.hypot(4.0, 3.0))
    assert peak_from_total(0.01, 10.0, b, q=0.3, pa=30.0) == pytest.approx(expect, rel=1e-12)
    across = peak_from_total(0.01, 10.0, b, q=0.3, pa=120.0)  # along the beam's minor axis
    assert across == pytest.approx(0.01 * 24 / (math.hypot(6.0, 3.0) * math.hypot(4.0, 10.0)))
    r = Beam(5.0, 5.0)
    assert peak_from_total(1.0, 8.0, r, 0.5, 10.0) == pytest.approx(
        peak_from_total(1.0, 8.0, r, 0.5, 77.0), rel=1e-12)
    assert total_from_peak(peak_from_total(0.02, 11.0, b, 0.4, 5.0), 11.0, b, 0.4, 5.0) \
        == pytest.approx(0.02)


def test_axis_ratio_from_q_or_minor_column(tmp_path, grid, caplog):
    p = _csv(tmp_path / "c.csv", "ra,dec,flux,las,q,pa\n150,30,0.01,20,0.5,30\n"
             "150,30,0.01,20,,\n150,30,0.01,20,1.5,\n150,30,0.01,0,0.3,\n")
    s = select_on_map(read_catalogue(p), grid)
    assert s.q.tolist() == [0.5, 1.0, 1.0, 1.0]  # missing, bad (counted), point source
    assert s.skipped["bad_axis_ratio"] == 1
    p = _csv(tmp_path / "pybdsf.csv", "RA,DEC,Total_flux,Maj,Min,PA\n150,30,0.01,12,3,80\n")
    with caplog.at_level("WARNING"):
        s = read_catalogue(p)
    assert s.las[0] == 12 and s.q[0] == 0.25 and s.pa[0] == 80
    assert "column 'Maj' has no unit and is read in arcsec" in caplog.text
    # PyBDSF's deconvolved sizes and PA before its beam-convolved ones, in their own units
    from astropy.table import Table
    t = Table({"RA": [150.0], "DEC": [30.0], "Total_flux": [0.01], "Maj": [12 / 3600],
               "Min": [6 / 3600], "PA": [80.0], "DC_Maj": [10 / 3600], "DC_Min": [2 / 3600],
               "DC_PA": [70.0]})
    for c in ("Maj", "Min", "DC_Maj", "DC_Min"):
        t[c].unit = "deg"
    t.write(tmp_path / "pybdsf.fits")
    caplog.clear()
    s = read_catalogue(tmp_path / "pybdsf.fits")
    assert s.las[0] == pytest.approx(10) and s.q[0] == pytest.approx(0.2) and s.pa[0] == 70
    assert "no unit" not in caplog.text
    assert read_catalogue(_csv(tmp_path / "r.csv", "ra,dec,flux,las\n150,30,1,5\n")).q[0] == 1


def test_power_law_range_and_slope():
    rng = np.random.default_rng(0)
    s = power_law_fluxes(200_000, 1.7, 1e-3, 1.0, rng)
    assert s.min() >= 1e-3 and s.max() <= 1.0
    # N(>S) ~ S^(1 - alpha): the fraction above 10 mJy
    a, frac = 0.7, np.mean(s > 1e-2)
    assert frac == pytest.approx((1e-2**-a - 1) / (1e-3**-a - 1), rel=0.02)


def test_windhorst_median_size():
    rng = np.random.default_rng(1)
    las = windhorst_las(np.full(100_000, 1e-3), 1.4e9, -0.7, rng)  # 1 mJy at 1.4 GHz
    assert np.median(las) == pytest.approx(2.0, rel=0.02)


def test_drawing_is_seeded_and_on_map(grid):
    a = draw_sources(grid, 4, 3000.0, 1.7, 1e-3, 1.0, 1.4e9, -0.7)
    b = draw_sources(grid, 4, 3000.0, 1.7, 1e-3, 1.0, 1.4e9, -0.7)
    np.testing.assert_array_equal(a.ra, b.ra)
    assert 10 < len(a) < 60  # Poisson(30)
    assert len(select_on_map(a, grid)) == len(a)


def test_drawing_from_model_marginals(grid, physical_release):
    s = draw_sources(grid, 0, 20000.0, 1.7, 1e-3, 1.0, 1.4e9, -0.7, physical_release)
    assert np.all(np.isfinite(s.peak)) and set(s.cls) <= {"FRI", "FRII"}
    # The release was fitted on log10 peak ~ N(-2, 0.5).
    assert np.median(np.log10(s.peak)) == pytest.approx(-2, abs=0.3)
    with pytest.raises(ValueError, match="draw=model needs a release"):
        draw_sources(grid, 0, 10.0, 1.7, 1e-3, 1.0, 1.4e9, -0.7, None, "model")


def test_drawing_from_the_training_rows_is_joint(grid, tmp_path):
    """A release with its training rows' conditions: each source is one whole row (peak,
    LAS and class together), its flux the one the peak-total rule gives."""
    from helpers.releases import train_table, tiny_physical_release
    from radiodiff.pipeline.release import load_release

    table = train_table(30)
    release = load_release(tiny_physical_release(tmp_path / "rel", train_conditions=table))
    s = draw_sources(grid, 0, 20000.0, 1.7, 1e-3, 1.0, 1.4e9, -0.7, release)
    c = table.columns
    rows = set(zip([release.classes[k] for k in c["label"]], c["peak_flux"].tolist(),
                   c["las_arcsec"].tolist()))
    drawn = list(zip(s.cls.tolist(), s.peak.tolist(), s.las.tolist()))
    assert len(drawn) > 30 and set(drawn) <= rows and len(set(drawn)) > 10
    np.testing.assert_allclose(s.flux, total_from_peak(s.peak, s.las, grid.beam))
    again = draw_sources(grid, 0, 20000.0, 1.7, 1e-3, 1.0, 1.4e9, -0.7, release)
    assert list(zip(again.cls, again.peak, again.las)) == drawn


def test_position_angles_depend_only_on_seed_and_id():
    s = Sources.build([1, 2, 3], [0, 0, 0], [1, 1, 1], pa=[10, np.nan, np.nan])
    a = fill_position_angles(s, 9)
    b = fill_position_angles(s.take([2]), 9)
    assert a.pa[0] == 10 and a.pa[2] == b.pa[0] and 0 <= a.pa[1] < 360
    assert sky_source_seed(9, 2) != sky_source_seed(9, 3) != sky_source_seed(8, 3)
