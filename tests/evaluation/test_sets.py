"""Image sets: reference splits, class proportions, sampling class by class, the compared set."""

import numpy as np
import pytest

from helpers import synth

from radiodiff.evaluation.sets import (Compared, ImageSet, note_unequal_sizes, pixel_scales,
                                       proportional_labels, proportional_rows, reference_meta,
                                       reference_set, reference_splits, sample_classes)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("sets") / "set.h5")


def test_proportional_labels_keep_the_class_shares():
    labels = np.array([2, 0, 1, 0, 2, 2, 0, 1, 2, 2], np.int64)  # shares 3 : 2 : 5
    rows = proportional_rows(labels, 20)
    assert rows.dtype == np.int64 and np.array_equal(labels[rows], np.sort(labels).repeat(2))
    assert np.array_equal(proportional_labels(labels, 20), labels[rows])
    assert np.bincount(proportional_labels(labels, 10)).tolist() == [3, 2, 5]
    assert proportional_labels(labels, 4).tolist() == [0, 0, 2, 2]  # rows 0, 2, 5, 7 of the sorted
    assert np.array_equal(proportional_rows(labels, 10), np.argsort(labels, kind="stable"))
    for n in (1, 7, 23):  # the rule `radiodiff evaluate` and bench_quality always used
        idx = (np.arange(n) * len(labels)) // n
        assert np.array_equal(proportional_labels(labels, n), np.sort(labels)[idx])
        assert np.array_equal(proportional_rows(labels, n), np.argsort(labels, kind="stable")[idx])


def test_reference_splits_are_the_three_reference_sets(prepared):
    real, train, val, ps = reference_splits(prepared, "valid")
    for got, split in ((real, "valid"), (train, "train"), (val, "valid")):
        want, _ = reference_set(prepared, split)
        assert got.name == want.name and np.array_equal(got.images, want.images)
        assert np.array_equal(got.labels, want.labels)
    assert ps.classes == ["blob", "double"]
    assert reference_splits(prepared)[0].name == "real test"
    with pytest.raises(ValueError, match="no clean rows in split 'nope'"):
        reference_splits(prepared, "nope")


def test_pixel_scales_follow_the_cutout_rule_and_meta_names_the_unit(prepared):
    meta = {"pixel_scale_arcsec": 1.8, "cutout": {"k_las": 1.5, "min_size_arcsec": 144.0}}
    s = ImageSet(np.zeros((3, 1, 80, 80), np.float32), np.zeros(3), "s",
                 {"las_arcsec": np.array([40.0, 200.0, np.nan])})
    # 144" (the minimum) / 80, 300" / 80, and the file's median scale without a LAS
    assert pixel_scales(s, meta).tolist() == [1.8, 3.75, 1.8]
    assert pixel_scales(ImageSet(s.images, s.labels, "no las"), meta).tolist() == [1.8] * 3
    _, ps = reference_set(prepared, "test")
    meta = reference_meta(ps)
    assert meta["image_unit"] is None and meta["pixel_scale_arcsec"] == 1.8  # no unit: blobs


def test_sample_classes_runs_the_seeds_on_across_classes(monkeypatch):
    import types
    import radiodiff.pipeline.generate as gen
    calls = []

    def fake_generate(release, n, label=None, seed=0, **kw):
        calls.append((n, label, seed, kw))
        return types.SimpleNamespace(images=np.full((n, 1, 2, 2), seed, np.float32))

    monkeypatch.setattr(gen, "generate", fake_generate)
    release = types.SimpleNamespace(classes=["FRI", "FRII", "Compact"])
    out = sample_classes(release, [(0, 2), (1, 0), (2, 3)], 10, steps=4, batch_size=8)
    assert not calls  # lazy: one class at a time, as the caller consumes them
    got = [(label, res.images[:, 0, 0, 0].tolist()) for label, res in out]
    assert got == [(0, [10, 10]), (2, [12, 12, 12])]
    assert calls == [(2, "FRI", 10, {"steps": 4, "batch_size": 8}),
                     (3, "Compact", 12, {"steps": 4, "batch_size": 8})]  # count 0 skipped
    calls.clear()
    assert [label for label, _ in sample_classes(types.SimpleNamespace(classes=[]),
                                                  [(-1, 5)], 3)] == [-1]
    assert calls == [(5, None, 3, {})]  # -1: no class condition


def test_sample_classes_count_the_images_of_all_classes_as_one(monkeypatch):
    import io
    import types
    import radiodiff.pipeline.generate as gen
    from radiodiff.progress import progress_bar

    def fake_generate(release, n, label=None, seed=0, progress=None, **kw):
        list(progress(range(n), n))  # the loop over its images
        return types.SimpleNamespace(images=np.zeros((n, 1, 2, 2), np.float32))

    monkeypatch.setattr(gen, "generate", fake_generate)
    stream = io.StringIO()
    release = types.SimpleNamespace(classes=["FRI", "FRII", "Compact"])
    list(sample_classes(release, [(0, 2), (1, 0), (2, 3)],
                        progress=progress_bar("sampled", "images", stream=stream)))
    assert [line.split(" (")[0] for line in stream.getvalue().splitlines()] == [
        f"sampled {k}/5 images" for k in range(1, 6)]


def test_bad_image_sets(prepared):
    with pytest.raises(ValueError, match="NaN"):
        ImageSet(np.full((2, 1, 16, 16), np.nan, np.float32), np.zeros(2), "bad")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        ImageSet(np.zeros((2, 16, 16), np.float32), np.zeros(2), "bad")
    with pytest.raises(ValueError, match="no images"):
        ImageSet(np.zeros((0, 1, 16, 16), np.float32), np.zeros(0), "empty")
    with pytest.raises(ValueError, match="no clean rows in split 'nope'"):
        reference_set(prepared, "nope")
    assert reference_set(prepared, "valid")[0].split == "valid"


def test_compared_set_choices(prepared, tmp_path):
    real, _ = reference_set(prepared, "test")
    other = Compared(real_split="valid").image_set(prepared, real, tmp_path)
    assert other.name == "real valid" and other.split == "valid"
    with pytest.raises(ValueError, match="--n must be >= 1, got 0"):
        Compared(model="x", n=0).image_set(prepared, real, tmp_path)
    with pytest.raises(FileNotFoundError, match="no samples.h5"):
        Compared(samples=tmp_path / "none").image_set(prepared, real, tmp_path)
    assert Compared().spec is None  # the release's recommended sampler


def test_the_reference_is_the_data_the_model_was_trained_on(prepared, tmp_path, monkeypatch):
    import shutil

    from helpers.releases import tiny_release
    from radiodiff.data.prepared import read_prepared
    from radiodiff.evaluation.sets import find_reference, model_data
    sha = read_prepared(prepared, images=False).attrs["data_sha256"]
    record = model_data(tiny_release(tmp_path / "rel", ["blob", "double"], data_sha256=sha))
    assert (record.name, record.data_sha256, record.image_size) == ("first", sha, 16)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^release .*rel was trained on data=first "
                       rf"\(data_sha256 {sha[:12]}…\): data/first\.h5 is missing; prepare it "
                       r"\(radiodiff prepare data=first\) or give --reference"):
        find_reference(record)
    (tmp_path / "data").mkdir()
    shutil.copy(prepared, tmp_path / "data" / "blobs.h5")  # found by its hash
    assert find_reference(record)[0].name == "blobs.h5"
    shutil.copy(prepared, tmp_path / "data" / "first.h5")  # the named file comes first
    path, note = find_reference(record)
    assert path.name == "first.h5" and f"data_sha256 {sha[:12]}… matches" in note
    other = model_data(tiny_release(tmp_path / "rel2", ["blob", "double"]))  # other data
    with pytest.raises(FileNotFoundError, match=r"data/first\.h5 holds other data "
                       rf"\(data_sha256 {sha[:12]}…\); prepare it .* give --reference"):
        find_reference(other)


def test_a_reference_of_another_image_size_is_refused_before_sampling(prepared, tmp_path):
    from helpers.releases import tiny_release
    rel = tiny_release(tmp_path / "rel", ["blob", "double"], size=32)
    real, _ = reference_set(prepared, "test")
    with pytest.raises(ValueError, match=r"^--reference .*set\.h5: its images are 16x16 pixels "
                       r"but release .*rel makes 32x32; give --reference the prepared file"):
        Compared(model=str(rel), n=2).image_set(prepared, real, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing sampled or exported


def test_more_images_than_the_real_split_are_said_in_one_line_before_sampling(
        prepared, tmp_path, caplog, monkeypatch):
    real, _ = reference_set(prepared, "test")
    n_real = len(real.images)
    assert note_unequal_sizes(n_real, real) is None
    with caplog.at_level("WARNING", logger="radiodiff.evaluation.sets"):
        line = note_unequal_sizes(n_real + 5, real)
    assert caplog.messages == [line] and "\n" not in line
    assert line == (f"--n {n_real + 5} is more than the {n_real} images of the real test "
                    f"split: real-vs-fake compares {n_real} of each set, the ratios to a "
                    "real-vs-real floor (distances, Fréchet, morphology) subsets of at most "
                    f"{n_real // 2}; only the other metrics use all {n_real + 5}")
    monkeypatch.setattr(Compared, "_drawn", lambda self, *args: "drawn")  # no sampling
    for n, said in ((n_real + 1, 1), (n_real, 0)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="radiodiff.evaluation.sets"):
            assert Compared(model="x", n=n).image_set(prepared, real, tmp_path) == "drawn"
        assert len(caplog.messages) == said


def test_by_default_as_many_images_are_drawn_as_the_real_split_holds(
        prepared, tmp_path, monkeypatch):
    real, _ = reference_set(prepared, "test")
    drawn = []
    monkeypatch.setattr(Compared, "_drawn", lambda self, ref, source, rows, seed, *a:
                        drawn.append((len(rows), seed)))
    Compared(model="x", seed=7).image_set(prepared, real, tmp_path)
    assert drawn == [(len(real.images), 7)]
    assert Compared(model="x").sized(real).n == len(real.images)
    assert Compared(model="x", n=3).sized(real).n == 3
    # the TSTR seeds follow the compared set's: they need its n
    with pytest.raises(ValueError, match="needs n"):
        Compared(model="x").train_like(prepared, real, tmp_path)
    Compared(model="x", n=5, seed=7).train_like(prepared, real, tmp_path)
    assert drawn[-1] == (len(real.labels), 12)


def test_the_floor_row_never_draws_on_the_test_split_while_choosing(prepared):
    from radiodiff.evaluation.quality import floor_images
    real, train, val, _ = reference_splits(prepared, "valid")
    pick = floor_images(train, val, "valid", 5, seed=1)
    assert pick.split == "train" and len(pick.images) == 5
    assert np.array_equal(pick.images, floor_images(train, val, "valid", 5, seed=1).images)
    assert not np.array_equal(pick.images, floor_images(train, val, "valid", 5, seed=2).images)
    assert floor_images(train, val, "test", 5, seed=1).split == "valid"


def test_a_benchmark_header_names_the_data_by_hash_and_no_folder(prepared):
    from radiodiff.evaluation.quality import result_header
    head = result_header(prepared, "valid", 3)
    _, ps = reference_set(prepared, "valid")
    assert head["reference"] == prepared.name and str(prepared.parent) not in str(head)
    assert head["reference_sha256"] == ps.attrs["data_sha256"]
    assert len(head["reference_sha256"]) == 64
    assert (head["split"], head["seed"]) == ("valid", 3) and "git_commit" in head
