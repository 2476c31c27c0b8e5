"""FITS writer: the cards radio astronomers expect (BUNIT, TELESCOP, FREQ, beam, RMS, position)."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from radiodiff.io.fits import (NORMALISED_BUNIT, FitsImage, InputError, jy_per_beam_factor,
                               read_fits_image, write_fits_image)

IMAGE = np.linspace(0.0, 1.0, 8 * 8).reshape(8, 8)


def _comments(h: fits.Header) -> str:
    return " ".join(str(c) for c in h.get("COMMENT", []))


def test_survey_cards(tmp_path):
    """Telescope, frequency, beam with its position angle and the noise rms in BUNIT."""
    path = write_fits_image(tmp_path / "x.fits", IMAGE, 1.8, beam_arcsec=(5.4, 5.4),
                            bunit="JY/BEAM", ra=150.0, dec=2.0, beam_pa_deg=30.0,
                            telescope="VLA", freq_hz=1.4e9, rms=1.5e-4)
    h = fits.getheader(path)
    assert h["BUNIT"] == "JY/BEAM" and h["TELESCOP"] == "VLA" and h["FREQ"] == 1.4e9
    assert "Hz" in h.comments["FREQ"]
    assert h["BMAJ"] * 3600 == pytest.approx(5.4) and h["BMIN"] * 3600 == pytest.approx(5.4)
    assert h["BPA"] == 30.0 and "unknown" not in h.comments["BPA"]
    assert h["RMS"] == 1.5e-4 and "JY/BEAM" in h.comments["RMS"]
    assert "placeholder" not in _comments(h) and "unknown" not in _comments(h)
    assert (h["CRVAL1"], h["CRVAL2"]) == (150.0, 2.0)
    assert read_fits_image(path).wcs.has_celestial


def test_normalised_image_gets_a_fits_dimensionless_unit(tmp_path):
    """Without a flux scale BUNIT is dimensionless (the empty FITS unit string, as astropy
    reads it); the caller's COMMENT says how the image was scaled."""
    note = "Pixel values are peak-normalised (peak = 1): the image has no flux scale."
    h = fits.getheader(write_fits_image(tmp_path / "x.fits", IMAGE, 1.8, comments=[note]))
    assert "BUNIT" in h and h["BUNIT"] == NORMALISED_BUNIT == ""
    assert u.Unit(h["BUNIT"], format="fits") == u.dimensionless_unscaled
    assert note in _comments(h)


def test_unknowns_are_said_in_comments(tmp_path):
    """No position, beam or rms: (0, 0) is labelled a placeholder, BPA 0 marked unknown."""
    h = fits.getheader(write_fits_image(tmp_path / "a.fits", IMAGE, 1.8))
    text = _comments(h)
    assert (h["CRVAL1"], h["CRVAL2"]) == (0.0, 0.0)
    assert "placeholder" in h.comments["CRVAL1"] and "placeholder" in h.comments["CRVAL2"]
    assert "(0, 0) is a placeholder" in text
    assert "Noise rms unknown" in text and "RMS" not in h
    assert "Restoring beam unknown" in text and "BMAJ" not in h
    assert "TELESCOP" not in h and "FREQ" not in h
    h = fits.getheader(write_fits_image(tmp_path / "b.fits", IMAGE, 1.8, beam_arcsec=(6, 6)))
    assert h["BPA"] == 0.0 and "unknown" in h.comments["BPA"]
    # the placeholder position still gives a valid celestial WCS
    assert WCS(h).has_celestial


def test_long_comments_are_wrapped(tmp_path):
    words = " ".join(["survey"] * 30)
    h = fits.getheader(write_fits_image(tmp_path / "w.fits", IMAGE, 1.8, comments=[words]))
    assert words in _comments(h) and all(len(str(c)) <= 72 for c in h["COMMENT"])
    note = "x" * 150
    h = fits.getheader(write_fits_image(tmp_path / "x.fits", IMAGE, 1.8, ra=1.0, dec=1.0,
                                        rms=0.1, comments=[note]))
    assert "".join(str(c) for c in h["COMMENT"]).endswith(note)  # one word: cut
    assert all(len(str(c)) <= 72 for c in h["COMMENT"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(ra=10.0), "both ra and dec"),
    (dict(dec=10.0), "both ra and dec"),
    (dict(ra=0.0, dec=95.0), "-90 <= dec <= 90"),
    (dict(freq_hz=0.0), "freq_hz must be a positive number"),
    (dict(rms=float("nan")), "rms must be a positive number"),
    (dict(beam_arcsec=(5.0, 5.0), beam_pa_deg=float("inf")), "beam_pa_deg must be a finite"),
    (dict(telescope="VLA", cards={"TELESCOP": "LOFAR"}), "reserved"),
    (dict(cards={"COMMENT": "free text"}), "reserved"),
])
def test_bad_survey_cards_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_fits_image(tmp_path / "x.fits", IMAGE, 1.8, **kwargs)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("card", ["BUNIT   = ''", "BUNIT   = '   '", "BUNIT   ="])
def test_a_blank_bunit_is_a_missing_one(card):
    """A survey header's blank BUNIT says nothing about the unit: data.assume_bunit decides,
    as for a missing card (before: refused as dimensionless)."""
    header = fits.Header.fromstring(card.ljust(80))
    image = FitsImage(np.zeros((2, 2), np.float32), header, WCS(naxis=2), "f.fits", 0)
    assert jy_per_beam_factor(image, "mJy/beam") == pytest.approx(1e-3)
    with pytest.raises(InputError, match="BUNIT card and data.assume_bunit is null"):
        jy_per_beam_factor(image, None)
    with pytest.raises(InputError, match="dimensionless"):  # written out: a unit, refused
        jy_per_beam_factor(FitsImage(image.data, fits.Header({"BUNIT": "1"}), image.wcs,
                                     "f.fits", 0), "Jy/beam")
