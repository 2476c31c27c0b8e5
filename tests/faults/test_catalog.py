"""Catalogue hygiene and prepare faults: duplicate rows, huge values, bad positions, absurd
LAS, corrupt fields, a full disk. Each fault is one line naming the file (and catalogue
row) and the problem, and never a partial or changed output file."""

import errno
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from helpers import synth
from radiodiff.config import load_config
from radiodiff.data import catalog as catalog_mod
from radiodiff.data import prepare as prepare_mod
from radiodiff.data.catalog import CatalogSource, find_duplicates
from radiodiff.data.prepare import PrepareError, prepare
from radiodiff.data.prepared import read_prepared
from radiodiff.io.fits import InputError, read_fits_image

SRC = Path(__file__).resolve().parents[2] / "src"
N = 5


@pytest.fixture(scope="module")
def mb_master(tmp_path_factory):
    return synth.write_mirabest_like(tmp_path_factory.mktemp("master") / "mb", n=N, seed=11,
                                     compressed=False)


@pytest.fixture()
def mb(mb_master, tmp_path):
    """Five MiraBest-like fields (plain FITS) and their catalog.csv, a fresh copy per test."""
    root = shutil.copytree(mb_master["root"], tmp_path / "mb")
    truth = [dict(t, path=root / t["path"].name) for t in mb_master["truth"]]
    return dict(root=root, catalog=root / "catalog.csv", truth=truth)


def cfg(fx, *extra):
    return load_config(["data=mirabest", f"data.fields_dir={fx['root']}",
                        f"data.catalog={fx['catalog']}", *extra])


def edit_catalog(fx, change):
    """Rewrite catalog.csv through ``change(table) -> table``."""
    table = Table.read(fx["catalog"], format="ascii.csv")
    change(table).write(fx["catalog"], format="ascii.csv", overwrite=True)


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# --- duplicates -------------------------------------------------------------------------

def add_duplicates(fx):
    """Row N: row 0 again (same name). Row N+1: row 1's source 2" away in another file."""
    near = fx["root"] / "near.fits"
    shutil.copy(fx["truth"][1]["path"], near)

    def change(t):
        t.add_row(list(t[0]))
        row = list(t[1])
        row[t.colnames.index("file")] = "near.fits"
        row[t.colnames.index("dec_deg")] = t[1]["dec_deg"] + 2.0 / 3600
        t.add_row(row)
        return t
    edit_catalog(fx, change)


def test_duplicate_and_near_duplicate_rows_give_one_image_each(mb, tmp_path):
    add_duplicates(mb)
    s = prepare(cfg(mb), out=tmp_path / "x.h5")
    assert s.n_in == N + 2 and s.n_out == N and s.removed == {"duplicate": 2}
    assert s.n_duplicates == 2 and s.duplicates_policy == "drop"
    assert f"row {N} (mb000.fits) = row 0 (mb000.fits): same name" in s.duplicates
    assert any(d.startswith(f"row {N + 1} (near.fits) = row 1 (mb001.fits): 2.00\" apart")
               for d in s.duplicates)
    text = s.format()
    assert "duplicate rows (dropped, data.duplicates=drop): 2" in text and "near.fits" in text
    ids = read_prepared(tmp_path / "x.h5").columns["source_id"].tolist()
    assert ids == [t["file"] for t in mb["truth"]]  # the first row of each source is kept


def test_kept_duplicates_share_the_split_and_error_names_them(mb, tmp_path):
    add_duplicates(mb)
    s = prepare(cfg(mb, "data.duplicates=keep", "data.split.fractions=[0.4,0.3,0.3]"),
                out=tmp_path / "x.h5")
    assert s.n_out == N + 2 and s.n_duplicates == 2 and "duplicate" not in s.removed
    c = read_prepared(tmp_path / "x.h5").columns
    split = dict(zip(range(len(c["split"])), c["split"]))
    assert split[N] == split[0] and split[N + 1] == split[1]  # no leak between splits
    with pytest.raises(PrepareError, match=r"catalog\.csv: 2 duplicate row\(s\) "
                                           r"\(data\.duplicates=error\): row 5 \(mb000\.fits\)"):
        prepare(cfg(mb, "data.duplicates=error"), out=tmp_path / "y.h5")
    assert not (tmp_path / "y.h5").exists()


def test_find_duplicates_groups_chains_and_ignores_bad_positions():
    names = ["a", "b", "c", "a", "d"]
    ra = np.array([10.0, 10.0, 10.0, 50.0, np.nan])
    dec = np.array([0.0, 4.0 / 3600, 8.0 / 3600, 0.0, 95.0])
    dups = find_duplicates(names, ra, dec, radius_arcsec=5.4)
    assert [(d.row, d.of_row) for d in dups] == [(1, 0), (2, 0), (3, 0)]
    assert dups[2].why == "same name"
    assert find_duplicates(names[:3], ra[:3], dec[:3], radius_arcsec=None) == []
    # blank (or masked) names are no name: rows far apart are not "the same source"
    far = np.array([0.0, 10.0, 20.0])
    assert find_duplicates(["", "", "x"], far, far, radius_arcsec=5.4) == []
    near = find_duplicates(["", "", "x"], far[[0, 0, 2]], far[[0, 0, 2]], 5.4)
    assert [(d.row, d.of_row) for d in near] == [(1, 0)] and near[0].why != "same name"


@pytest.mark.parametrize("unit, factor", [("Jy", 1.0), ("mJy", 1e-3), ("mJy/beam", 1e-3),
                                          ("uJy / beam", 1e-6)])
def test_catalogue_flux_units_per_beam_are_flux_densities(unit, factor):
    from radiodiff.data.catalog import _flux_to_jy
    assert _flux_to_jy(unit) == pytest.approx(factor)


@pytest.mark.parametrize("unit", ["arcsec", "mJy/arcsec2", "bogus"])
def test_a_catalogue_flux_unit_that_is_no_flux_is_one_line(unit):
    from radiodiff.data.catalog import CatalogError, _flux_to_jy
    with pytest.raises(CatalogError, match=r"^data\.catalog_flux_unit=.* is not a flux density"):
        _flux_to_jy(unit)


# --- huge values and non-finite noise ----------------------------------------------------

def test_huge_field_values_are_measured_in_float64(mb, tmp_path):
    victim = mb["truth"][2]["path"]
    before = prepare(cfg(mb), out=tmp_path / "a.h5")
    ref = read_prepared(tmp_path / "a.h5").columns
    with fits.open(victim) as h:
        data, header = h[0].data.astype(np.float64), h[0].header
    k = 1e38 / np.abs(data).max()  # peak 1e38 Jy/beam: float32 sums of squares overflow
    fits.PrimaryHDU((data * k).astype(np.float32), header).writeto(victim, overwrite=True)
    s = prepare(cfg(mb), out=tmp_path / "b.h5")
    assert s.n_out == before.n_out == N
    c = read_prepared(tmp_path / "b.h5").columns
    assert np.isfinite(c["rms"][2]) and c["rms"][2] == pytest.approx(ref["rms"][2] * k, rel=1e-3)
    assert c["snr"][2] == pytest.approx(ref["snr"][2], rel=1e-3)


def test_nonfinite_rms_is_a_cut_not_a_pass(mb, tmp_path, monkeypatch):
    real = catalog_mod.sigma_clipped_stats

    def overflowing(values, **kw):  # what float32 gave for a 1e38 field: rms = inf
        return (real(values, **kw)[:2] + (np.inf,)) if values.max() > 0.025 else real(
            values, **kw)
    peaks = [t["peak_jyb"] for t in mb["truth"]]
    hit = [i for i, p in enumerate(peaks) if p > 0.025]
    assert hit and len(hit) < N
    monkeypatch.setattr(catalog_mod, "sigma_clipped_stats", overflowing)
    s = prepare(cfg(mb), out=tmp_path / "x.h5")
    assert s.removed == {"nonfinite": len(hit)} and s.n_out == N - len(hit)
    assert any(f"mb{hit[0]:03d}.fits" in e and "rms inf is not a positive finite number" in e
               and f"row {hit[0]}" in e for e in s.errors)


def test_field_without_usable_noise_is_a_nonfinite_cut(mb, tmp_path):
    # All NaN but a 3x3 patch around the host: no noise can be measured (<= 10 pixels).
    victim = mb["truth"][0]["path"]
    with fits.open(victim) as h:
        data, header = h[0].data.copy(), h[0].header
    keep = np.full(data.shape, np.nan, np.float32)
    keep[148:151, 148:151] = data[148:151, 148:151]
    fits.PrimaryHDU(keep, header).writeto(victim, overwrite=True)
    s = prepare(cfg(mb, "data.cuts.nan=fill", "data.cuts.edge_max_frac=null"),
                out=tmp_path / "x.h5")
    assert s.removed == {"nonfinite": 1} and s.n_out == N - 1
    assert "mb000.fits: mb000.fits: rms nan" in s.errors[0]


# --- bad positions -------------------------------------------------------------------------

def bad_positions(fx):
    def change(t):
        t["dec_deg"][1] = 95.0
        t["ra_deg"] = t["ra_deg"].astype(float)
        t["ra_deg"][3] = np.nan
        return t
    edit_catalog(fx, change)


def test_out_of_range_positions_are_skipped_rows(mb, tmp_path):
    bad_positions(mb)
    s = prepare(cfg(mb), out=tmp_path / "x.h5")
    assert s.removed == {"bad_position": 2} and s.n_out == N - 2
    assert s.errors[0].startswith(f"{mb['catalog']}:row 1 (mb001.fits): no valid position")
    assert "Dec 95 outside [-90, 90]" in s.errors[0] and "[bad_position]" in s.errors[0]
    assert "row 3 (mb003.fits)" in s.errors[1] and "not finite" in s.errors[1]
    ids = read_prepared(tmp_path / "x.h5").columns["source_id"].tolist()
    assert ids == ["mb000.fits", "mb002.fits", "mb004.fits"]


@pytest.mark.slow
def test_out_of_range_position_with_on_error_error_is_one_line(mb, tmp_path):
    bad_positions(mb)
    out = tmp_path / "x.h5"
    with pytest.raises(PrepareError, match=r"catalog\.csv:row 1 \(mb001\.fits\): no valid "
                                           r"position .*Dec 95.*on_error=error: nothing written"):
        prepare(cfg(mb, "data.on_error=error"), out=out)
    assert not out.exists()
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "radiodiff.cli", "prepare", "data=mirabest",
                        f"data.fields_dir={mb['root']}", f"data.catalog={mb['catalog']}",
                        "data.on_error=error", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]  # the rest is progress
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("radiodiff prepare: error: ")
    assert "catalog.csv:row 1 (mb001.fits)" in lines[0] and "Dec 95" in lines[0]
    assert not out.exists()


# --- sizes ---------------------------------------------------------------------------------

def test_huge_las_is_a_row_error_not_a_memory_error(mb, tmp_path):
    def change(t):
        t["las_arcsec"] = t["las_arcsec"].astype(float)
        t["las_arcsec"][2] = 1e7
        return t
    edit_catalog(mb, change)
    s = prepare(cfg(mb, "data.cutout.outside=pad"), out=tmp_path / "x.h5")
    assert s.removed == {"too_large": 1} and s.n_out == N - 1
    assert "row 2 (mb002.fits)" in s.errors[0] and 'LAS 1e+07"' in s.errors[0]
    assert "64 x data.image_size = 5120 px" in s.errors[0]
    with pytest.raises(PrepareError, match=r"row 2 \(mb002\.fits\): LAS 1e\+07\".*on_error=stop"):
        prepare(cfg(mb, "data.cutout.outside=pad", "data.on_error=stop"), out=tmp_path / "y.h5")


def test_cutout_beyond_available_memory_is_a_row_error(mb, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_mod, "_available_memory", lambda: 2**20)  # 1 MiB
    extra = ("data.cutout.min_size_arcsec=400", "data.cutout.outside=pad")  # 222 px sides
    with pytest.raises(PrepareError, match=r"no source survived \(removed: \{'too_large': 5"):
        prepare(cfg(mb, *extra), out=tmp_path / "x.h5")
    with pytest.raises(PrepareError, match=r"row 0 \(mb000\.fits\): LAS .* needing 0\.0 GiB "
                                           r"with 0\.0 GiB of memory available"):
        prepare(cfg(mb, *extra, "data.on_error=stop"), out=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_any_unexpected_row_failure_obeys_on_error(mb, tmp_path, monkeypatch):
    real = prepare_mod.resize_image
    calls = []

    def flaky(image, n):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(image, n)
    monkeypatch.setattr(prepare_mod, "resize_image", flaky)
    s = prepare(cfg(mb), out=tmp_path / "x.h5")
    assert s.removed == {"processing": 1} and s.n_out == N - 1
    assert "RuntimeError: boom" in s.errors[0] and "mb001.fits" in s.errors[0]
    assert "[row 1, processing]" in s.errors[0]

    def broken(*a, **k):
        raise ValueError("bad WCS solution")
    monkeypatch.setattr(catalog_mod, "Cutout2D", broken)
    with pytest.raises(PrepareError, match=r"catalog\.csv:row \d \(mb00\d\.fits\): ValueError: "
                                           r"bad WCS solution \[row_error\]"):
        prepare(cfg(mb, "data.on_error=stop"), out=tmp_path / "y.h5")


# --- corrupt fields --------------------------------------------------------------------------

def _nan_only(path):
    with fits.open(path) as h:
        fits.PrimaryHDU(np.full_like(h[0].data, np.nan), h[0].header).writeto(path,
                                                                              overwrite=True)


def _overflow(path):
    with fits.open(path) as h:
        fits.PrimaryHDU(h[0].data.astype(np.float64) * 1e300, h[0].header).writeto(
            path, overwrite=True)


def _table_only(path):
    col = fits.Column(name="a", format="E", array=np.zeros(3, np.float32))
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([col])]).writeto(
        path, overwrite=True)


@pytest.mark.parametrize("corrupt, reason, message", [
    (_nan_only, "no_data", r"no finite pixel"),
    (_overflow, "overflow", r"overflow float32"),
    (_table_only, "no_image", r"no HDU holds a 2-D image"),
    (lambda p: p.write_bytes(p.read_bytes()[:20000]), "unreadable", "truncated"),
])
def test_corrupt_fields_are_one_line_naming_the_file(mb, tmp_path, corrupt, reason, message):
    victim = mb["truth"][4]["path"]
    corrupt(victim)
    with pytest.raises(InputError, match=f"{victim.name}: .*{message}"):
        read_fits_image(victim)
    s = prepare(cfg(mb), out=tmp_path / "x.h5")
    assert s.removed == {reason: 1} and s.n_out == N - 1
    assert victim.name in s.errors[0] and f"row 4, {reason}" in s.errors[0]


@pytest.mark.shared_data
def test_defects_made_from_the_raw_originals_name_the_file(shared_raw, tmp_path):
    raw = sorted(shared_raw.glob("*.fits"))
    assert len(raw) == 8
    for path in raw:  # the untouched originals read (their tab-laden cards are repaired)
        assert np.isfinite(read_fits_image(path).data).all()
    for corrupt, message in [(_nan_only, "no finite pixel"), (_overflow, "overflow float32"),
                             (_table_only, "no HDU holds a 2-D image"),
                             (lambda p: p.write_bytes(p.read_bytes()[:5000]), "truncated")]:
        victim = tmp_path / raw[0].name
        good = read_fits_image(raw[0])  # tab-laden commentary cards repaired
        fits.PrimaryHDU(good.data, good.header).writeto(victim, overwrite=True)
        corrupt(victim)
        with pytest.raises(InputError, match=f"{re.escape(victim.name)}: .*{message}"):
            read_fits_image(victim)


# --- full disk ---------------------------------------------------------------------------

def test_full_disk_during_the_write_keeps_the_previous_file(mb, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out = out_dir / "x.h5"
    prepare(cfg(mb), out=out)
    before = out.read_bytes()
    real = h5py.Group.create_dataset

    def full(self, name, *a, **k):
        if name == "images":
            real(self, name, *a, **k)  # part of the file is on disk when the disk fills
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, *a, **k)
    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    with pytest.raises(PrepareError, match=r"x\.h5: cannot write the prepared file "
                                           r"\((N|n)o space left on device\); nothing written"):
        prepare(cfg(mb), out=out)
    assert files(out_dir) == ["x.h5"] and out.read_bytes() == before


def test_too_little_free_space_fails_before_reading_inputs(mb, tmp_path, monkeypatch):
    class Usage:
        total, used, free = 10**9, 10**9 - 1000, 1000
    monkeypatch.setattr(prepare_mod.shutil, "disk_usage", lambda path: Usage)
    monkeypatch.setattr(CatalogSource, "__iter__", lambda self: pytest.fail("read inputs"))
    out = tmp_path / "new" / "x.h5"
    with pytest.raises(PrepareError, match=r"x\.h5: not enough free disk space .*0\.0 MiB "
                                           r"free, 0\.1 MiB needed for 5 images of 80x80"):
        prepare(cfg(mb), out=out)
    assert not out.parent.exists()
