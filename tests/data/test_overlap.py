"""Sources two prepared sets share, split by split (radiodiff.data.overlap)."""

import numpy as np
import pytest

from radiodiff.data.overlap import shared_counts, source_pairs


def _write(path, ra, dec, splits, flags=None):
    from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, write_prepared
    n = len(ra)
    images = np.zeros((n, 1, 8, 8), np.float32)
    cols = {c: np.full(n, 1.0) for c in FLOAT_COLUMNS}
    cols.update(ra=np.asarray(ra, float), dec=np.asarray(dec, float),
                label=np.zeros(n, np.int16), split=np.array(splits, dtype=object),
                source_id=np.array([f"s{i}" for i in range(n)], dtype=object),
                flags=np.asarray(flags if flags is not None else np.zeros(n), np.uint8),
                beam_arcsec=np.full((n, 2), 5.4))
    return write_prepared(path, images, cols, {"name": path.stem, "classes": ["x"],
                                               "data_sha256": data_sha256(images, cols)})


def test_every_pair_within_the_radius():
    arcsec = 1 / 3600
    ra_a, dec_a = [10.0, 20.0, 30.0, np.nan], [0.0, 45.0, -30.0, 0.0]
    # b[0] has no position; b[1] is 5" from a[0]; b[2] 40" from a[1]; b[3] and b[4] are both
    # within 2" of a[2]
    ra_b = [np.nan, 10.0, 20.0, 30.0, 30.0 + 2 * arcsec / np.cos(np.radians(30))]
    dec_b = [0.0, 5 * arcsec, 45.0 + 40 * arcsec, -30.0, -30.0]

    def pairs(radius):
        ia, ib = source_pairs(ra_a, dec_a, ra_b, dec_b, radius)
        return sorted(zip(ia.tolist(), ib.tolist()))
    assert pairs(30) == [(0, 1), (2, 3), (2, 4)]
    assert pairs(60) == [(0, 1), (1, 2), (2, 3), (2, 4)]
    assert pairs(1) == [(2, 3)]
    assert source_pairs(ra_a, dec_a, [], [], 30)[0].size == 0
    with pytest.raises(ValueError, match="radius_arcsec"):
        source_pairs(ra_a, dec_a, ra_b, dec_b, 0)


def test_counts_split_by_split(tmp_path):
    arcsec = 1 / 3600
    a = _write(tmp_path / "a.h5", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0] * 6,
               ["train", "train", "valid", "test", "test", "test"], flags=[0, 0, 0, 0, 0, 1])
    # a's test source at 4 deg is in b twice (train and valid); a's flagged row at 6 deg and
    # b's flagged row at 2 deg are left out
    b = _write(tmp_path / "b.h5", [1.0, 3.0, 4.0, 4.0 + 3 * arcsec, 50.0, 6.0, 2.0],
               [0.0] * 7, ["test", "train", "train", "valid", "valid", "train", "train"],
               flags=[0, 0, 0, 0, 0, 0, 1])
    counts = shared_counts(a, b)
    assert list(counts) == ["train", "valid", "test"]
    assert list(counts["train"]) == ["rows", "shared", "in train", "in valid", "in test"]
    assert counts["train"] == {"rows": 2, "shared": 1, "in train": 0, "in valid": 0,
                               "in test": 1}
    assert counts["valid"] == {"rows": 1, "shared": 1, "in train": 1, "in valid": 0,
                               "in test": 0}
    assert counts["test"] == {"rows": 2, "shared": 1, "in train": 1, "in valid": 1,
                              "in test": 0}
    back = shared_counts(b, a)
    assert back["train"]["rows"] == 3 and back["train"]["shared"] == 2
    assert back["valid"] == {"rows": 2, "shared": 1, "in train": 0, "in valid": 0,
                             "in test": 1}


def test_the_bench_script_prints_both_directions(tmp_path, capsys):
    import importlib.util
    from pathlib import Path
    a = _write(tmp_path / "a.h5", [1.0, 2.0], [0.0, 0.0], ["train", "test"])
    b = _write(tmp_path / "b.h5", [2.0], [0.0], ["train"])
    path = Path(__file__).resolve().parents[2] / "bench" / "source_overlap.py"
    spec = importlib.util.spec_from_file_location("source_overlap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    a_to_b, b_to_a = out.strip().split("\n\n")
    assert a_to_b.splitlines()[0].startswith("| a.h5 split | rows | within 30″ of b.h5 |")
    assert "| train | 1 | 0 | 0 |" in a_to_b and "| test | 1 | 1 | 1 |" in a_to_b
    assert a_to_b.index("| train |") < a_to_b.index("| test |")
    assert "| train | 1 | 1 | 0 | 1 |" in b_to_a  # b's one source is a's test source
    # a set without positions, or no file at all: one line naming it, exit code 2
    blind = _write(tmp_path / "blind.h5", [np.nan, np.nan], [np.nan, np.nan], ["train", "test"])
    for bad in (blind, tmp_path / "missing.h5"):
        capsys.readouterr()
        assert mod.main([str(a), str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and bad.name in err
    with pytest.raises(ValueError, match="no clean row has a sky position"):
        shared_counts(a, blind)
