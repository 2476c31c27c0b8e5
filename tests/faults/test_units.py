"""Units are read, never assumed (issue 27, item 1): a field's BUNIT is parsed and converted to
Jy/beam or its rows refused; a missing BUNIT follows data.assume_bunit; catalogue text in any
encoding; evaluation refuses sets of other classes, units or geometry in one line."""

import gzip
import json
import shutil

import h5py
import numpy as np
import pytest
from astropy.io import fits

from helpers import synth
from helpers.releases import tiny_release
from radiodiff.cli import main
from radiodiff.config import load_config
from radiodiff.data.catalog import CatalogSource
from radiodiff.data.prepare import PrepareError, prepare
from radiodiff.data.prepared import read_prepared
from radiodiff.pipeline.generate import generate
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.evaluation.sets import Compared, reference_set
from radiodiff.io.fits import parse_brightness_unit
from radiodiff.pipeline.release import load_release
from radiodiff.io.samples import save_samples

FIRST_CLASSES = ["FRI", "FRII", "Compact", "Bent"]
MB_CLASSES = ["FRI", "FRII", "hybrid"]


@pytest.fixture(scope="module")
def mb_master(tmp_path_factory):
    return synth.write_mirabest_like(tmp_path_factory.mktemp("units") / "mb", n=2, seed=5,
                                     compressed=False)


@pytest.fixture()
def mb(mb_master, tmp_path):
    root = shutil.copytree(mb_master["root"], tmp_path / "mb")
    return dict(root=root, catalog=root / "catalog.csv", field=root / "mb000.fits")


def cfg(fx, *extra, limit="1"):
    """Row 0 only (``limit``), unless told otherwise."""
    return load_config(["data=mirabest", f"data.fields_dir={fx['root']}",
                        f"data.catalog={fx['catalog']}", f"data.limit={limit}", *extra])


@pytest.fixture(scope="module")
def baseline(mb_master, tmp_path_factory):
    """Row 0 prepared from the field as written (BUNIT JY/BEAM): peak flux and rms."""
    out = tmp_path_factory.mktemp("base") / "x.h5"
    prepare(cfg({"root": mb_master["root"], "catalog": mb_master["catalog"]}), out=out)
    c = read_prepared(out, images=False).columns
    return float(c["peak_flux"][0]), float(c["rms"][0])


def set_unit(path, bunit, factor=1.0, compressed=False):
    """Rewrite a field in ``bunit`` (None: no BUNIT card), its pixels times ``factor``;
    ``compressed``: as RICE tile-compressed HDU 1 behind an empty primary (MiraBest .fz)."""
    with fits.open(path) as hdul:
        data, header = hdul[0].data * factor, hdul[0].header.copy()
    if bunit is None:
        del header["BUNIT"]
    else:
        header["BUNIT"] = bunit
    hdu = (fits.CompImageHDU(data=data.astype(np.float32), header=header,
                             compression_type="RICE_1") if compressed else
           fits.PrimaryHDU(data=data.astype(np.float32), header=header))
    hdus = [fits.PrimaryHDU(), hdu] if compressed else [hdu]
    fits.HDUList(hdus).writeto(path, overwrite=True)


# ------------------------------------------------------------------------- BUNIT, prepare

@pytest.mark.parametrize("bunit, factor, compressed", [
    ("mJy/beam", 1e3, False), ("uJy/beam", 1e6, False), ("mJy/beam", 1e3, True),
    ("Jy/Beam", 1.0, False),
])
def test_field_units_are_converted_to_jy_per_beam(mb, tmp_path, baseline, bunit, factor,
                                                  compressed):
    """A field in mJy/beam (data x 1000) prepares to the same Jy/beam peak as in Jy/beam
    (before: peak_flux 1000x too large, exit 0)."""
    set_unit(mb["field"], bunit, factor, compressed)
    prepare(cfg(mb), out=tmp_path / "x.h5")
    c = read_prepared(tmp_path / "x.h5", images=False).columns
    rtol = 2e-2 if compressed else 1e-5  # RICE quantisation of the noise
    assert float(c["peak_flux"][0]) == pytest.approx(baseline[0], rel=rtol)
    assert float(c["rms"][0]) == pytest.approx(baseline[1], rel=5e-2 if compressed else 1e-5)


@pytest.mark.parametrize("bunit, says", [
    ("K", "(temperature) is not a surface brightness"),
    ("counts", "not a unit astropy knows"),
    ("Jy/pixel", "not a surface brightness"),
    ("MJY/BEAM", "ambiguous in upper case"),
])
def test_other_units_are_row_errors_naming_file_and_unit(mb, tmp_path, bunit, says):
    set_unit(mb["field"], bunit)
    s = prepare(cfg(mb, limit="null"), out=tmp_path / "x.h5")
    assert s.n_out == 1 and s.removed == {"bad_unit": 1}
    assert str(mb["field"]) in s.errors[0] and repr(bunit) in s.errors[0] and says in s.errors[0]
    with pytest.raises(PrepareError, match=f"mb000.fits: BUNIT '{bunit}'.*on_error=stop"):
        prepare(cfg(mb, "data.on_error=stop"), out=tmp_path / "y.h5")
    assert not (tmp_path / "y.h5").exists()


def test_missing_bunit_follows_data_assume_bunit(mb, tmp_path, baseline):
    set_unit(mb["field"], None)
    prepare(cfg(mb), out=tmp_path / "a.h5")  # default: Jy/beam, as documented
    peak = read_prepared(tmp_path / "a.h5", images=False).columns["peak_flux"][0]
    assert peak == pytest.approx(baseline[0], rel=1e-5)
    prepare(cfg(mb, "data.assume_bunit=mJy/beam"), out=tmp_path / "b.h5")
    peak = read_prepared(tmp_path / "b.h5", images=False).columns["peak_flux"][0]
    assert peak == pytest.approx(baseline[0] * 1e-3, rel=1e-5)
    with pytest.raises(PrepareError, match="no BUNIT card and data.assume_bunit is null"):
        prepare(cfg(mb, "data.assume_bunit=null", "data.on_error=stop"), out=tmp_path / "c.h5")
    with pytest.raises(ValueError, match=r"data.assume_bunit='K': 'K' \(temperature\)"):
        prepare(cfg(mb, "data.assume_bunit=K"), out=tmp_path / "d.h5")


def test_a_field_with_a_bad_unit_is_read_once_for_all_its_rows(mb, monkeypatch):
    """A mosaic with a bad BUNIT fails each of its rows, reading it once (before: lru_cache
    keeps no exception, so the field was read again for every row)."""
    from radiodiff.data import catalog as catalog_mod

    set_unit(mb["field"], "K")
    reads, real = [], catalog_mod.read_fits_image

    def counting(path):
        reads.append(path)
        return real(path)
    monkeypatch.setattr(catalog_mod, "read_fits_image", counting)
    # every row in the same field (both rows of the catalogue name mb000.fits)
    source = CatalogSource(cfg(mb, f"data.field_pattern={mb['field'].name}", limit="null").data)
    errors = list(source)
    assert len(reads) == 1 and len(errors) == 2
    assert sorted(e.row for e in errors) == [0, 1]  # each its own row
    assert all(e.reason == "bad_unit" and "'K'" in str(e) for e in errors)


def test_assume_bunit_has_one_default():
    """data.assume_bunit's default is DataConfig's alone: no data preset repeats it (copies
    drift apart); the catalogue reads the config's value, with no fallback of its own."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from radiodiff.config import DataConfig

    conf = Path(__file__).resolve().parents[2] / "conf" / "data"
    for preset in sorted(conf.glob("*.yaml")):
        assert "assume_bunit" not in OmegaConf.load(preset), preset.name
    assert load_config(["data=mirabest"]).data.assume_bunit == DataConfig.assume_bunit


def test_unit_parser_case_variants():
    assert parse_brightness_unit("JY/BEAM") == parse_brightness_unit("Jy/beam") == 1.0
    assert parse_brightness_unit("mJY/BEAM") == pytest.approx(1e-3)
    assert parse_brightness_unit("Jy beam-1") == 1.0
    with pytest.raises(ValueError, match="dimensionless"):
        parse_brightness_unit("")


# ------------------------------------------------------------------- catalogue text input

@pytest.mark.parametrize("encode", [
    pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode(), id="utf8-bom"),
    pytest.param(lambda text: text.encode("latin-1"), id="latin-1"),
    pytest.param(lambda text: text.encode("utf-16"), id="utf-16"),
    pytest.param(lambda text: text.replace("\n", "\r\n").encode(), id="crlf"),
    pytest.param(lambda text: text.replace("\n", "\r").encode("latin-1"), id="cr-latin-1"),
    pytest.param(lambda text: gzip.compress(text.encode()), id="csv.gz"),
])
def test_catalogue_encodings_and_line_endings(mb, encode, request):
    """A spreadsheet's export reads like plain UTF-8 (before: a byte-order mark became
    part of the first column's name, Latin-1, UTF-16 and .csv.gz did not read)."""
    lines = mb["catalog"].read_text().splitlines()
    lines = [lines[0] + ",note"] + [line + ",café" for line in lines[1:]]
    if request.node.callspec.id == "csv.gz":
        mb["catalog"] = mb["catalog"].with_name("catalog.csv.gz")
    mb["catalog"].write_bytes(encode("\n".join(lines) + "\n"))
    source = CatalogSource(cfg(mb).data)
    assert list(source.table["file"]) == ["mb000.fits", "mb001.fits"]
    assert source.table.colnames[0] == "file" and source.table["note"][0] == "café"


@pytest.mark.parametrize("text, says", [
    ("", "the file is empty"),
    ("file,fr_class,ra_deg,dec_deg,las_arcsec\n", "the catalogue has no rows"),
])
def test_empty_catalogue_is_one_line(mb, tmp_path, capsys, text, says):
    mb["catalog"].write_text(text)
    assert main(["prepare", "data=mirabest", f"data.fields_dir={mb['root']}",
                 f"data.catalog={mb['catalog']}", "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(mb["catalog"]) in err[0] and says in err[0]
    assert not (tmp_path / "x.h5").exists()


# ------------------------------------------------------- evaluation: comparable sets only

def reference(path, classes, unit):
    """A 16 x 16 prepared file (blob set) relabelled with ``classes`` and ``unit``."""
    synth.write_blob_set(path)
    with h5py.File(path, "r+") as f:
        f.attrs["classes"] = json.dumps(classes)
        f.attrs["image_unit"] = unit
    return path


def samples(root, classes, **meta):
    """Four samples.h5 images of a tiny release of ``classes``, one per class in turn."""
    release = load_release(tiny_release(root / "rel", classes, **meta))
    labels = [classes[k % len(classes)] for k in range(4)]
    result = generate(release, 4, label=labels, steps=2)
    return save_samples(root / "samples", release, result)["samples.h5"].parent


@pytest.fixture(scope="module")
def mb_ref(tmp_path_factory):
    return reference(tmp_path_factory.mktemp("ref") / "mirabest.h5", MB_CLASSES, "Jy/beam")


@pytest.fixture(scope="module")
def first_samples(tmp_path_factory):
    return samples(tmp_path_factory.mktemp("first"), FIRST_CLASSES)


def test_evaluate_refuses_other_classes_and_units(mb_ref, first_samples, tmp_path, capsys):
    """The issue's case: samples of a FIRST model (arbitrary units, Compact = index 2)
    against MiraBest (Jy/beam, index 2 = hybrid) was scored with exit 0."""
    out = tmp_path / "report"
    assert main(["evaluate", "--reference", str(mb_ref), "--samples", str(first_samples),
                 "--out", str(out), "--no-sourcefinder"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be compared with" in err[0]
    assert f"samples classes {FIRST_CLASSES} differ" in err[0]
    assert "images are in arbitrary units" in err[0] and "--allow-mismatch" in err[0]
    assert not out.exists()


def test_evaluate_refuses_other_pixel_scale_before_sampling(mb_ref, tmp_path):
    real, _ = reference_set(mb_ref, "test")
    wide = tiny_release(tmp_path / "wide", MB_CLASSES, image_unit="Jy/beam",
                        pixel_scale_arcsec=3.6)
    with pytest.raises(ValueError, match=r'model pixel scale 3.6" differs from .*1.8"'):
        Compared(model=wide, n=4).image_set(mb_ref, real, tmp_path / "work")
    assert not (tmp_path / "work").exists()  # nothing sampled or exported
    same = tiny_release(tmp_path / "same", MB_CLASSES, image_unit="Jy/beam")
    fake = Compared(model=same, n=4, spec=SamplerSpec(steps=2)).image_set(
        mb_ref, real, tmp_path / "work")
    assert len(fake.images) == 4


def test_allow_mismatch_maps_classes_by_name(mb_ref, first_samples, tmp_path):
    real, _ = reference_set(mb_ref, "test")
    with pytest.raises(ValueError, match="samples classes"):
        Compared(samples=first_samples).image_set(mb_ref, real, tmp_path)
    fake = Compared(samples=first_samples, allow_mismatch=True).image_set(mb_ref, real,
                                                                          tmp_path)
    # FRI, FRII, Compact, Bent -> FRI (0), FRII (1), none, none: never scored as hybrid
    assert fake.labels.tolist() == [0, 1, -1, -1]
