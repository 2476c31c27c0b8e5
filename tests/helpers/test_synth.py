"""Checks that the synthetic inputs written by ``synth`` are what they claim to be."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from helpers import synth


@pytest.fixture(scope="module")
def lotss(tmp_path_factory):
    return synth.make_lotss_fixture(tmp_path_factory.mktemp("lotss"), fmt="fits", seed=0)


@pytest.fixture(scope="module")
def mirabest(tmp_path_factory):
    return synth.write_mirabest_like(tmp_path_factory.mktemp("mirabest"), n=8, seed=0)


def _read(path, hdu=0):
    with fits.open(path) as hdul:
        return np.array(hdul[hdu].data, dtype=np.float64), hdul[hdu].header.copy()


def _image(path):
    data, header = _read(path)
    while data.ndim > 2:
        data = data[0]
    return data, header, WCS(header, naxis=2).celestial


# --------------------------------------------------------------------------------------
# gaussian_source and conventions
# --------------------------------------------------------------------------------------

def test_gaussian_source_shape_peak_and_orientation():
    g = synth.gaussian_source((81, 101), 50.0, 40.0, 2.0, 6.0, 3.0, np.pi / 6)
    assert g.shape == (81, 101)
    assert g[40, 50] == pytest.approx(2.0)
    assert np.unravel_index(np.argmax(g), g.shape) == (40, 50)
    # one sigma along the major axis (theta from +x towards +y) and along the minor axis
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    big = synth.gaussian_source((1, 1), -6.0 * c, -6.0 * s, 2.0, 6.0, 3.0, np.pi / 6)
    small = synth.gaussian_source((1, 1), 3.0 * s, -3.0 * c, 2.0, 6.0, 3.0, np.pi / 6)
    assert big[0, 0] == pytest.approx(2.0 * np.exp(-0.5))
    assert small[0, 0] == pytest.approx(2.0 * np.exp(-0.5))
    assert g.sum() == pytest.approx(2.0 * np.pi * 6.0 * 3.0 * 2.0, rel=1e-6)


def test_flux_and_las_conventions():
    # point source: total = peak, LAS = beam FWHM
    assert synth.component_total_flux(0.01, 0.0, 0.0, 6.0) == pytest.approx(0.01)
    t = synth.source_truth(dict(ra=10.0, dec=30.0, peak=0.01), 6.0)
    assert t["las_arcsec"] == pytest.approx(6.0)
    # 8" x 6" intrinsic with 6" beam: sigma products scale as FWHM products
    assert synth.component_total_flux(1.0, 8.0, 6.0, 6.0) == pytest.approx(
        10.0 * np.hypot(6.0, 6.0) / 36.0)
    d = synth.source_truth(dict(ra=10.0, dec=30.0, peak=0.01, major_arcsec=8.0,
                                minor_arcsec=6.0, pa_deg=45.0, double_sep_arcsec=40.0), 6.0)
    assert d["las_arcsec"] == pytest.approx(40.0 + 10.0, abs=1e-3)
    assert d["total_jy"] == pytest.approx(2 * synth.component_total_flux(0.01, 8, 6, 6.0))


# --------------------------------------------------------------------------------------
# LoTSS mosaics
# --------------------------------------------------------------------------------------

def test_lotss_layout_and_headers(lotss):
    root = lotss["mosaics_dir"]
    assert (root / "P001+01" / "mosaic-blanked.fits").is_file()
    assert (root / "P002+02" / "mosaic-blanked.fits").is_file()
    assert not (root / "P003+03").exists()
    d1, h1 = _read(root / "P001+01" / "mosaic-blanked.fits")
    d2, h2 = _read(root / "P002+02" / "mosaic-blanked.fits")
    assert d1.shape == (600, 600)
    assert d2.shape == (1, 1, 600, 600)
    assert h2["NAXIS"] == 4 and h2["CTYPE3"] == "FREQ" and h2["CTYPE4"] == "STOKES"
    for h in (h1, h2):
        assert (h["CTYPE1"], h["CTYPE2"]) == ("RA---SIN", "DEC--SIN")
        assert h["CDELT1"] == pytest.approx(-1.5 / 3600) and h["CDELT2"] == pytest.approx(
            1.5 / 3600)
        assert h["CRPIX1"] == 300.5 and h["CRPIX2"] == 300.5
        assert h["BUNIT"] == "JY/BEAM" and h["RADESYS"] == "ICRS"
        assert h["BMAJ"] == h["BMIN"] == pytest.approx(6.0 / 3600) and h["BPA"] == 0.0
        assert h["RESTFRQ"] == pytest.approx(144e6)
    assert (h1["CRVAL1"], h1["CRVAL2"]) == (10.0, 30.0)
    assert (h2["CRVAL1"], h2["CRVAL2"]) == (12.0, 31.0)


def test_lotss_kinds_and_catalogue(lotss):
    truth = lotss["truth"]
    kinds = [t["kind"] for t in truth]
    assert set(kinds) == {"ok", "faint", "edge", "nan", "missing_mosaic", "no_optical"}
    assert kinds.count("ok") >= 4
    assert any(t["double_sep_arcsec"] > 0 for t in truth if t["kind"] == "ok")
    assert any(t["double_sep_arcsec"] == 0 for t in truth if t["kind"] == "ok")
    cat = Table.read(lotss["catalog"], mask_invalid=False)
    assert set(synth.LOTSS_COLUMNS) <= set(cat.colnames)
    assert len(cat) == len(truth)
    for row, t in zip(cat, truth):
        assert row["Source_Name"] == t["Source_Name"] and row["Mosaic_ID"] == t["mosaic"]
        assert row["Peak_flux"] == pytest.approx(1e3 * t["peak_jyb"])
        assert row["Total_flux"] == pytest.approx(1e3 * t["total_jy"])
        assert row["LAS"] == pytest.approx(t["las_arcsec"])
        if t["kind"] == "no_optical":
            assert np.isnan(row["ID_RA"]) and np.isnan(row["ID_DEC"])
            assert (t["opt_ra"], t["opt_dec"]) == (t["ra"], t["dec"])
        else:
            assert row["ID_RA"] == pytest.approx(t["opt_ra"])
            sep = SkyCoord(t["ra"], t["dec"], unit="deg").separation(
                SkyCoord(t["opt_ra"], t["opt_dec"], unit="deg")).arcsec
            assert sep < 5.0
    faint = next(t for t in truth if t["kind"] == "faint")
    assert faint["peak_jyb"] == pytest.approx(3 * lotss["noise_jyb"])
    assert all(t["peak_jyb"] > 50 * lotss["noise_jyb"] for t in truth if t["kind"] == "ok")


def test_lotss_sources_land_on_their_pixels(lotss):
    noise = lotss["noise_jyb"]
    beam_area_px = 2 * np.pi * (6.0 * synth.FWHM_TO_SIGMA / 1.5) ** 2
    images = {mid: _image(p) for mid, p in lotss["mosaics"].items()}
    for t in lotss["truth"]:
        if t["kind"] == "missing_mosaic":
            continue
        data, _, wcs = images[t["mosaic"]]
        x, y = wcs.world_to_pixel(SkyCoord(t["ra"], t["dec"], unit="deg"))
        assert (float(x), float(y)) == pytest.approx((t["x"], t["y"]), abs=1e-6)
        ix, iy = int(t["x"]), int(t["y"])
        if t["kind"] == "nan":
            assert np.isnan(data[iy, ix])
            continue
        if t["double_sep_arcsec"] == 0:
            # single on an integer pixel: the pixel holds the requested peak plus noise
            assert data[iy, ix] == pytest.approx(t["peak_jyb"], abs=5 * noise)
        else:
            half = int(t["las_arcsec"] / 1.5 / 2) + 2
            box = data[iy - half:iy + half + 1, ix - half:ix + half + 1]
            assert 0.85 * t["peak_jyb"] - 5 * noise < np.nanmax(box) < t["peak_jyb"] + 5 * noise
        if t["kind"] == "ok":
            half = int(t["las_arcsec"] / 1.5) + 10
            box = data[iy - half:iy + half + 1, ix - half:ix + half + 1]
            flux = box.sum() / beam_area_px
            tol = 0.02 * t["total_jy"] + 5 * noise * box.shape[0] / beam_area_px
            assert flux == pytest.approx(t["total_jy"], abs=tol)


def test_lotss_cutouts_edge_and_blanking(lotss):
    ny, nx = lotss["shape"]
    images = {mid: _image(p)[0] for mid, p in lotss["mosaics"].items()}
    x0, x1, y0, y1 = lotss["nan_box"]["P001+01"]
    assert np.isnan(images["P001+01"][y0:y1, x0:x1]).all()
    assert np.isfinite(images["P002+02"]).all()
    for t in lotss["truth"]:
        if t["kind"] not in ("ok", "edge", "no_optical"):
            continue
        half = max(60.0, 1.5 * t["las_arcsec"]) / 2 / 1.5
        lo_x, hi_x, lo_y, hi_y = t["x"] - half, t["x"] + half, t["y"] - half, t["y"] + half
        inside = lo_x >= -0.5 and lo_y >= -0.5 and hi_x <= nx - 0.5 and hi_y <= ny - 0.5
        assert inside == (t["kind"] != "edge"), t["Source_Name"]
        if inside:
            cut = images[t["mosaic"]][int(lo_y):int(hi_y) + 1, int(lo_x):int(hi_x) + 1]
            assert np.isfinite(cut).all()
    # background noise level is as requested
    bg = images["P001+01"][20:120, 300:420]
    assert np.std(bg) == pytest.approx(lotss["noise_jyb"], rel=0.05)


def test_lotss_orientation_follows_position_angle(tmp_path):
    path = tmp_path / "m.fits"
    src = [dict(ra=10.0, dec=30.0, peak=1.0, major_arcsec=30.0, minor_arcsec=0.0,
                pa_deg=90.0),
           dict(ra=10.0, dec=30.02, peak=1.0, major_arcsec=30.0, minor_arcsec=0.0,
                pa_deg=0.0)]
    synth.write_lotss_mosaic(path, 10.0, 30.0, shape=(200, 200), noise_jyb=1e-6, sources=src)
    data, _, wcs = _image(path)
    x, y = (int(round(float(v))) for v in wcs.world_to_pixel(SkyCoord(10.0, 30.0, unit="deg")))
    assert data[y, x + 8] > 5 * data[y + 8, x]          # PA 90 (east) lies along x
    x, y = (int(round(float(v))) for v in wcs.world_to_pixel(SkyCoord(10.0, 30.02, unit="deg")))
    assert data[y + 8, x] > 5 * data[y, x + 8]          # PA 0 (north) lies along y
    # east is towards -x (CDELT1 < 0)
    xe, _ = wcs.world_to_pixel(SkyCoord(10.01, 30.0, unit="deg"))
    assert float(xe) < x


def test_lotss_mosaic_is_deterministic(tmp_path):
    src = [dict(ra=10.0, dec=30.0, peak=0.01, major_arcsec=10.0, minor_arcsec=5.0,
                pa_deg=20.0, double_sep_arcsec=20.0)]
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        synth.write_lotss_mosaic(tmp_path / f"{name}.fits", 10.0, 30.0, shape=(64, 64),
                                 sources=src, seed=seed)
    a, b, c = (_read(tmp_path / f"{n}.fits")[0] for n in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_lotss_catalog_csv_and_dropped_columns(lotss, tmp_path):
    rows = [dict(Source_Name=t["Source_Name"], RA=t["ra"], DEC=t["dec"], ID_RA=t["id_ra"],
                 ID_DEC=t["id_dec"], LAS=t["las_arcsec"], Mosaic_ID=t["mosaic"],
                 Peak_flux=1e3 * t["peak_jyb"], Total_flux=1e3 * t["total_jy"])
            for t in lotss["truth"]]
    synth.write_lotss_catalog(tmp_path / "c.csv", rows, "csv")
    cat = Table.read(tmp_path / "c.csv", format="ascii.csv")
    assert list(cat.colnames) == list(synth.LOTSS_COLUMNS)
    assert np.isnan(cat["ID_RA"]).sum() == 1
    synth.write_lotss_catalog(tmp_path / "d.fits", rows, "fits", drop_columns=("LAS", "ID_RA"))
    cat = Table.read(tmp_path / "d.fits")
    assert "LAS" not in cat.colnames and "ID_RA" not in cat.colnames
    assert "ID_DEC" in cat.colnames
    with pytest.raises(ValueError):
        synth.write_lotss_catalog(tmp_path / "e.csv", rows, "csv", drop_columns=("nope",))
    with pytest.raises(ValueError):
        synth.write_lotss_catalog(tmp_path / "e.txt", rows, "txt")


# --------------------------------------------------------------------------------------
# MiraBest-like fields
# --------------------------------------------------------------------------------------

def test_mirabest_compressed_fields(mirabest):
    cat = Table.read(mirabest["catalog"], format="ascii.csv")
    assert list(cat.colnames) == list(synth.MIRABEST_COLUMNS)
    assert set(cat["fr_class"]) == {"FRI", "FRII", "hybrid"}
    # astropy's csv reader keeps the words; pandas would give booleans
    assert {str(v) for v in cat["confident"]} == {"True", "False"}
    for row, t in zip(cat, mirabest["truth"]):
        assert row["file"].endswith(".fits.fz")
        assert 20.0 <= row["las_arcsec"] <= 100.0
        assert str(row["mirabest_code"])[0] == {"FRI": "1", "FRII": "2", "hybrid": "3"}[
            row["fr_class"]]
        with fits.open(mirabest["root"] / row["file"]) as hdul:
            assert len(hdul) == 2 and hdul[0].data is None
            assert isinstance(hdul[1], fits.CompImageHDU)
            h = hdul[1].header
            data = np.array(hdul[1].data, dtype=np.float64)
        with fits.open(mirabest["root"] / row["file"], disable_image_compression=True) as raw:
            assert raw[1].header["ZCMPTYPE"] == "RICE_1"
        assert data.shape == (300, 300)
        assert (h["CTYPE1"], h["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
        assert h["CDELT2"] == pytest.approx(1.8 / 3600) and h["BUNIT"] == "JY/BEAM"
        assert "BMAJ" not in h
        x, y = WCS(h).world_to_pixel(SkyCoord(row["ra_deg"], row["dec_deg"], unit="deg"))
        assert (float(x), float(y)) == pytest.approx((149.5, 149.5), abs=1e-6)
        noise = np.std(data[:40, :40])
        assert noise == pytest.approx(synth.FIRST_NOISE_JYB, rel=0.1)
        assert data.max() / noise > 30
        assert data.max() == pytest.approx(t["peak_jyb"], abs=5 * synth.FIRST_NOISE_JYB)


def test_mirabest_plain_fields(tmp_path):
    out = synth.write_mirabest_like(tmp_path, n=2, seed=1, compressed=False)
    for t in out["truth"]:
        assert t["file"].endswith(".fits") and not t["file"].endswith(".fz")
        with fits.open(t["path"]) as hdul:
            assert len(hdul) == 1 and hdul[0].data.shape == (300, 300)


# --------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------

def test_truncated_and_garbage(lotss, tmp_path):
    src = lotss["mosaics"]["P001+01"]
    dst = synth.write_truncated(src, tmp_path / "t.fits", keep_fraction=0.5)
    assert dst.stat().st_size == src.stat().st_size // 2
    assert dst.read_bytes()[:6] == b"SIMPLE"
    with pytest.warns(AstropyUserWarning, match="truncated"):
        with fits.open(dst) as hdul:
            hdul.readall()
    g = synth.write_garbage(tmp_path / "g.fits")
    assert g.stat().st_size > 0 and g.read_bytes()[:6] != b"SIMPLE"
    with pytest.raises(OSError):
        with fits.open(g):
            pass


def test_no_wcs(tmp_path):
    path = synth.write_no_wcs(tmp_path / "n.fits")
    data, h = _read(path)
    assert data.shape == (64, 64)
    assert not any(k.startswith(("CTYPE", "CRVAL", "CDELT", "CRPIX")) for k in h)
    assert not WCS(h).has_celestial


def test_tab_header_trips_astropy_verification(tmp_path):
    path = synth.write_tab_header(tmp_path / "tab.fits")
    raw = path.read_bytes()
    header_end = raw.find(b"END" + b" " * 77)
    assert b"\t" in raw[:header_end]
    with fits.open(path) as hdul:
        header = hdul[0].header
        assert hdul[0].data.shape == (64, 64)
        # astropy emits several VerifyWarnings; one of them names the unprintable card
        with pytest.warns(VerifyWarning) as record:
            str(header)
    assert any("Unprintable" in str(w.message) for w in record)


@pytest.mark.parametrize("compressed", [False, True])
def test_nan_field(tmp_path, compressed):
    path = synth.write_nan_field(tmp_path / ("f.fits.fz" if compressed else "f.fits"),
                                 compressed=compressed)
    with fits.open(path) as hdul:
        hdu = hdul[1 if compressed else 0]
        data = np.array(hdu.data, dtype=np.float64)
        assert WCS(hdu.header).has_celestial
    assert data.shape == (300, 300)
    rows = np.isnan(data).all(axis=1)
    assert rows.sum() == 10 and rows[150] and rows[145] and not rows[155]
    assert np.isfinite(data[~rows]).all()
    assert np.nanmax(data) > 0.015          # the double's lobes lie outside the stripe


def test_3d_nondegenerate(tmp_path):
    path = synth.write_3d_nondegenerate(tmp_path / "cube.fits")
    data, h = _read(path)
    assert data.shape == (3, 50, 50) and h["NAXIS"] == 3 and h["CTYPE3"] == "FREQ"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WCS(h).naxis == 3
