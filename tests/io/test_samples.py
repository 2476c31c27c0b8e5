"""Sample writers: FITS files, samples.h5 and preview.png from generated images."""

import dataclasses
import json

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from helpers.releases import BEAM, CLASSES, PIXEL_SCALE, SIZE
from radiodiff.pipeline.generate import generate
from radiodiff.io.provenance import git_commit
from radiodiff.io.samples import save_samples

FAST = dict(steps=3, batch_size=4)  # 3 Heun steps: 5 network evaluations


def _header_text(h: fits.Header) -> str:
    """Every keyword, value and comment of a header, HISTORY and COMMENT cards included."""
    return "\n".join(f"{c.keyword} {c.value} {c.comment}" for c in h.cards)


def test_save_samples(tmp_path, release):
    r = generate(release, n=3, label="FRII", peak_flux=0.02, las_arcsec=40.0, seed=5, **FAST)
    paths = save_samples(tmp_path / "out", release, r)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["SHA256SUMS", "preview.png", "sample_00000.fits", "sample_00001.fits",
                     "sample_00002.fits", "samples.h5"]  # SHA256SUMS: what the writer wrote
    with fits.open(paths["fits"][1]) as hdul:
        h, data = hdul[0].header, hdul[0].data
        np.testing.assert_array_equal(data, r.physical[1, 0])
    np.testing.assert_allclose(proj_plane_pixel_scales(WCS(h)) * 3600, [PIXEL_SCALE] * 2)
    assert h["BUNIT"] == "Jy/beam"
    import astropy.units as u
    assert u.Unit(h["BUNIT"], format="fits") == u.Jy / u.beam  # the FITS standard's spelling
    assert (h["BMAJ"] * 3600, h["BMIN"] * 3600) == pytest.approx(tuple(BEAM))
    assert h["SEED"] == 6 and h["SAMPLER"] == "heun" and h["STEPS"] == 3
    assert h["GUIDANCE"] == 1.0 and h["NFE"] == 5 and h["CLASS"] == "FRII"
    assert h["PEAKFLUX"] == 0.02 and h["LAS"] == 40.0 and h["MODELSHA"] == release.weights_sha256
    assert h["MODELNAM"] == "unet_tiny" and h["DATASHA"] == "d" * 64
    assert h["IMGUNIT"] == "Jy/beam"
    # a synthetic image, from this code; every condition given: none drawn, no CONDS card
    assert h["SYNTHETI"] is True and "not observed" in h.comments["SYNTHETI"]
    assert h["GITCOMMT"] == git_commit() and "CONDS" not in h
    with h5py.File(paths["samples.h5"]) as f:
        np.testing.assert_array_equal(f["images"][()], r.images)
        np.testing.assert_array_equal(f["physical"][()], r.physical)
        assert f["seeds"][()].tolist() == [5, 6, 7] and f["nfe"][()].tolist() == [5, 5, 5]
        assert f["label"][()].tolist() == [1, 1, 1]
        assert f["class"].asstr()[()].tolist() == ["FRII"] * 3
        assert f["peak_flux"][()].tolist() == [0.02] * 3
        assert f.attrs["model_sha256"] == release.weights_sha256
        assert f.attrs["sampler"] == "heun" and f.attrs["steps"] == 3
        assert json.loads(f.attrs["classes"]) == CLASSES
        assert f.attrs["pixel_scale_arcsec"] == PIXEL_SCALE
        assert f.attrs["conditions"] == "given" and f.attrs["git_commit"] == git_commit()
    assert paths["preview.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_normalised_samples_have_dimensionless_bunit(tmp_path, release):
    r = generate(release, n=1, **FAST)
    paths = save_samples(tmp_path, release, r)
    h = fits.getheader(paths["fits"][0])
    assert h["BUNIT"] == "" and h["IMGUNIT"] == "normalised" and h["CLASS"] == "none"
    assert "PEAKFLUX" not in h and "LAS" not in h  # numeric cards: absent, never 'none'
    assert h["CONDS"] == "null"  # the conditions not given were left null
    with h5py.File(paths["samples.h5"]) as f:
        assert "physical" not in f


def test_samples_store_the_model_name_and_hash_never_a_path(tmp_path, tmp_path_factory,
                                                            release, release_dir):
    """MODEL is the release folder's name with MODELSHA its weights' SHA-256; no absolute
    path of the machine that drew the samples is in the FITS headers or samples.h5."""
    r = generate(release, n=2, label="FRI", peak_flux=0.02, **FAST)
    paths = save_samples(tmp_path / "out", release, r)
    private = {str(p) for p in (tmp_path, release_dir, tmp_path_factory.getbasetemp())}
    private |= {str(p.resolve()) for p in (tmp_path, release_dir)}
    for path in paths["fits"]:
        h = fits.getheader(path)
        assert h["MODEL"] == release_dir.name == "tiny"
        assert h["MODELSHA"] == release.weights_sha256
        text = _header_text(h)
        assert not [p for p in private if p in text]
        assert not [c for c in h.cards if isinstance(c.value, str) and c.value.startswith("/")]
    with h5py.File(paths["samples.h5"]) as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        for ds in f.values():
            attrs.update({f"{ds.name}.{k}": ds.attrs[k] for k in ds.attrs})
    assert "model_path" not in attrs
    assert attrs["model"] == "tiny" and attrs["model_sha256"] == release.weights_sha256
    text = "\n".join(str(v) for v in attrs.values())
    assert not [p for p in private if p in text]
    assert not [k for k, v in attrs.items() if isinstance(v, str) and v.startswith("/")]


def test_samples_carry_the_survey_cards(tmp_path, release):
    """A FIRST-trained release: TELESCOP 'VLA', FREQ 1.4 GHz, BMAJ/BMIN/BPA in degrees (BPA 0,
    unknown), a COMMENT that the noise rms is unknown and that (0, 0) is a placeholder."""
    r = generate(release, n=1, label="FRII", peak_flux=0.02, **FAST)
    h = fits.getheader(save_samples(tmp_path / "a", release, r)["fits"][0])
    comments = " ".join(str(c) for c in h["COMMENT"])
    assert h["BUNIT"] == "Jy/beam" and h["TELESCOP"] == "VLA" and h["FREQ"] == 1.4e9
    assert (h["BMAJ"] * 3600, h["BMIN"] * 3600) == pytest.approx(tuple(BEAM))
    assert h["BPA"] == 0.0 and "RMS" not in h and "Noise rms unknown" in comments
    assert (h["CRVAL1"], h["CRVAL2"]) == (0.0, 0.0) and "is a placeholder" in comments
    assert "normalised" not in comments  # restored to Jy/beam: a real flux scale
    assert "Negatives clipped to 0" in comments  # a half-normal background: said
    with h5py.File(tmp_path / "a" / "samples.h5") as f:
        assert f.attrs["telescope"] == "VLA" and f.attrs["freq_hz"] == 1.4e9
    # a real position: the WCS is centred on it and no placeholder COMMENT is written
    h = fits.getheader(save_samples(tmp_path / "b", release, r, ra=150.0, dec=2.5)["fits"][0])
    centre = WCS(h).pixel_to_world((SIZE - 1) / 2, (SIZE - 1) / 2)
    assert centre.ra.deg == pytest.approx(150.0) and centre.dec.deg == pytest.approx(2.5)
    assert "placeholder" not in _header_text(h)
    with pytest.raises(ValueError, match="both ra and dec"):
        save_samples(tmp_path / "c", release, r, ra=150.0)


def test_normalised_samples_say_they_have_no_flux_scale(tmp_path, release):
    """Without flux restoration BUNIT is dimensionless ('', as astropy parses it) and a
    COMMENT says the image is peak-normalised (peak = 1) with no flux scale."""
    from astropy import units as u

    r = generate(release, n=1, **FAST)
    h = fits.getheader(save_samples(tmp_path, release, r)["fits"][0])
    assert h["BUNIT"] == "" and u.Unit(h["BUNIT"], format="fits") == u.dimensionless_unscaled
    comments = " ".join(str(c) for c in h["COMMENT"])
    assert "peak-normalised (peak = 1)" in comments and "no flux scale" in comments
    dataset = dataclasses.replace(release, meta=dict(release.meta, scaling="dataset"))
    h = fits.getheader(save_samples(tmp_path / "d", dataset, r)["fits"][0])
    comments = " ".join(str(c) for c in h["COMMENT"])
    assert "peak = 1" not in comments and "dataset scaling" in comments


def test_survey_cards_from_the_release_meta(tmp_path, release):
    """``telescope``, ``freq_hz``, ``beam_pa_deg`` and ``rms_jy_beam`` of the release meta win
    over what the config implies; RMS is written in the image unit (Jy/beam)."""
    meerkat = dataclasses.replace(release, meta=dict(
        release.meta, telescope="MeerKAT", freq_hz=1.28e9, beam_pa_deg=30.0,
        rms_jy_beam=2e-5))
    r = generate(meerkat, n=1, peak_flux=0.02, **FAST)
    h = fits.getheader(save_samples(tmp_path, meerkat, r)["fits"][0])
    assert h["TELESCOP"] == "MeerKAT" and h["FREQ"] == 1.28e9 and h["BPA"] == 30.0
    assert h["RMS"] == 2e-5 and "Jy/beam" in h.comments["RMS"]
    assert "Noise rms unknown" not in _header_text(h)


@pytest.mark.parametrize("data, beam, telescope, freq", [
    ({"name": "lotss", "source": "lotss"}, [6.0, 6.0], "LOFAR", 1.44e8),
    ({"name": "mirabest", "source": "mirabest"}, [5.4, 5.4], "VLA", 1.4e9),
    ({}, [5.4, 5.4], "VLA", 1.4e9),   # the FIRST restoring beam alone
    ({}, [6.0, 6.0], None, None),     # unknown survey: no TELESCOP or FREQ card
])
def test_survey_cards_from_the_release_config(tmp_path, release, data, beam, telescope, freq):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": OmegaConf.to_container(release.config.model),
                            "data": data})
    other = dataclasses.replace(release, config=cfg, meta=dict(release.meta, beam_arcsec=beam))
    r = generate(other, n=1, **FAST)
    h = fits.getheader(save_samples(tmp_path, other, r)["fits"][0])
    assert h.get("TELESCOP") == telescope and h.get("FREQ") == freq


@pytest.fixture(scope="module")
def drawing(tmp_path_factory):
    """A release with its training rows' conditions."""
    from helpers.releases import train_table, tiny_physical_release
    from radiodiff.pipeline.release import load_release
    return load_release(tiny_physical_release(tmp_path_factory.mktemp("rel") / "drawing",
                                              train_conditions=train_table(20)))


def _cards(header: fits.Header) -> list[str]:
    return [card.image for card in header.cards]


@pytest.mark.parametrize("where", [{}, {"ra": 150.0, "dec": 2.5}])
def test_in_memory_headers_are_the_fits_headers(tmp_path, drawing, where):
    from radiodiff.io.samples import sample_images
    r = generate(drawing, n=3, seed=2, **FAST)  # drawn conditions: one per image
    pairs = sample_images(drawing, r, **where)
    paths = save_samples(tmp_path / "out", drawing, r, **where)
    assert len(pairs) == len(paths["fits"]) == 3
    for k, ((data, header), path) in enumerate(zip(pairs, paths["fits"])):
        with fits.open(path) as hdul:
            assert _cards(hdul[0].header) == _cards(header)  # card for card
            np.testing.assert_array_equal(hdul[0].data, data)
        assert data.dtype == np.float32 and data.shape == (SIZE, SIZE)
        np.testing.assert_array_equal(data, r.output[k, 0])
        assert header["PEAKFLUX"] == r.conditions["peak_flux"][k]
        assert header["LAS"] == r.conditions["las_arcsec"][k]
        assert header["CLASS"] == r.conditions["class"][k] and header["CONDS"] == "draw"
        assert header["BUNIT"] == "Jy/beam" and header["DATE"] == r.created_utc
        np.testing.assert_allclose(proj_plane_pixel_scales(WCS(header)) * 3600,
                                   [PIXEL_SCALE] * 2)
    with pytest.raises(ValueError, match="both ra and dec"):
        sample_images(drawing, r, ra=1.0)


def test_pixel_scale_follows_the_las_of_cutouts_cut_by_las(tmp_path, drawing):
    """Catalogue + field data (mirabest, lotss) were cut out with a side of
    max(k_las * LAS, min_size) resized to image_size: each image's WCS has that scale."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": OmegaConf.to_container(drawing.config.model),
                            "data": {"name": "mirabest", "source": "mirabest",
                                     "cutout": {"k_las": 1.5, "min_size_arcsec": 144.0}}})
    mb = dataclasses.replace(drawing, config=cfg)
    assert mb.pixel_scale(40.0) == 144.0 / SIZE and mb.pixel_scale(200.0) == 300.0 / SIZE
    assert mb.pixel_scale(float("nan")) == PIXEL_SCALE  # no LAS: the release's
    assert drawing.pixel_scale(200.0) == PIXEL_SCALE  # FIRST: fixed-size cutouts
    no_las = dataclasses.replace(mb, meta=dict(mb.meta, scalar_conditions=["peak_flux"]))
    assert no_las.pixel_scale(200.0) == PIXEL_SCALE  # the LAS is not the image's condition
    r = generate(mb, n=2, las_arcsec=200.0, **FAST)
    paths = save_samples(tmp_path, mb, r)
    for path in paths["fits"]:
        h = fits.getheader(path)
        np.testing.assert_allclose(proj_plane_pixel_scales(WCS(h)) * 3600, [300.0 / SIZE] * 2)
    with h5py.File(paths["samples.h5"]) as f:
        assert f["pixel_scale_arcsec"][()].tolist() == [300.0 / SIZE] * 2
        assert f.attrs["conditions"] == "draw"


@pytest.mark.parametrize("n", [1, 2, 4])  # 1: one 1.25-inch panel cut the title
def test_preview_title_fits_the_figure(tmp_path, release, monkeypatch, n):
    from radiodiff.io import artifacts
    drawn = []

    def record(fig, path, **kw):  # the figure as written, its title's extent in pixels
        renderer = fig.canvas.get_renderer()
        drawn.append((fig._suptitle.get_window_extent(renderer), fig.bbox))
        return path

    monkeypatch.setattr(artifacts, "save_figure", record)
    r = generate(release, n=n, sampler="dpmpp_2m", guidance=1.5, **FAST)
    save_samples(tmp_path / "out", release, r)
    (title, frame), = drawn
    assert frame.x0 <= title.x0 and title.x1 <= frame.x1, (title, frame)
    assert title.y1 <= frame.y1


def test_the_condition_words_live_in_io():
    """io is the bottom layer: the sample writer imports nothing from diffusion or pipeline
    (tests/test_layers.py checks every import); the words it records ("draw", "null",
    "given") are defined in io and generate takes them from there (before: io.samples
    imported generate.GIVEN)."""
    import ast
    import inspect

    import radiodiff.pipeline.generate as gen
    import radiodiff.io.samples as samples

    tree = ast.parse(inspect.getsource(samples))
    top = [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert not [m for m in top if m and m.startswith(("radiodiff.diffusion",
                                                      "radiodiff.pipeline"))], top
    assert "GIVEN" in samples.__all__ and "CONDITION_MODES" in samples.__all__
    assert gen.GIVEN is samples.GIVEN and gen.CONDITION_MODES is samples.CONDITION_MODES
    assert set(samples.CONDITION_MODES) | {samples.GIVEN} == {"draw", "null", "given"}
