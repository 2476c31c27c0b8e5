"""Whole maps: file contents (WCS, units, truth), shards merged bit for bit, CLI errors."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from radiodiff.cli import main
from radiodiff.skymap.build import build_skymap, merge_shards, parse_shard
from radiodiff.skymap.config import load_skymap_config


def _catalogue(path):
    """Six sources, two resolved (30", 40") straddling the tile edges of a 3-way split."""
    path.write_text("ra,dec,flux,las,class,pa\n"
                    "150.0,30.0,0.05,30,FRII,10\n"
                    "150.01,29.9835,0.02,40,FRI,\n"
                    "149.99,30.0167,0.004,3,,\n"
                    "150.02,30.02,0.002,0,,\n"
                    "149.98,29.97,0.001,,,\n"
                    "150.0005,30.0003,0.003,2,,\n")
    return path


@pytest.fixture
def cfg(tmp_path, physical_release_dir):
    return load_skymap_config("first", [
        "sky.size_deg=[0.08,0.08]", f"sources.catalog={_catalogue(tmp_path / 'cat.csv')}",
        f"render.model={physical_release_dir}", "render.steps=2", "seed=5"])


def test_map_files_wcs_units_truth(cfg, tmp_path):
    res = build_skymap(cfg, tmp_path / "m")
    with fits.open(res["paths"]["map"]) as hdul:
        h, data = hdul[0].header, hdul[0].data
    assert data.dtype.newbyteorder("=") == np.float32 and data.shape == (160, 160)
    assert h["BUNIT"] == "Jy/beam" and h["TELESCOP"] == "VLA" and h["FREQ"] == 1.4e9
    assert h["BMAJ"] == pytest.approx(5.4 / 3600) and h["BPA"] == 0.0
    assert h["RMS"] == pytest.approx(1.5e-4)
    w = WCS(h)
    assert w.wcs.ctype[0] == "RA---SIN"
    assert np.allclose(w.pixel_to_world_values(79.5, 79.5), (150.0, 30.0))
    t = Table.read(res["paths"]["truth"])
    assert list(t["id"]) == list(range(6))
    assert any("0-based" in c for c in fits.getheader(res["paths"]["truth"], 1)["COMMENT"])
    assert h["SYNTHETI"] is True and h["RDVERS"] and h["MODELSHA"] == prov_sha(res)
    assert "Noise-free" in str(fits.getheader(res["paths"]["model"])["COMMENT"])
    assert t["flux_req"].unit == "Jy" and t["las"].unit == "arcsec"
    assert list(np.asarray(t["kind"]).astype(str)) == ["model"] * 2 + ["gaussian"] * 4
    np.testing.assert_allclose(t["flux_meas"], t["flux_req"], rtol=1e-5)
    model = fits.getdata(res["paths"]["model"])
    assert model.sum() / (1.1331 * 9) == pytest.approx(t["flux_req"].sum(), rel=1e-3)
    prov = json.loads(res["paths"]["provenance"].read_text())
    assert prov["model"]["weights_sha256"] and prov["config"]["sources"]["catalog"] == "cat.csv"
    assert str(tmp_path) not in res["paths"]["provenance"].read_text()  # no local paths
    assert str(tmp_path) not in res["paths"]["config"].read_text()
    assert prov["rendered"] == {"gaussian": 4, "model": 2, "fallback": 0}


def prov_sha(res):
    return json.loads(res["paths"]["provenance"].read_text())["model"]["weights_sha256"]


def test_shards_merge_bit_identical(cfg, tmp_path):
    single = build_skymap(cfg, tmp_path / "one")["paths"]
    for k in (2, 0, 1):
        build_skymap(cfg, tmp_path / "sh", shard=(k, 3))
    merged = merge_shards(tmp_path / "sh")["paths"]
    for key in ("map", "model"):
        a, b = fits.getdata(single[key]), fits.getdata(merged[key])
        assert np.array_equal(a, b) and a.tobytes() == b.tobytes()
        assert fits.getheader(single[key]) == fits.getheader(merged[key])
    ta, tb = Table.read(single["truth"]), Table.read(merged["truth"])
    assert all(np.array_equal(ta[c], tb[c]) for c in ta.colnames)
    assert single["config"].read_text() == merged["config"].read_text()  # the map's: no paths
    assert fits.getheader(single["truth"], 1) == fits.getheader(merged["truth"], 1)
    assert merge_shards(tmp_path / "sh", overwrite=True)["paths"]["map"].is_file()  # again


def _many_resolved(path, n=10):
    """``n`` resolved sources (12-40") over a 0.08 deg map, then three Gaussians."""
    rng = np.random.default_rng(3)
    rows = [f"{150 + rng.uniform(-0.035, 0.035):.5f},{30 + rng.uniform(-0.035, 0.035):.5f},"
            f"{rng.uniform(0.005, 0.05):.4f},{rng.uniform(12, 40):.1f},{('FRI', 'FRII')[i % 2]},"
            for i in range(n)]
    rows += ["150.01,30.01,0.003,2,,", "149.99,29.99,0.002,0,,", "150.0,30.02,0.001,,,"]
    path.write_text("ra,dec,flux,las,class,pa\n" + "\n".join(rows) + "\n")
    return path


def test_batched_model_sources_give_the_same_map(tmp_path, busy_release_dir):
    """Batches of 1 and of 7 model sources, in one run or in three shards: the same bits."""
    base = ["sky.size_deg=[0.08,0.08]", f"sources.catalog={_many_resolved(tmp_path / 'c.csv')}",
            f"render.model={busy_release_dir}", "render.steps=2", "seed=2"]
    one = build_skymap(load_skymap_config("first", [*base, "render.batch_size=1"]),
                       tmp_path / "b1")
    seven = load_skymap_config("first", [*base, "render.batch_size=7"])
    batched = build_skymap(seven, tmp_path / "b7")
    for k in (1, 0, 2):
        build_skymap(seven, tmp_path / "sh", shard=(k, 3))
    merged = merge_shards(tmp_path / "sh")
    assert one["plan"].provenance["rendered"]["model"] == 10
    a = fits.getdata(one["paths"]["map"])
    for other in (batched, merged):
        b = fits.getdata(other["paths"]["map"])
        assert a.tobytes() == b.tobytes()
        ta, tb = Table.read(one["paths"]["truth"]), Table.read(other["paths"]["truth"])
        assert all(np.array_equal(ta[c], tb[c]) for c in ta.colnames)


def test_merge_reports_missing_shards(cfg, tmp_path, caplog):
    build_skymap(cfg, tmp_path / "sh", shard=(1, 3))
    with pytest.raises(ValueError, match=r"need shards 0..2 of 3, missing \[0, 2\]"):
        merge_shards(tmp_path / "sh")
    # a later run with another N: its set is merged, the older one named and left alone
    for k in (0, 1):
        build_skymap(cfg, tmp_path / "sh", shard=(k, 2))
    with caplog.at_level("WARNING"):
        merged = merge_shards(tmp_path / "sh")["paths"]
    assert "2-shard set; older shards of another N left out: shard-1-of-3.fits" in caplog.text
    assert fits.getdata(merged["map"]).tobytes() == fits.getdata(
        build_skymap(cfg, tmp_path / "one")["paths"]["map"]).tobytes()
    assert (tmp_path / "sh" / "shards" / "shard-1-of-3.fits").is_file()


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("ra,dec\n150,30\n")
    rc = main(["skymap", f"sources.catalog={tmp_path / 'c.csv'}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "catalogue has no flux column" in err
    rc = main(["skymap", "sky.sizee=1", "--out", str(tmp_path / "o")])
    assert rc == 2 and "sizee" in capsys.readouterr().err
    rc = main(["skymap", "--preset", "nope", "--out", str(tmp_path / "o")])
    assert rc == 2 and "presets: first, lotss" in capsys.readouterr().err


def test_cli_counts_skipped_rows(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("ra,dec,flux\n150,30,0.01\n,30,0.01\n160,30,0.01\n")
    rc = main(["skymap", f"sources.catalog={tmp_path / 'c.csv'}", "sky.size_deg=[0.05,0.05]",
               "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0 and "1 sources" in out and "'bad_position': 1" in out and "'off_map': 1" in out


def test_lotss_preset_and_tan(tmp_path):
    cfg = load_skymap_config("lotss", ["sky.size_deg=[0.05,0.04]", "sky.projection=TAN",
                                       "sources.density_per_deg2=4000"])
    res = build_skymap(cfg, tmp_path / "l")
    h = fits.getheader(res["paths"]["map"])
    assert h["TELESCOP"] == "LOFAR" and h["FREQ"] == 1.44e8 and h["CTYPE2"] == "DEC--TAN"
    assert (h["NAXIS1"], h["NAXIS2"]) == (120, 96)


def test_shape_only_release(tmp_path, shape_release_dir):
    """A class-only release: LAS rule for the pixel scale, flux from the catalogue."""
    (tmp_path / "c.csv").write_text("ra,dec,flux,las,class\n150,30,0.01,25,FRI\n")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]", "render.steps=2",
                                       f"sources.catalog={tmp_path / 'c.csv'}",
                                       f"render.model={shape_release_dir}"])
    res = build_skymap(cfg, tmp_path / "s")
    assert res["plan"].provenance["model"]["shape_only"]
    t = Table.read(res["paths"]["truth"])
    assert t["flux_meas"][0] == pytest.approx(0.01, rel=1e-5)
    cfg.render.flux_from = "model"
    with pytest.raises(ValueError, match="flux_from=model needs a release"):
        build_skymap(cfg, tmp_path / "x")


def test_flux_from_model_keeps_the_release_flux(tmp_path, physical_release_dir,
                                                 physical_release):
    """A Jy/beam release (5" x 4" beam) at its own flux on the 5.4" map: the integrated
    flux of the placed source is the generated image's, Jy/beam_c -> Jy conserved."""
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.seeds import sky_image_seed
    from radiodiff.skymap.render import ModelCutouts
    from radiodiff.skymap.sky import Beam

    (tmp_path / "c.csv").write_text("ra,dec,flux,peak,las,class,pa\n"
                                    "150,30,0.5,0.02,25,FRI,40\n")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]", "render.steps=2",
                                       f"sources.catalog={tmp_path / 'c.csv'}",
                                       f"render.model={physical_release_dir}",
                                       "render.flux_from=model", "noise.enabled=false"])
    t = Table.read(build_skymap(cfg, tmp_path / "m")["paths"]["truth"])
    cut = ModelCutouts(physical_release, SamplerSpec(steps=2))(
        0.02, 25.0, "FRI", sky_image_seed(0, 0))
    own = cut.image.sum() / Beam(5.0, 4.0).area_px(1.8)
    assert t["flux_meas"][0] == pytest.approx(own, rel=0.01)
    assert t["flux_req"][0] == 0.5 and t["peak_req"][0] == 0.02  # requested, for the record
    # the default (auto) does the same where the source has a peak: the model was asked for
    # it, so a Gaussian's flux of that peak would misscale a double's lobes
    cfg.render.flux_from = "auto"
    auto = Table.read(build_skymap(cfg, tmp_path / "a")["paths"]["truth"])
    assert auto["flux_meas"][0] == t["flux_meas"][0] and auto["kind"][0] == "model"
    # ... and scales to the catalogue's integrated flux where it has none, as catalogue does
    (tmp_path / "c.csv").write_text("ra,dec,flux,las,class,pa\n150,30,0.5,25,FRI,40\n")
    for flux_from in ("auto", "catalogue"):
        cfg.render.flux_from = flux_from
        t = Table.read(build_skymap(cfg, tmp_path / flux_from)["paths"]["truth"])
        assert t["flux_meas"][0] == pytest.approx(0.5, rel=1e-5) and t["kind"][0] == "model"


def test_noise_from_an_rms_map(tmp_path):
    from radiodiff.io.fits import write_fits_image

    rms = np.full((120, 120), 3e-4, np.float32)
    rms[:, :60] = 1e-4
    write_fits_image(tmp_path / "rms.fits", rms, 1.8, ra=150.0, dec=30.0, bunit="JY/BEAM")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]",
                                       "sources.density_per_deg2=0",
                                       f"noise.rms_map={tmp_path / 'rms.fits'}"])
    res = build_skymap(cfg, tmp_path / "m")
    data = fits.getdata(res["paths"]["map"])  # 100 x 100 px, centred on the rms map
    assert data[:, 70:].std() == pytest.approx(3e-4, rel=0.1)
    assert data[:, :30].std() == pytest.approx(1e-4, rel=0.1)
    assert "RMS" not in fits.getheader(res["paths"]["map"])  # not one number
    cfg.sky.size_deg = [0.1, 0.1]
    with pytest.raises(ValueError, match="must cover the whole sky map"):
        build_skymap(cfg, tmp_path / "n")


@pytest.mark.parametrize("bunit, scale", [("mJy/beam", 1e3), (None, 1.0)])
def test_an_rms_map_is_read_in_its_bunit(tmp_path, bunit, scale):
    """An rms map in mJy/beam gives the noise it says (before: 1000x, its BUNIT ignored);
    one without BUNIT is taken to be in Jy/beam (data.assume_bunit's default)."""
    from radiodiff.io.fits import write_fits_image

    rms = np.full((120, 120), 2e-4 * scale, np.float32)
    path = write_fits_image(tmp_path / "rms.fits", rms, 1.8, ra=150.0, dec=30.0,
                            bunit=bunit or "JY/BEAM")
    if bunit is None:
        with fits.open(path, mode="update") as hdul:
            del hdul[0].header["BUNIT"]
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]",
                                       "sources.density_per_deg2=0",
                                       f"noise.rms_map={path}"])
    data = fits.getdata(build_skymap(cfg, tmp_path / "m")["paths"]["map"])
    assert data.std() == pytest.approx(2e-4, rel=0.1)


def test_an_rms_map_in_another_unit_is_refused(tmp_path):
    from radiodiff.io.fits import write_fits_image

    path = write_fits_image(tmp_path / "rms.fits", np.full((120, 120), 1.0, np.float32),
                            1.8, ra=150.0, dec=30.0, bunit="K")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]",
                                       "sources.density_per_deg2=0",
                                       f"noise.rms_map={path}"])
    with pytest.raises(ValueError, match=r"noise.rms_map: .*rms.fits: BUNIT 'K'"):
        build_skymap(cfg, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_bad_noise_level_or_rms_map_is_refused_before_any_source_is_drawn(tmp_path,
                                                                             monkeypatch):
    from radiodiff.io.fits import write_fits_image
    from radiodiff.skymap import build

    def no_sources(*args):
        raise AssertionError("sources drawn before the noise was checked")
    monkeypatch.setattr(build, "_sources", no_sources)
    short = write_fits_image(tmp_path / "rms.fits", np.full((40, 40), 1e-4, np.float32), 1.8,
                             ra=150.0, dec=30.0, bunit="JY/BEAM")
    for override, message in (("noise.rms_jyb=0", r"noise.rms_jyb must be a positive"),
                              ("survey.rms_jyb=nan", r"survey.rms_jyb must be a positive"),
                              (f"noise.rms_map={short}", r"must cover the whole sky map")):
        cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]", override])
        with pytest.raises(ValueError, match=message):
            build_skymap(cfg, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_the_truth_records_the_class_generated(tmp_path, physical_release_dir,
                                               physical_release):
    """A catalogue class the release does not know (T-RECS ``RadioClass`` 2) is drawn from
    the training rows, or (this release has none) left null: the truth table holds the
    class the source was generated as, blank for none."""
    (tmp_path / "c.csv").write_text("ra,dec,flux,peak,las,class\n150,30,0.5,0.02,25,2\n"
                                    "150.01,30.01,0.5,0.02,25,FRII\n")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]", "render.steps=2",
                                       f"sources.catalog={tmp_path / 'c.csv'}",
                                       f"render.model={physical_release_dir}",
                                       "noise.enabled=false"])
    t = Table.read(build_skymap(cfg, tmp_path / "m")["paths"]["truth"])
    col = t["class"]
    cls = [str(c) for c in (col.filled("") if hasattr(col, "filled") else col)]  # blank: masked
    assert list(t["kind"]) == ["model", "model"]
    assert cls[0] == "" and physical_release.train_conditions is None and cls[1] == "FRII"
