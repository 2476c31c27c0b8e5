"""The one sampling loop: start state, batches, conditions, counting, decoding."""

import numpy as np
import pytest
import torch

from radiodiff.diffusion.loop import NETWORK_DTYPE, sample_batches
from radiodiff.diffusion.sampling import SamplerSpec, per_image, seeded_noise, start_state
from radiodiff.seeds import churn_generator

SHAPE = (1, 4, 4)
SEEDS = list(range(20, 27))


def denoiser(x, sigma, cond=None):
    """A conditional toy D: shrinks x towards the label (+1 per class index)."""
    s2 = sigma.reshape(-1, 1, 1, 1) ** 2
    mu = 0.1 if cond is None else 0.1 + cond["label"].to(x.dtype).reshape(-1, 1, 1, 1)
    return (0.04 * x + s2 * mu) / (0.04 + s2)


def noise(lo, hi):
    return seeded_noise(SEEDS[lo:hi], SHAPE)


def decode(y):
    return 2 * y


COND = {"label": torch.tensor([0, 1, 2, 0, 1, 2, 0])}


def test_is_the_solver_from_the_start_state_decoded():
    spec = SamplerSpec(name="heun", steps=4, sigma_max=10.0)
    images, nfe = sample_batches(denoiser, spec, noise, 7, decode=decode, cond=COND,
                                 batch_size=3)
    x = start_state(seeded_noise(SEEDS, SHAPE), float(spec.sigmas()[0]))
    y = spec.solve(denoiser, x, COND, dtype=NETWORK_DTYPE)
    assert images.dtype == torch.float32 and images.shape == (7, *SHAPE)
    assert torch.equal(images, decode(y.double()).float())
    assert nfe.dtype == np.int64 and (nfe == spec.nfe).all()


@pytest.mark.parametrize("guidance", [0.0, 1.0, 2.0])
def test_batch_invariant_and_counts_network_evaluations(guidance):
    spec = SamplerSpec(name="dpmpp_2m", steps=5, sigma_max=10.0, guidance=guidance)
    D = per_image(denoiser)
    whole, nfe = sample_batches(D, spec, noise, 7, decode=decode, cond=COND, batch_size=7)
    parts, nfe_parts = sample_batches(D, spec, noise, 7, decode=decode, cond=COND,
                                      batch_size=2)
    assert torch.equal(whole, parts)
    assert (nfe == spec.nfe).all() and (nfe_parts == nfe).all()
    assert spec.nfe == 5 * (1 if guidance in (0, 1) else 2)
    # image 4 alone, with its own condition, is image 4 of the batch
    one, _ = sample_batches(D, spec, lambda lo, hi: noise(4, 5), 1, decode=decode,
                            cond={"label": COND["label"][4:5]})
    assert torch.equal(one[0], whole[4])


def test_sdedit_is_the_truncated_schedule_from_x0():
    """x0 given: the solver starts at x0 + sigma eps on the truncated schedule."""
    spec = SamplerSpec(name="dpmpp_2m", steps=3, sigma_max=0.45, rho=7.0)
    x0 = torch.linspace(0, 1, 7 * 16, dtype=torch.float64).reshape(7, *SHAPE)
    images, nfe = sample_batches(denoiser, spec, noise, 7, decode=decode, batch_size=4,
                                 x0=lambda lo, hi: x0[lo:hi])
    sigma = float(spec.sigmas()[0])
    x = (x0 / sigma + seeded_noise(SEEDS, SHAPE).double()).float().double() * sigma
    assert torch.equal(images, decode(spec.solve(denoiser, x, dtype=torch.float32)
                                      .double()).float())
    assert (nfe == 3).all()
    near = SamplerSpec(name="euler", steps=1, sigma_min=1e-6, sigma_max=1e-6)
    kept, _ = sample_batches(denoiser, near, noise, 7, decode=lambda y: y,
                             x0=lambda lo, hi: x0[lo:hi])
    torch.testing.assert_close(kept.double(), x0, rtol=0, atol=1e-5)  # c_skip -> 1


def test_churn_draws_each_image_with_its_own_generator():
    spec = SamplerSpec(name="stochastic", steps=4, sigma_max=10.0, S_churn=2.0)
    churn = lambda k: churn_generator(SEEDS[k])  # noqa: E731
    whole, _ = sample_batches(denoiser, spec, noise, 7, decode=decode, batch_size=7,
                              churn=churn)
    alone, _ = sample_batches(denoiser, spec, lambda lo, hi: noise(5, 6), 1, decode=decode,
                              churn=lambda k: churn_generator(SEEDS[5]))
    assert torch.equal(whole[5], alone[0])


def test_progress_counts_the_images_each_when_its_batch_is_done():
    batches, told = [], []

    def counting_decode(y):
        batches.append(len(y))
        return decode(y)

    def progress(it, total):
        for item in it:
            yield item
            told.append((item, total, len(batches)))  # item done: the next is asked for

    sample_batches(denoiser, SamplerSpec(name="euler", steps=2, sigma_max=10.0), noise, 7,
                   decode=counting_decode, batch_size=3, progress=progress)
    assert batches == [3, 3, 1]
    assert told == [(k, 7, 1 + k // 3) for k in range(7)]  # images 0-2 after batch 1, ...
