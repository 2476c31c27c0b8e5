"""The faint-end refiner: a release with a refiner/ folder, generate() through both networks,
the pair checked as one on load, and the refinement recorded in the samples' provenance."""

import json
import shutil

import numpy as np
import pytest

from helpers.releases import tiny_release
from radiodiff.pipeline.generate import generate
from radiodiff.pipeline.refine import RefineSpec
from radiodiff.io.integrity import IntegrityError
from radiodiff.io.release_files import META_FILE, REFINER_DIR
from radiodiff.pipeline.release import attach_refiner, load_release

CLASSES = ["FRI", "FRII"]
STRETCH = {"stretch": "power", "param": 0.25, "lo": 0.0, "hi": 1.0}
PROJ = {"floor": 1 / 255, "halo_px": 1, "peak_one": True}
FAST = dict(sampler="dpmpp_2m", steps=3, batch_size=2)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    base = tiny_release(root / "base", CLASSES, busy=True, projection=PROJ)
    refiner = tiny_release(root / "refiner", CLASSES, busy=True, projection=PROJ,
                           intensity=STRETCH)
    return root, base, refiner


@pytest.fixture(scope="module")
def paired(parts):
    root, base, refiner = parts
    return load_release(attach_refiner(base, refiner, root / "paired", sigma=0.3, steps=2))


def test_attach_loads_the_pair(paired, parts):
    _, base, refiner = parts
    assert paired.refine == RefineSpec(0.3, 2, "dpmpp_2m")
    assert paired.refiner.path == paired.path / REFINER_DIR
    assert paired.refiner.weights_sha256 == load_release(refiner).weights_sha256
    assert paired.weights_sha256 == load_release(base).weights_sha256
    assert load_release(base).refiner is None  # the inputs are left as they were


def test_generate_runs_both_networks(paired, parts):
    _, base, _ = parts
    r = generate(paired, 4, label="FRI", seed=5, **FAST)
    plain = generate(load_release(base), 4, label="FRI", seed=5, **FAST)
    off = generate(paired, 4, label="FRI", seed=5, refine=False, **FAST)
    assert (r.nfe == 3 + 2).all() and (off.nfe == 3).all()
    assert r.settings["refine"] == {"sigma": 0.3, "steps": 2, "sampler": "dpmpp_2m",
                                    "rho": 7.0}
    assert off.settings["refine"] is None
    np.testing.assert_array_equal(off.images, plain.images)  # refine=False: the base alone
    assert np.abs(r.images - plain.images).max() > 1e-3      # the refiner changed them
    assert np.allclose(r.images.max(axis=(1, 2, 3)), 1.0)    # projected like the data
    assert (r.images >= 0).all()


def test_refinement_is_batch_invariant(paired):
    a = generate(paired, 3, label="FRII", seed=11, **FAST)
    b = generate(paired, 1, label="FRII", seed=12, sampler="dpmpp_2m", steps=3,
                 batch_size=1)
    np.testing.assert_array_equal(a.images[1:2], b.images)


def test_small_sigma_keeps_the_base(parts, paired, tmp_path):
    """Noised to a tiny sigma, the refiner (c_skip -> 1) hands back about the base image;
    at sigma 0.3 it re-draws far more of it."""
    _, base, refiner = parts
    near = load_release(attach_refiner(base, refiner, tmp_path / "near", sigma=0.002,
                                       steps=1))
    plain = generate(load_release(base), 2, label="FRI", seed=3, **FAST).images
    d_near = np.abs(generate(near, 2, label="FRI", seed=3, **FAST).images - plain)
    d_far = np.abs(generate(paired, 2, label="FRI", seed=3, **FAST).images - plain)
    assert d_near.max() < 0.03          # 0.002 in x^0.25 space: ~4 y^3 * 0.002 in data
    assert d_far.mean() > 10 * d_near.mean()


def test_attach_in_place_keeps_what_is_beside_the_release(parts, tmp_path):
    _, base, refiner = parts
    own = tmp_path / "own"
    shutil.copytree(base, own)
    (own / "README.md").write_text("model card")
    (own / "bench").mkdir()
    (own / "bench" / "rows.json").write_text("{}")
    attach_refiner(own, refiner, own, overwrite=True)
    assert (own / "README.md").read_text() == "model card"
    assert (own / "bench" / "rows.json").read_text() == "{}"
    assert load_release(own).refiner is not None
    assert load_release(own).refine.sigma == RefineSpec.sigma
    attach_refiner(own, refiner, own, sigma=0.45, overwrite=True)  # re-attach replaces it
    assert load_release(own).refine.sigma == 0.45


def test_swapped_refiner_weights_are_refused(parts, tmp_path):
    root, base, _ = parts
    other = tiny_release(tmp_path / "other", CLASSES, busy=False, intensity=STRETCH)
    pair = attach_refiner(base, root / "refiner", tmp_path / "pair")
    shutil.rmtree(pair / REFINER_DIR)
    shutil.copytree(other, pair / REFINER_DIR)
    with pytest.raises(IntegrityError, match="is not the refiner"):
        load_release(pair)


def test_refiner_of_other_classes_is_refused(parts, tmp_path):
    _, base, _ = parts
    other = tiny_release(tmp_path / "other", ["A", "B", "C"], busy=True, intensity=STRETCH)
    with pytest.raises(ValueError, match="classes"):
        attach_refiner(base, other, tmp_path / "pair")
    assert not (tmp_path / "pair").exists()  # nothing half-written


def test_refine_sigma_is_checked_where_it_is_given():
    for sigma in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ValueError, match=r"sigma \(--sigma\) must be a finite number > 0"):
            RefineSpec(sigma=sigma)
    assert RefineSpec(sigma=0.002, steps=1).solver().steps == 1  # the one step that fits


@pytest.mark.parametrize("entry, match", [
    ({"sigma": -1, "steps": 2}, "sigma"),
    ({"sigma": 0.3, "steps": 0}, "steps"),
    ({"sigma": 0.3}, "steps"),
    ({"sigma": 0.3, "steps": 2, "rho": 0}, "rho"),
    ({"sigma": 0.001, "steps": 3}, r"sigma \(--sigma\) 0.001 is at or below"),
])
def test_bad_refine_entry_names_the_file(paired, tmp_path, entry, match):
    pair = tmp_path / "pair"
    shutil.copytree(paired.path, pair)
    meta = json.loads((pair / META_FILE).read_text())
    meta["refine"] = dict(entry, weights_sha256=meta["refine"]["weights_sha256"])
    (pair / META_FILE).write_text(json.dumps(meta))
    (pair / "SHA256SUMS").unlink()  # the edit itself is what is tested here
    with pytest.raises(ValueError, match=f"{pair}.*refine.*{match}"):
        load_release(pair)


def test_refiner_schedule_curvature_is_recorded_and_used(parts, paired, tmp_path):
    """rho of the refiner's Karras schedule: in meta, FITS and the images; a release
    written before rho was recorded refines with EDM's 7."""
    from radiodiff.io.samples import sample_images
    _, base, refiner = parts
    flat = load_release(attach_refiner(base, refiner, tmp_path / "flat", sigma=0.3, steps=3,
                                       rho=3))
    curved = load_release(attach_refiner(base, refiner, tmp_path / "curved", sigma=0.3,
                                         steps=3))
    assert flat.refine == RefineSpec(0.3, 3, "dpmpp_2m", 3.0) and curved.refine.rho == 7.0
    a = generate(flat, 2, label="FRI", seed=4, **FAST).images
    b = generate(paired, 2, label="FRI", seed=4, **FAST).images
    assert np.abs(a - generate(curved, 2, label="FRI", seed=4, **FAST).images).max() > 1e-4
    (_, h), = sample_images(flat, generate(flat, 1, label="FRI", **FAST))
    assert h["REFRHO"] == 3.0
    legacy = tmp_path / "legacy"
    shutil.copytree(paired.path, legacy)
    meta = json.loads((legacy / META_FILE).read_text())
    del meta["refine"]["rho"]
    (legacy / META_FILE).write_text(json.dumps(meta))
    (legacy / "SHA256SUMS").unlink()
    old = load_release(legacy)
    assert old.refine.rho == 7.0
    np.testing.assert_array_equal(generate(old, 2, label="FRI", seed=4, **FAST).images, b)


def test_refine_without_refiner_is_an_error(parts):
    _, base, _ = parts
    with pytest.raises(ValueError, match="no refiner"):
        generate(load_release(base), 1, refine=True, **FAST)
    with pytest.raises(ValueError, match="refine must be"):
        generate(load_release(base), 1, refine="yes", **FAST)


def test_fits_cards_record_the_refinement(paired, parts):
    from radiodiff.io.samples import sample_images
    _, base, _ = parts
    (_, h), = sample_images(paired, generate(paired, 1, label="FRI", **FAST))
    assert h["REFSIGMA"] == 0.3 and h["REFSTEPS"] == 2 and h["NFE"] == 5
    assert h["REFRHO"] == 7.0
    assert h["REFSHA"] == paired.refiner.weights_sha256
    plain = load_release(base)
    (_, h0), = sample_images(plain, generate(plain, 1, label="FRI", **FAST))
    assert h0["REFSIGMA"] == 0 and h0["REFSHA"] == ""


def test_cli_attach_and_sample_with_and_without_refiner(parts, tmp_path, capsys):
    from astropy.io import fits

    from radiodiff.cli import main
    _, base, refiner = parts
    pair = tmp_path / "pair"
    assert main(["attach-refiner", "--base", str(base), "--refiner", str(refiner),
                 "--out", str(pair), "--sigma", "0.5", "--steps", "2", "--rho", "3"]) == 0
    assert load_release(pair).refine == RefineSpec(0.5, 2, rho=3.0)
    for flag, nfe in (([], 5), (["--no-refine"], 3)):
        out = tmp_path / f"s{nfe}"
        assert main(["sample", "--model", str(pair), "--n", "1", "--class", "FRI",
                     "--sampler", "dpmpp_2m", "--steps", "3", "--out", str(out), *flag]) == 0
        assert fits.getheader(next(out.rglob("*.fits")))["NFE"] == nfe
    assert "with the faint-end refiner" in capsys.readouterr().out
    # the same folder again without --overwrite: one line, nothing touched
    assert main(["attach-refiner", "--base", str(base), "--refiner", str(refiner),
                 "--out", str(pair)]) != 0
    assert "give --overwrite" in capsys.readouterr().err
    assert load_release(pair).refine == RefineSpec(0.5, 2, rho=3.0)


def test_refine_is_the_truncated_schedule_from_the_encoded_base(paired):
    """refine_images = the solver over RefineSpec.solver() (Karras levels from sigma down)
    from y = s(x) + sigma eps, formed as refine formed it before the one loop: the
    standardised y / sigma + eps in float32, then scaled by sigmas[0] in float64."""
    import torch

    from radiodiff.diffusion.sampling import per_image, seeded_noise
    from radiodiff.pipeline.refine import refine_images
    from radiodiff.seeds import refine_seed

    base = generate(paired, 3, label="FRI", seed=5, refine=False, **FAST).images
    seeds, cond = np.arange(5, 8), {"label": torch.tensor([0, 0, 0])}
    out, nfe = refine_images(paired.refiner, base, seeds, cond, paired.refine, batch_size=2)
    r, solver = paired.refiner, paired.refine.solver()
    eps = seeded_noise([refine_seed(s) for s in seeds], base.shape[1:], dtype=torch.float64)
    y = r.intensity.encode(torch.from_numpy(base).double().clamp(0, 1))
    z = (y / paired.refine.sigma + eps).float()
    with torch.inference_mode():
        x = solver.solve(per_image(r.denoiser), z.double() * float(solver.sigmas()[0]), cond,
                         dtype=torch.float32)
    np.testing.assert_array_equal(out, r.intensity.decode(x.double()).float().numpy())
    assert nfe.shape == (3,) and (nfe == paired.refine.nfe).all()
