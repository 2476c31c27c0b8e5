"""Cross-matching statistics on hand-made catalogues; PyBDSF on a tiny map (optional)."""

import json

import numpy as np
import pytest

from radiodiff.skymap.evaluate import match_stats

ARCSEC = 1 / 3600.0


def _truth(ra, dec, flux, las=None, kind=None):
    n = len(ra)
    return {"ra": np.array(ra, float), "dec": np.array(dec, float),
            "flux_meas": np.array(flux, float),
            "las": np.zeros(n) if las is None else np.array(las, float),
            "kind": np.array(kind or ["gaussian"] * n)}


def test_completeness_reliability_flux_offsets():
    truth = _truth([150, 150.01, 150.02, 150.03], [30] * 4, [1e-3, 2e-3, 1e-2, 2e-2])
    found = {"ra": [150 + 1 * ARCSEC, 150.01, 150.03, 150.05], "dec": [30, 30, 30, 30],
             "flux": [1.1e-3, 2e-3, 1.8e-2, 5e-3]}
    s = match_stats(truth, found, radius_arcsec=5.4, edges=[5e-4, 5e-3, 5e-2])
    assert s["n_matched"] == 3 and s["completeness"] == 0.75 and s["reliability"] == 0.75
    assert [b["fraction"] for b in s["completeness_bins"]] == [1.0, 0.5]
    assert [b["n"] for b in s["reliability_bins"]] == [2, 2]
    assert [b["fraction"] for b in s["reliability_bins"]] == [1.0, 0.5]
    assert s["flux_ratio_median"] == pytest.approx(1.0)
    ra_off = np.cos(np.radians(30.0))  # 1" of RA at Dec 30 is 0.866" on the sky
    assert s["offset_arcsec"]["ra_median"] == pytest.approx(0.0, abs=1e-6)
    assert max(s["_offsets"][0]) == pytest.approx(ra_off, rel=1e-4)
    assert s["blended_fraction"] == 0.0


def test_split_and_blend():
    truth = _truth([150, 150 + 2 * ARCSEC, 151], [30, 30, 30], [1e-2, 1e-2, 5e-2],
                   las=[0, 0, 60], kind=["gaussian", "gaussian", "model"])
    found = {"ra": [150 + 1 * ARCSEC, 151 - 20 * ARCSEC, 151 + 20 * ARCSEC],
             "dec": [30, 30, 30], "flux": [2e-2, 2e-2, 2e-2]}
    s = match_stats(truth, found, radius_arcsec=5.4)
    assert s["split_fraction"] == 1.0          # the 60" source is found as two
    assert s["blended_fraction"] == 1.0        # both close sources match one found source
    assert s["n_resolved"] == 1


def test_nothing_found():
    s = match_stats(_truth([150], [30], [1e-3]), {"ra": [], "dec": [], "flux": []}, 5.0)
    assert s["completeness"] == 0.0 and s["reliability"] is None


try:
    from radiodiff.evaluation import sourcefind
    sourcefind._import_bdsf()
    HAVE_BDSF = True
except ImportError:
    HAVE_BDSF = False


@pytest.mark.skipif(not HAVE_BDSF, reason="PyBDSF (bdsf) is not installed")
def test_evaluate_map_with_pybdsf(tmp_path):
    from radiodiff.skymap.build import build_skymap
    from radiodiff.skymap.config import load_skymap_config
    from radiodiff.skymap.evaluate import evaluate_map

    (tmp_path / "c.csv").write_text("ra,dec,flux\n150,30,0.01\n150.01,30.01,0.005\n"
                                    "149.99,29.99,0.003\n")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]",
                                       f"sources.catalog={tmp_path / 'c.csv'}"])
    build_skymap(cfg, tmp_path / "m")
    paths = evaluate_map(tmp_path / "m", tmp_path / "e")
    report = json.loads(paths["evaluation.json"].read_text())
    assert report["map"]["completeness"] == 1.0 and report["map"]["n_truth"] == 3
    assert report["map"]["flux_ratio_median"] == pytest.approx(1.0, abs=0.15)
    assert report["map"]["offset_arcsec"]["radial_median"] < 1.0
    assert report["noise_free"]["completeness"] == 1.0
    assert paths["evaluation.png"].stat().st_size > 0
    from radiodiff.io.integrity import read_manifest, sha256_file
    assert report["map_sha256"] == sha256_file(tmp_path / "m" / "map.fits")
    assert sorted(read_manifest(tmp_path / "e")) == ["evaluation.json", "evaluation.png"]
    # an earlier report: refused before PyBDSF runs, replaced with overwrite
    from radiodiff.io.artifacts import OutputError
    before = paths["evaluation.json"].read_bytes()
    with pytest.raises(OutputError, match="already a map_evaluation folder; give --overwrite"):
        evaluate_map(tmp_path / "m", tmp_path / "e", radius_beams=2.0)
    assert paths["evaluation.json"].read_bytes() == before
    again = evaluate_map(tmp_path / "m", tmp_path / "e", radius_beams=2.0, overwrite=True,
                         noise_free=False)
    again = json.loads(again["evaluation.json"].read_text())
    assert again["settings"]["radius_beams"] == 2.0 and again["noise_free"] is None
    assert again["noise_free_skipped"] == "not asked for (--no-noise-free)"


def test_a_map_without_noise_is_refused_in_one_line(tmp_path):
    from radiodiff.skymap.build import build_skymap
    from radiodiff.skymap.config import load_skymap_config
    from radiodiff.skymap.evaluate import evaluate_map

    (tmp_path / "c.csv").write_text("ra,dec,flux\n150,30,0.01\n")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]", "noise.enabled=false",
                                       f"sources.catalog={tmp_path / 'c.csv'}"])
    build_skymap(cfg, tmp_path / "m")
    with pytest.raises(ValueError, match=r"m/map\.fits: the map has no noise \(noise\."
                                         r"enabled=false\)"):
        evaluate_map(tmp_path / "m", tmp_path / "e")
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(not HAVE_BDSF, reason="PyBDSF (bdsf) is not installed")
def test_a_map_with_noise_from_an_rms_map_skips_the_noise_free_pass(tmp_path):
    """No RMS card, so no one threshold for the noise-free model map: the map itself is
    searched with PyBDSF's rms map and the noise-free pass says why it was skipped."""
    from radiodiff.io.fits import write_fits_image
    from radiodiff.skymap.build import build_skymap
    from radiodiff.skymap.config import load_skymap_config
    from radiodiff.skymap.evaluate import evaluate_map

    write_fits_image(tmp_path / "rms.fits", np.full((120, 120), 1.5e-4, np.float32), 1.8,
                     ra=150.0, dec=30.0, bunit="JY/BEAM")
    (tmp_path / "c.csv").write_text("ra,dec,flux\n150,30,0.01\n150.01,30.01,0.005\n")
    cfg = load_skymap_config("first", ["sky.size_deg=[0.05,0.05]",
                                       f"noise.rms_map={tmp_path / 'rms.fits'}",
                                       f"sources.catalog={tmp_path / 'c.csv'}"])
    build_skymap(cfg, tmp_path / "m")
    report = json.loads(evaluate_map(tmp_path / "m", tmp_path / "e")["evaluation.json"]
                        .read_text())
    assert report["map"]["completeness"] == 1.0 and report["settings"]["rms_jyb"] is None
    assert report["noise_free"] is None and "rms map" in report["noise_free_skipped"]
