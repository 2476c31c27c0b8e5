"""The release's pipeline description: built once on load, the final projection stored once
in the base's meta.json (older releases: read from refiner/meta.json), narrowed per call."""

import json
import shutil

import numpy as np
import pytest

from helpers.releases import refined_pair
from radiodiff.config import ProjectionConfig
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.io.release_files import META_FILE, REFINER_DIR
from radiodiff.pipeline.generate import generate
from radiodiff.pipeline.refine import RefineSpec
from radiodiff.pipeline.release import load_release
from radiodiff.pipeline.spec import PipelineSpec

BASE = {"floor": 0.02, "halo_px": 0, "peak_one": True}   # the base network's projection
FINAL = {"floor": 1 / 255, "halo_px": 1, "peak_one": True}  # after the refiner
FAST = dict(sampler="dpmpp_2m", steps=3, batch_size=2)


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    return refined_pair(tmp_path_factory.mktemp("spec"), ["FRI", "FRII"], BASE, FINAL,
                        sigma=0.3, steps=2)


def _legacy(paired, folder):
    """The pair as releases before the final projection moved into meta refine."""
    shutil.copytree(paired.path, folder)
    meta = json.loads((folder / META_FILE).read_text())
    del meta["refine"]["projection"]
    (folder / META_FILE).write_text(json.dumps(meta))
    (folder / "SHA256SUMS").unlink()
    return load_release(folder)


def test_the_final_projection_is_stored_once_in_the_base_meta(paired):
    meta = json.loads((paired.path / META_FILE).read_text())
    assert meta["refine"]["projection"] == FINAL and meta["projection"] == BASE
    pipe = paired.pipeline
    assert pipe.projection == ProjectionConfig(**FINAL)
    assert pipe.base_projection == ProjectionConfig(**BASE)
    assert pipe.refine == RefineSpec(0.3, 2, "dpmpp_2m")
    assert pipe.refiner_sha256 == paired.refiner.weights_sha256
    assert pipe.sampler == paired.sampler and not pipe.restores_jy_per_beam


def test_the_base_meta_decides_not_the_refiner_meta(paired, tmp_path):
    pair = tmp_path / "pair"
    shutil.copytree(paired.path, pair)
    meta = json.loads((pair / REFINER_DIR / META_FILE).read_text())
    (pair / REFINER_DIR / META_FILE).write_text(json.dumps(dict(meta, projection=None)))
    (pair / REFINER_DIR / "SHA256SUMS").unlink()
    (pair / "SHA256SUMS").unlink()
    assert load_release(pair).pipeline.projection == ProjectionConfig(**FINAL)


def test_older_releases_keep_their_final_projection_in_the_refiner(paired, tmp_path):
    legacy = _legacy(paired, tmp_path / "legacy")
    assert "projection" not in legacy.meta["refine"]
    assert legacy.pipeline == paired.pipeline  # read from refiner/meta.json
    a = generate(legacy, 3, label="FRI", seed=2, **FAST)
    b = generate(paired, 3, label="FRI", seed=2, **FAST)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.raw, b.raw)
    meta = json.loads((legacy.path / REFINER_DIR / META_FILE).read_text())
    (legacy.path / REFINER_DIR / META_FILE).write_text(json.dumps(dict(meta, projection=None)))
    (legacy.path / REFINER_DIR / "SHA256SUMS").unlink()
    # a refiner without a projection of its own: the base's, as before
    assert load_release(legacy.path).pipeline.projection == ProjectionConfig(**BASE)


def test_for_call_narrows_the_pipeline(paired):
    pipe, spec = paired.pipeline, SamplerSpec(name="euler", steps=2)
    assert pipe.for_call(spec) == PipelineSpec(
        spec, pipe.base_projection, pipe.refine, pipe.refiner_sha256, pipe.projection)
    off = pipe.for_call(spec, refine=False)
    assert off.refine is None and off.projection == pipe.base_projection
    assert pipe.for_call(spec, project=False).projection is None
    islands = dict(FINAL, islands=dict(k_mean=3.1, k_std=0.3, ln_r_mean=-4.5, ln_r_std=1.2,
                                       r_max=0.2, beam_fwhm_px=3.0, factor=2))
    with_islands = PipelineSpec.from_meta({"projection": islands})
    assert with_islands.projection.islands is not None
    assert with_islands.for_call(spec, islands=False).projection == ProjectionConfig(**FINAL)
    alone = PipelineSpec.from_meta({})
    assert alone.for_call(spec, refine=None).refine is None
    with pytest.raises(ValueError, match="here: this release has no refiner"):
        alone.for_call(spec, refine=True, where="here")
    with pytest.raises(ValueError, match="refine must be True, False or None"):
        pipe.for_call(spec, refine="yes")


def test_generate_runs_the_narrowed_pipeline(paired):
    r = generate(paired, 2, label="FRI", seed=1, **FAST)
    off = generate(paired, 2, label="FRI", seed=1, refine=False, **FAST)
    assert r.settings["refine"] == paired.refine.to_dict() and off.settings["refine"] is None
    # refine off: the base projection (its floor 0.02 with no halo zeroes more pixels)
    assert (off.images == 0).mean() > (r.images == 0).mean()
    assert (r.nfe == 3 + 2).all() and (off.nfe == 3).all()


@pytest.mark.parametrize("entry, match", [
    ({"floor": 2.0, "halo_px": 1, "peak_one": True}, r"meta\.json refine: projection floor"),
    ({"floor": 0.01}, r"meta\.json refine: projection must have"),
])
def test_a_bad_final_projection_names_the_refine_entry(paired, tmp_path, entry, match):
    pair = tmp_path / "pair"
    shutil.copytree(paired.path, pair)
    meta = json.loads((pair / META_FILE).read_text())
    meta["refine"]["projection"] = entry
    (pair / META_FILE).write_text(json.dumps(meta))
    (pair / "SHA256SUMS").unlink()
    with pytest.raises(ValueError, match=f"{pair}.*{match}"):
        load_release(pair)


def test_re_export_of_an_older_pair_writes_the_new_form(paired, tmp_path):
    """export_release over a release whose refiner/ stays carries meta refine over; an older
    entry gains the final projection it was read with (the refiner's own)."""
    from radiodiff.pipeline.release import export_release
    legacy = _legacy(paired, tmp_path / "legacy")
    meta = {k: v for k, v in legacy.meta.items() if k != "refine"}
    export_release(legacy.path, legacy.denoiser, legacy.config, meta, overwrite=True)
    again = load_release(legacy.path)
    assert again.meta["refine"]["projection"] == FINAL
    assert again.pipeline == paired.pipeline


def test_recommend_sampler_writes_an_older_pair_in_the_new_form(paired, tmp_path):
    from radiodiff.pipeline.release import recommend_sampler
    legacy = _legacy(paired, tmp_path / "legacy")
    spec = SamplerSpec(name="heun", steps=4)
    again = load_release(recommend_sampler(legacy.path, spec))
    assert again.meta["refine"]["projection"] == FINAL and again.sampler == spec
    assert again.pipeline == PipelineSpec(spec, *(getattr(paired.pipeline, f) for f in (
        "base_projection", "refine", "refiner_sha256", "projection", "restores_jy_per_beam")))


def test_churn_recorded_for_a_deterministic_solver_is_read_as_none(caplog):
    """meta.json written before churn on heun/dpmpp_2m/euler was refused: the solver
    ignored it, the release still loads (and says so); naming another solver over a
    churned base drops the churn."""
    from radiodiff.pipeline.spec import recommended_spec
    spec = recommended_spec({"sampler": {"name": "heun", "steps": 9, "S_churn": 0.5}}, "rel")
    assert spec == SamplerSpec(name="heun", steps=9) and "read as 0" in caplog.text
    churned = SamplerSpec(name="stochastic", steps=4, S_churn=5.0)
    assert SamplerSpec.build(churned, sampler="heun").S_churn == 0.0
    assert SamplerSpec.build(churned, steps=6).S_churn == 5.0
    with pytest.raises(ValueError, match="needs the stochastic sampler"):
        SamplerSpec.build(churned, sampler="heun", S_churn=1.0)
