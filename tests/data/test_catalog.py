"""Catalogue + FITS path: LoTSS-like mosaics and MiraBest-like fields with known truth,
each preprocessing option, and every kind of bad input."""

import shutil

import numpy as np
import pytest

from helpers import synth
from radiodiff.config import load_config
from radiodiff.io.fits import InputError, read_fits_image
from radiodiff.data.prepared import read_prepared
from radiodiff.data.prepare import PrepareError, prepare


@pytest.fixture(scope="module")
def lotss(tmp_path_factory):
    return synth.make_lotss_fixture(tmp_path_factory.mktemp("lotss"), fmt="fits")


def lotss_cfg(fx, *extra):
    return load_config(["data=lotss", f"data.fields_dir={fx['mosaics_dir']}",
                        f"data.catalog={fx['catalog']}", *extra])


@pytest.fixture(scope="module")
def lotss_prepared(lotss, tmp_path_factory):
    out = tmp_path_factory.mktemp("lotss_out") / "lotss.h5"
    return prepare(lotss_cfg(lotss), out=out), read_prepared(out)


def test_lotss_counts_per_reason(lotss, lotss_prepared):
    summary, ps = lotss_prepared
    kinds = [t["kind"] for t in lotss["truth"]]
    assert summary.n_in == len(kinds) == 10
    assert summary.removed == {"low_snr": 1, "outside_field": 1, "nan": 1, "missing": 1}
    expect = [t["Source_Name"] for t in lotss["truth"] if t["kind"] in ("ok", "no_optical")]
    assert ps.columns["source_id"].tolist() == expect  # catalogue order kept
    assert any("P003+03" in e and "file not found" in e for e in summary.errors)


def test_prepared_file_records_no_local_folder(lotss, lotss_prepared):
    """Inputs and output at absolute paths (the fixture's folders): the file names its
    inputs by file name beside their hashes, and neither its config nor its summary names
    a folder of this machine."""
    import h5py
    summary, ps = lotss_prepared
    root = str(lotss["catalog"].parent)
    assert ps.files and not any(f.startswith("/") or root in f for f in ps.files)
    assert lotss["catalog"].name in ps.files
    fields = [f for f in ps.files if f != lotss["catalog"].name]  # relative to fields_dir
    assert fields and len(set(fields)) == len(fields)
    assert all((lotss["mosaics_dir"] / f).is_file() for f in fields)
    assert len(ps.sha256) == len(ps.files)
    assert any("P003+03" in e for e in ps.attrs["summary"]["errors"])  # named, not placed
    with h5py.File(summary.out, "r") as f:
        text = " ".join(str(v) for v in f.attrs.values())
    assert root not in text and str(summary.out) not in text and "<local path>" in text
    assert ps.attrs["summary"]["out"] == "lotss.h5"


def test_lotss_physical_values_match_the_injected_truth(lotss, lotss_prepared):
    _, ps = lotss_prepared
    truth = {t["Source_Name"]: t for t in lotss["truth"]}
    c = ps.columns
    for i, sid in enumerate(c["source_id"]):
        t = truth[sid]
        # the prepared cutout's own peak: the sub-pixel centring shift (bilinear) lowers a
        # beam-sampled peak by up to ~7 % (6" beam on 1.5" pixels)
        assert c["peak_flux"][i] == c["scale"][i]
        assert c["peak_flux"][i] == pytest.approx(t["peak_jyb"], rel=0.1)
        assert c["catalog_peak_flux"][i] == pytest.approx(t["peak_jyb"], rel=1e-6)  # mJy -> Jy
        assert c["catalog_total_flux"][i] == pytest.approx(t["total_jy"], rel=1e-6)
        assert c["total_flux"][i] == pytest.approx(t["total_jy"], rel=0.08)
        assert c["rms"][i] == pytest.approx(lotss["noise_jyb"], rel=0.1)
        assert c["ra"][i] == pytest.approx(t["opt_ra"]) and c["dec"][i] == pytest.approx(
            t["opt_dec"])  # optical host, or the radio position when there is no ID
        size = max(1.5 * t["las_arcsec"], 120.0)  # at least 80 LoTSS pixels
        assert c["cutout_size_arcsec"][i] == pytest.approx(size, abs=1.5)  # whole pixels
        assert c["pixel_scale_arcsec"][i] == pytest.approx(c["cutout_size_arcsec"][i] / 80)
    assert np.allclose(c["beam_arcsec"], 6.0)  # from BMAJ/BMIN
    assert (c["label"] == -1).all() and ps.attrs["image_unit"] == "Jy/beam"
    # physical = image * scale + offset: the per-image peak maps back to Jy/beam
    assert np.allclose(ps.images.reshape(len(ps), -1).max(1), 1.0)


def test_cutouts_are_centred_on_the_source(lotss, lotss_prepared):
    _, ps = lotss_prepared
    truth = {t["Source_Name"]: t for t in lotss["truth"]}
    for i, sid in enumerate(ps.columns["source_id"]):
        t = truth[sid]
        if t["double_sep_arcsec"] or t["kind"] not in ("ok", "no_optical"):
            continue
        img = ps.images[i, 0]
        y, x = np.indices(img.shape)
        w = img * (img > 0.5)
        cx, cy = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
        # offset of the optical ID from the radio position, in output pixels
        dx = (t["ra"] - t["opt_ra"]) * np.cos(np.radians(t["dec"])) * 3600
        dy = (t["dec"] - t["opt_dec"]) * 3600
        scale = ps.columns["pixel_scale_arcsec"][i]
        assert cx == pytest.approx(39.5 - dx / scale, abs=0.6)  # RA grows to the left
        assert cy == pytest.approx(39.5 + dy / scale, abs=0.6)


def test_csv_catalogue_gives_the_same_set(lotss, lotss_prepared, tmp_path):
    rows = [dict(Source_Name=t["Source_Name"], RA=t["ra"], DEC=t["dec"], ID_RA=t["id_ra"],
                 ID_DEC=t["id_dec"], LAS=t["las_arcsec"], Mosaic_ID=t["mosaic"],
                 Peak_flux=1e3 * t["peak_jyb"], Total_flux=1e3 * t["total_jy"])
            for t in lotss["truth"]]
    synth.write_lotss_catalog(tmp_path / "cat.csv", rows, fmt="csv")
    fx = dict(lotss, catalog=tmp_path / "cat.csv")
    prepare(lotss_cfg(fx), out=tmp_path / "x.h5")
    got = read_prepared(tmp_path / "x.h5")
    np.testing.assert_allclose(got.images, lotss_prepared[1].images, atol=1e-6)


def test_radio_centre_option(lotss, tmp_path):
    prepare(lotss_cfg(lotss, "data.cutout.centre=radio"), out=tmp_path / "x.h5")
    ps = read_prepared(tmp_path / "x.h5", images=False)
    truth = {t["Source_Name"]: t for t in lotss["truth"]}
    assert np.allclose(ps.columns["ra"], [truth[s]["ra"] for s in ps.columns["source_id"]])


def test_outside_and_nan_policies(lotss, tmp_path):
    s = prepare(lotss_cfg(lotss, "data.cutout.outside=pad"), out=tmp_path / "a.h5")
    assert s.removed == {"low_snr": 1, "nan": 2, "missing": 1}  # padded edge -> NaN cut
    s = prepare(lotss_cfg(lotss, "data.cutout.outside=pad", "data.cuts.nan=fill"),
                out=tmp_path / "b.h5")
    # the edge source is kept (padded, filled); the cutout wholly inside the blanked box has
    # no finite pixel left, so it is blank
    assert s.removed == {"low_snr": 1, "missing": 1, "blank": 1}
    ps = read_prepared(tmp_path / "b.h5")
    assert np.isfinite(ps.images).all() and len(ps) == 7
    s = prepare(lotss_cfg(lotss, "data.cuts.snr_min=null"), out=tmp_path / "c.h5")
    assert "low_snr" not in s.removed and s.n_out == 7


def test_cut_action_flag_keeps_rows(lotss, tmp_path):
    s = prepare(lotss_cfg(lotss, "data.cuts.action=flag"), out=tmp_path / "x.h5")
    # the source inside the blanked box fails two cuts (NaN and, with no finite pixel, blank)
    assert s.flagged == {"low_snr": 1, "nan": 1, "blank": 1} and s.n_out == 8
    ps = read_prepared(tmp_path / "x.h5", images=False)
    assert (ps.columns["flags"] != 0).sum() == 2 and s.removed == {"outside_field": 1,
                                                                    "missing": 1}


@pytest.mark.parametrize("negatives, scaling", [("clip", "per_image"), ("abs", "per_image"),
                                                ("keep", "per_image"), ("clip", "dataset"),
                                                ("keep", "dataset")])
def test_negatives_and_scaling_round_trip_to_jy(lotss, tmp_path, negatives, scaling):
    prepare(lotss_cfg(lotss, f"data.negatives={negatives}", f"data.scaling={scaling}",
                      "data.image_size=40"), out=tmp_path / "x.h5")
    ps = read_prepared(tmp_path / "x.h5")
    x = ps.images[:, 0]
    assert x.shape[1:] == (40, 40) and x.min() >= 0 and x.max() <= 1
    phys = x * ps.columns["scale"][:, None, None] + ps.columns["offset"][:, None, None]
    if negatives == "keep":
        assert phys.min() < 0  # the noise keeps its negative half
    else:
        assert phys.min() >= 0
    if scaling == "per_image":
        assert np.allclose(x.reshape(len(x), -1).max(1), 1.0)
    else:
        assert x.max() == pytest.approx(1.0) and len(set(ps.columns["scale"])) == 1
    if negatives == "abs":  # noise folded up: almost no pixel is exactly zero
        assert (phys == 0).mean() < 0.01
    elif negatives == "clip":  # about half the noise pixels are clipped to zero
        assert (phys == 0).mean() > 0.3


def test_on_error_stop_writes_nothing(lotss, tmp_path):
    with pytest.raises(PrepareError, match=r"(past the field edge|file not found).*"
                                           r"on_error=stop: nothing written"):
        prepare(lotss_cfg(lotss, "data.on_error=stop"), out=tmp_path / "x.h5")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("drop, message", [("LAS", r"missing required column\(s\) 'LAS'"),
                                           ("Mosaic_ID", r"missing.*'Mosaic_ID'")])
def test_catalogue_missing_a_column(lotss, tmp_path, drop, message):
    rows = [dict(Source_Name="a", RA=10.0, DEC=30.0, ID_RA=10.0, ID_DEC=30.0, LAS=20.0,
                 Mosaic_ID="P001+01", Peak_flux=1.0, Total_flux=1.0)]
    synth.write_lotss_catalog(tmp_path / "cat.fits", rows, "fits", drop_columns=[drop])
    fx = dict(lotss, catalog=tmp_path / "cat.fits")
    with pytest.raises(PrepareError, match="cat.fits: " + message):
        prepare(lotss_cfg(fx), out=tmp_path / "x.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.fits"]


def test_missing_catalogue_and_folder(lotss, tmp_path):
    with pytest.raises(PrepareError, match="nope.fits: catalogue not found"):
        prepare(lotss_cfg(dict(lotss, catalog=tmp_path / "nope.fits")), out=tmp_path / "x.h5")
    with pytest.raises(PrepareError, match="fields folder not found"):
        prepare(lotss_cfg(dict(lotss, mosaics_dir=tmp_path / "none")), out=tmp_path / "x.h5")


def test_a_failed_run_keeps_the_previous_file(lotss, tmp_path):
    out = tmp_path / "x.h5"
    prepare(lotss_cfg(lotss), out=out)
    before = out.read_bytes()
    with pytest.raises(PrepareError):
        prepare(lotss_cfg(lotss, "data.on_error=stop"), out=out)
    assert out.read_bytes() == before


# --- MiraBest-like fields and bad FITS files --------------------------------------------

@pytest.fixture()
def mirabest_like(tmp_path):
    return synth.write_mirabest_like(tmp_path / "mb", n=8, seed=3)


def mb_cfg(fx, *extra):
    return load_config(["data=mirabest", f"data.fields_dir={fx['root']}",
                        f"data.catalog={fx['catalog']}", *extra])


def test_mirabest_like_fields(mirabest_like, tmp_path):
    s = prepare(mb_cfg(mirabest_like), out=tmp_path / "x.h5")
    assert s.n_out == 8 and s.removed == {}
    ps = read_prepared(tmp_path / "x.h5")
    truth = mirabest_like["truth"]
    assert [ps.classes[i] for i in ps.columns["label"]] == [t["fr_class"] for t in truth]
    for i, t in enumerate(truth):
        assert ps.columns["peak_flux"][i] == pytest.approx(t["peak_jyb"], rel=0.05)
        assert ps.columns["total_flux"][i] == pytest.approx(t["total_jy"], rel=0.1)
    assert np.allclose(ps.columns["beam_arcsec"], 5.4)  # from config: no BMAJ in header


@pytest.mark.parametrize("writer, reason, message", [
    ("truncated", "unreadable", "corrupt or truncated FITS"),
    ("garbage", "unreadable", "corrupt or truncated FITS"),
    ("no_wcs", "no_wcs", "no celestial WCS"),
    ("cube", "bad_shape", r"shape \(3, 50, 50\)"),
])
def test_bad_fields_are_skipped_and_counted_or_stop(mirabest_like, tmp_path, writer, reason,
                                                     message):
    victim = mirabest_like["truth"][2]["path"]
    spare = tmp_path / "spare.fits.fz"
    shutil.copy(victim, spare)
    victim.unlink()
    if writer == "truncated":
        synth.write_truncated(spare, victim, keep_fraction=0.4)
    elif writer == "garbage":
        synth.write_garbage(victim)
    elif writer == "no_wcs":
        synth.write_no_wcs(victim)
    else:
        synth.write_3d_nondegenerate(victim)
    s = prepare(mb_cfg(mirabest_like), out=tmp_path / "x.h5")
    assert s.removed == {reason: 1} and s.n_out == 7
    assert victim.name in s.errors[0]
    with pytest.raises(InputError, match=f"{victim.name}: .*{message}"):
        read_fits_image(victim)
    with pytest.raises(PrepareError, match=f"{victim.name}: .*{message}"):
        prepare(mb_cfg(mirabest_like, "data.on_error=stop"), out=tmp_path / "y.h5")
    assert not (tmp_path / "y.h5").exists()


def test_nan_field_and_tab_header(mirabest_like, tmp_path):
    truth = mirabest_like["truth"]
    synth.write_nan_field(truth[0]["path"], ra0=truth[0]["ra_deg"], dec0=truth[0]["dec_deg"],
                          compressed=True)
    tab = truth[1]["path"].with_name("tabbed.fits")
    synth.write_tab_header(tab, ra0=truth[1]["ra_deg"], dec0=truth[1]["dec_deg"],
                           shape=(300, 300))
    text = mirabest_like["catalog"].read_text().replace(truth[1]["file"], "tabbed.fits")
    mirabest_like["catalog"].write_text(text)
    s = prepare(mb_cfg(mirabest_like, "data.cuts.snr_min=null", "data.cuts.edge_max_frac=null"),
                out=tmp_path / "x.h5")
    assert s.removed == {"nan": 1}  # the tab-laden header is repaired, not rejected
    assert read_fits_image(tab).cards_fixed >= 1
    s = prepare(mb_cfg(mirabest_like, "data.cuts.nan=fill", "data.cuts.snr_min=null",
                       "data.cuts.edge_max_frac=null"), out=tmp_path / "y.h5")
    assert s.removed == {} and np.isfinite(read_prepared(tmp_path / "y.h5").images).all()


def test_unknown_class_is_a_bad_row(mirabest_like, tmp_path):
    text = mirabest_like["catalog"].read_text().replace(",FRII,", ",FRIII,", 1)
    mirabest_like["catalog"].write_text(text)
    s = prepare(mb_cfg(mirabest_like), out=tmp_path / "x.h5")
    assert s.removed == {"bad_row": 1} and "class 'FRIII' not in data.classes" in s.errors[0]
