"""run_pipeline: the steps of a release's pipeline in their order."""

import dataclasses

import numpy as np
import pytest
import torch

from helpers.releases import refined_pair
from radiodiff.data.projection import apply_projection
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.io.integrity import IntegrityError
from radiodiff.pipeline.refine import refine_images
from radiodiff.pipeline.run import run_pipeline

BASE = {"floor": 0.05, "halo_px": 0, "peak_one": True}
FINAL = {"floor": 1 / 255, "halo_px": 1, "peak_one": True,
         "islands": dict(k_mean=3.0, k_std=0.2, ln_r_mean=-3.0, ln_r_std=0.5, r_max=0.2,
                         beam_fwhm_px=2.0, factor=1)}
SEEDS, COND = np.arange(3, 6), {"label": torch.tensor([0, 1, 0])}
NO_FLUX = np.full(3, np.nan)


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    return refined_pair(tmp_path_factory.mktemp("run"), ["FRI", "FRII"], BASE, FINAL,
                        sigma=0.3, steps=2)


def test_base_then_refine_then_final_projection_with_islands(paired):
    spec = SamplerSpec(name="dpmpp_2m", steps=3)
    pipe = paired.pipeline.for_call(spec)
    drawn = run_pipeline(paired, pipe, SEEDS, COND, NO_FLUX, batch_size=2)
    base = run_pipeline(paired, paired.pipeline.for_call(spec, refine=False, project=False),
                        SEEDS, COND, NO_FLUX)
    refined, nfe = refine_images(paired.refiner,
                                 apply_projection(base.images, BASE, islands=False), SEEDS,
                                 COND, pipe.refine)
    np.testing.assert_array_equal(drawn.raw, refined)
    np.testing.assert_array_equal(drawn.images, apply_projection(refined, FINAL, SEEDS))
    assert (drawn.nfe == base.nfe + nfe).all() and drawn.physical is None
    calm = run_pipeline(paired, paired.pipeline.for_call(spec, islands=False), SEEDS, COND,
                        NO_FLUX)
    assert (drawn.images >= calm.images).all() and (drawn.images > calm.images).any()


def test_restores_only_where_the_pipeline_does_and_checks_finite(paired):
    pipe = paired.pipeline.for_call(SamplerSpec(name="euler", steps=2), refine=False)
    flux = np.array([0.5, 2.0, 1.0])
    plain = run_pipeline(paired, pipe, SEEDS, COND, flux)
    assert plain.physical is None  # arbitrary units
    jy = run_pipeline(paired, dataclasses.replace(pipe, restores_jy_per_beam=True), SEEDS,
                      COND, flux)
    np.testing.assert_array_equal(jy.physical, jy.images * flux.astype(np.float32)[:, None,
                                                                                   None, None])
    broken = dataclasses.replace(paired, denoiser=lambda x, s, c=None: x * np.nan)
    broken.denoiser.parameters = paired.denoiser.parameters
    with pytest.raises(IntegrityError, match="3 of 3 sampled images hold NaN"):
        run_pipeline(broken, pipe, SEEDS, COND, NO_FLUX)
