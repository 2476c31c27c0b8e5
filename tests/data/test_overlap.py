"""Sources two prepared sets share, split by split (radiodiff.data.overlap)."""

import numpy as np
import pytest

from radiodiff.data.overlap import shared_counts, shared_sources


def _write(path, ra, dec, splits):
    from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, write_prepared
    n = len(ra)
    images = np.zeros((n, 1, 8, 8), np.float32)
    cols = {c: np.full(n, 1.0) for c in FLOAT_COLUMNS}
    cols.update(ra=np.asarray(ra, float), dec=np.asarray(dec, float),
                label=np.zeros(n, np.int16), split=np.array(splits, dtype=object),
                source_id=np.array([f"s{i}" for i in range(n)], dtype=object),
                flags=np.zeros(n, np.uint8), beam_arcsec=np.full((n, 2), 5.4))
    return write_prepared(path, images, cols, {"name": path.stem, "classes": ["x"],
                                               "data_sha256": data_sha256(images, cols)})


def test_nearest_source_within_the_radius():
    arcsec = 1 / 3600
    ra_a, dec_a = [10.0, 20.0, 30.0, np.nan], [0.0, 45.0, -30.0, 0.0]
    # b: a's first source 5" away, the second 40" away (in declination), the third twice
    ra_b = [10.0, 20.0, 30.0, 30.0 + 2 * arcsec / np.cos(np.radians(30))]
    dec_b = [5 * arcsec, 45.0 + 40 * arcsec, -30.0, -30.0]
    assert shared_sources(ra_a, dec_a, ra_b, dec_b, 30).tolist() == [0, -1, 2, -1]
    assert shared_sources(ra_a, dec_a, ra_b, dec_b, 60).tolist() == [0, 1, 2, -1]
    assert shared_sources(ra_a, dec_a, [], [], 30).tolist() == [-1] * 4
    with pytest.raises(ValueError, match="radius_arcsec"):
        shared_sources(ra_a, dec_a, ra_b, dec_b, 0)


def test_counts_split_by_split(tmp_path):
    a = _write(tmp_path / "a.h5", [1.0, 2.0, 3.0, 4.0, 5.0], [0.0] * 5,
               ["train", "train", "valid", "test", "test"])
    b = _write(tmp_path / "b.h5", [1.0, 3.0, 4.0, 50.0], [0.0] * 4,
               ["test", "train", "train", "valid"])
    counts = shared_counts(a, b)
    assert counts["train"] == {"rows": 2, "shared": 1, "in test": 1, "in train": 0,
                               "in valid": 0}
    assert counts["valid"]["shared"] == 1 and counts["valid"]["in train"] == 1
    assert counts["test"] == {"rows": 2, "shared": 1, "in test": 0, "in train": 1,
                              "in valid": 0}
    back = shared_counts(b, a)
    assert back["train"]["shared"] == 2 and back["valid"]["shared"] == 0


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
    assert "| test | 1 | 1 | 1 |" in a_to_b and "| train | 1 | 0 | 0 |" in a_to_b
    assert "| train | 1 | 1 | 1 | 0 |" in b_to_a  # b's one source is a's test source
