"""MiraBest FIRST fields from ../shared/data (skipped with a reason when absent)."""

import csv
import warnings

import numpy as np
import pytest

from radiodiff.config import load_config
from radiodiff.io.fits import read_fits_image
from radiodiff.data.prepared import read_prepared
from radiodiff.data.prepare import prepare

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def mirabest(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mb") / "mirabest.h5"
    cfg = load_config(["data=mirabest", f"paths.shared_data={shared_data}"])
    return out, prepare(cfg, out=out)


def test_every_field_is_prepared_or_counted(mirabest, shared_data):
    out, summary = mirabest
    with open(shared_data / "mirabest" / "catalog.csv") as f:
        rows = list(csv.DictReader(f))
    assert summary.n_in == len(rows) == 994
    assert summary.n_out + sum(summary.removed.values()) == 994
    assert set(summary.removed) <= {"nan", "blank", "low_snr", "edge_emission", "outside_field"}
    ps = read_prepared(out)
    assert len(ps) == summary.n_out and ps.images.shape[1:] == (1, 80, 80)
    assert ps.images.min() >= 0 and ps.images.max() <= 1
    assert ps.classes == ["FRI", "FRII", "hybrid"]
    by_file = {r["file"]: r for r in rows}
    for sid, label, las in zip(ps.columns["source_id"][:50], ps.columns["label"][:50],
                               ps.columns["las_arcsec"][:50]):
        assert ps.classes[label] == by_file[sid]["fr_class"]
        assert las == pytest.approx(float(by_file[sid]["las_arcsec"]))


def test_physical_columns(mirabest):
    ps = read_prepared(mirabest[0])
    c = ps.columns
    assert ps.attrs["image_unit"] == "Jy/beam"
    assert (c["snr"] >= 5).all()
    assert np.all((c["rms"] > 5e-5) & (c["rms"] < 1e-3))  # FIRST noise ~0.15 mJy/beam
    assert np.all(c["peak_flux"] > 0) and np.all(c["total_flux"] > 0)
    expected = np.maximum(1.5 * c["las_arcsec"], 144.0)  # at least 80 FIRST pixels
    assert np.allclose(c["cutout_size_arcsec"], expected, rtol=0.04)  # whole pixels
    # no cutout finer than the survey's 1.8" pixels; the large ones are down-sampled
    assert c["pixel_scale_arcsec"].min() >= 1.8 - 1e-9
    assert (c["pixel_scale_arcsec"] > 1.81).any()
    # peak_flux is the prepared image's own peak: image * peak_flux is Jy/beam exactly
    assert np.array_equal(c["scale"], c["peak_flux"])
    assert np.allclose(ps.images.reshape(len(ps.images), -1).max(1), 1.0)
    assert len(ps.files) == 995 and ps.files[0].endswith("catalog.csv")


def test_split_is_seeded(shared_data, tmp_path):
    cfgs = [load_config(["data=mirabest", f"paths.shared_data={shared_data}", "data.limit=30",
                         f"data.split.seed={s}"]) for s in (0, 0, 1)]
    splits = []
    for i, cfg in enumerate(cfgs):
        prepare(cfg, out=tmp_path / f"{i}.h5")
        splits.append(read_prepared(tmp_path / f"{i}.h5", images=False).columns["split"])
    assert (splits[0] == splits[1]).all() and not (splits[0] == splits[2]).all()


def test_raw_originals_read_cleanly_and_match_the_compressed_copies(shared_data, shared_raw):
    raw = sorted(shared_raw.glob("*.fits"))
    assert len(raw) == 8
    for path in raw:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no VerifyWarning escapes the reader
            original = read_fits_image(path)
        assert original.cards_fixed > 0  # the tab-laden commentary cards were repaired
        fz = read_fits_image(shared_data / "mirabest" / (path.name + ".fz"))
        ok = np.isfinite(original.data)
        # RICE quantisation (q=16) keeps values to a small fraction of the noise
        assert np.nanmax(np.abs(original.data - fz.data)[ok]) < 1e-4
        assert original.wcs.wcs.ctype[0] == fz.wcs.wcs.ctype[0]
