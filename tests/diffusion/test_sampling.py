"""Samplers driven by the exact denoiser of Gaussian data reproduce that Gaussian.

Solvers take the state x already at sigmas[0] (the k-diffusion convention);
:func:`solve` below forms it from unit noise by the one rule, ``start_state``."""

import dataclasses

import numpy as np
import pytest
import torch

from radiodiff.diffusion.sampling import SAMPLERS as REGISTRY
from radiodiff.diffusion.sampling import (CountingDenoiser, dpmpp_2m_sample, euler_sample,
                                          heun_sample, karras_sigmas, seeded_noise,
                                          start_state, stochastic_sample)
from radiodiff.seeds import churn_generator

MU, S = 0.3, 0.2          # per-pixel data distribution N(MU, S^2)
SIGMA_MAX = 80.0
SAMPLERS = {"euler": euler_sample, "heun": heun_sample, "dpmpp_2m": dpmpp_2m_sample,
            "stochastic": stochastic_sample}


def gaussian_denoiser(x, sigma, cond=None):
    """Exact D(x; sigma) = E[x0 | x] for x0 ~ N(MU, S^2) per pixel."""
    s2 = sigma.to(x.dtype).reshape(-1, 1, 1, 1) ** 2
    return (S ** 2 * x + s2 * MU) / (S ** 2 + s2)


def solve(solver, D, noise, sigmas, *args, **kwargs):
    """``solver`` from ``sigmas[0] * noise`` (float64), the network called in noise's dtype."""
    x = start_state(noise, float(sigmas[0]), dtype=noise.dtype)
    return solver(D, x, sigmas, *args, dtype=noise.dtype, **kwargs)


def exact_ode_solution(noise):
    """Probability-flow ODE solved in closed form from x(sigma_max) = sigma_max * noise."""
    return MU + (SIGMA_MAX * noise - MU) * S / (S ** 2 + SIGMA_MAX ** 2) ** 0.5


@pytest.fixture(scope="module")
def noise():
    return torch.randn(4096, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def test_karras_sigmas():
    s = karras_sigmas(18, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    assert s.dtype == torch.float64 and s.shape == (19,)
    assert s[0].item() == pytest.approx(80.0, rel=1e-12)
    assert s[-2].item() == pytest.approx(0.002, rel=1e-12)
    assert s[-1].item() == 0.0
    assert (s[1:] < s[:-1]).all()
    one = karras_sigmas(1)
    assert one.tolist() == pytest.approx([80.0, 0.0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n"), (dict(n=5, sigma_min=0.0), "sigma_min"),
    (dict(n=5, sigma_min=2.0, sigma_max=1.0), "sigma_min"), (dict(n=5, rho=0.0), "rho"),
])
def test_karras_sigmas_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        karras_sigmas(**kwargs)


@pytest.mark.parametrize("name, steps, std_tol", [
    ("heun", 25, 0.05), ("euler", 50, 0.08), ("dpmpp_2m", 10, 0.15), ("dpmpp_2m", 25, 0.05),
])
def test_sampler_reproduces_gaussian(noise, name, steps, std_tol):
    x = solve(SAMPLERS[name], gaussian_denoiser, noise, karras_sigmas(steps))
    assert x.shape == noise.shape and x.dtype == noise.dtype
    assert x.mean().item() == pytest.approx(MU, abs=0.005)
    assert x.std().item() == pytest.approx(S, rel=std_tol)


@pytest.mark.parametrize("name, lo, hi", [
    ("euler", 1.7, 2.3), ("heun", 3.5, 6.0), ("dpmpp_2m", 3.5, 6.0),
])
def test_convergence_order(noise, name, lo, hi):
    # Error against the closed-form ODE solution shrinks ~2x (1st order) or ~4x (2nd
    # order) when the number of steps doubles.
    z = noise[:256].double()
    errors = [(solve(SAMPLERS[name], gaussian_denoiser, z, karras_sigmas(n))
               - exact_ode_solution(z))
              .abs().max().item() for n in (25, 50)]
    assert lo < errors[0] / errors[1] < hi


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("name, nfe", [
    ("euler", lambda n: n), ("heun", lambda n: 2 * n - 1), ("dpmpp_2m", lambda n: n),
    ("stochastic", lambda n: 2 * n - 1),
])
def test_evaluation_counts_and_single_step(noise, name, nfe, steps):
    counted = CountingDenoiser(gaussian_denoiser)
    x = solve(SAMPLERS[name], counted, noise[:8], karras_sigmas(steps))
    assert counted.nfe == nfe(steps)
    assert torch.isfinite(x).all()
    if steps == 1:  # one step to sigma = 0 returns D(sigma_max * noise; sigma_max)
        sigma = torch.full((8,), SIGMA_MAX)
        torch.testing.assert_close(x, gaussian_denoiser(SIGMA_MAX * noise[:8], sigma))


def test_denoiser_sees_noise_dtype_batch_sigma_and_cond():
    calls = []

    def spy(x, sigma, cond=None):
        calls.append((x.dtype, sigma.dtype, tuple(sigma.shape), cond))
        return gaussian_denoiser(x, sigma)

    z = torch.randn(3, 1, 2, 2)
    solve(heun_sample, spy, z, karras_sigmas(3), cond="label")
    assert set(calls) == {(torch.float32, torch.float32, (3,), "label")}


def test_stochastic_churn(noise):
    sigmas = karras_sigmas(40)
    plain = solve(stochastic_sample, gaussian_denoiser, noise, sigmas, S_churn=0.0)
    assert torch.equal(plain, solve(heun_sample, gaussian_denoiser, noise, sigmas))
    churned = [solve(stochastic_sample, gaussian_denoiser, noise, sigmas, S_churn=5.0,
                     generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(churned[0], churned[1])
    assert (churned[0] - plain).abs().mean().item() > 0.01
    assert churned[0].mean().item() == pytest.approx(MU, abs=0.005)
    assert churned[0].std().item() == pytest.approx(S, rel=0.05)
    with pytest.raises(ValueError, match="S_churn"):
        solve(stochastic_sample, gaussian_denoiser, noise, sigmas, S_churn=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs on GPU "
                    "machines: the churn generator is a CPU one)")
def test_churn_on_a_gpu_draws_from_the_seeded_cpu_generator(noise):
    from radiodiff.seeds import churn_generator
    sigmas = karras_sigmas(10)
    cpu = solve(stochastic_sample, gaussian_denoiser, noise, sigmas, S_churn=5.0,
                generator=churn_generator(3))
    gpu = solve(stochastic_sample, gaussian_denoiser, noise.cuda(), sigmas, S_churn=5.0,
                generator=churn_generator(3))
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)  # the same churn noise on either device


def test_same_seed_same_sample_whatever_the_batch():
    seeds, shape, sigmas = list(range(100, 108)), (1, 4, 4), karras_sigmas(6)
    whole = seeded_noise(seeds, shape)
    assert whole.shape == (8, 1, 4, 4) and whole.dtype == torch.float32
    parts = torch.cat([seeded_noise(seeds[:3], shape), seeded_noise(seeds[3:], shape)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole[0], whole[1])
    a = solve(heun_sample, gaussian_denoiser, whole, sigmas)
    b = torch.cat([solve(heun_sample, gaussian_denoiser, seeded_noise(seeds[:3], shape), sigmas),
                   solve(heun_sample, gaussian_denoiser, seeded_noise(seeds[3:], shape), sigmas)])
    assert torch.equal(a, b)
    assert seeded_noise([], shape).shape == (0, 1, 4, 4)


@pytest.mark.parametrize("sigmas, match", [
    (torch.tensor([80.0]), "at least 2"), (torch.tensor([1.0, 2.0, 0.0]), "non-increasing"),
    (torch.tensor([1.0, 0.0, 0.0]), "non-increasing"),
])
def test_bad_schedule(sigmas, match):
    with pytest.raises(ValueError, match=match):
        heun_sample(gaussian_denoiser, torch.zeros(1, 1, 2, 2), sigmas)


def test_the_nfe_rule_matches_the_counted_evaluations():
    from radiodiff.diffusion.sampling import SAMPLERS as REGISTRY, sampler_nfe
    noise = torch.randn(2, 1, 4, 4)
    for name, solver in REGISTRY.items():
        counted = CountingDenoiser(lambda x, s, c=None: x * 0)
        solve(solver, counted, noise, karras_sigmas(5))
        assert counted.nfe == sampler_nfe(name, 5), name
    assert sampler_nfe("heun", 5, guidance=2.0) == 2 * 9
    with pytest.raises(ValueError, match="valid samplers"):
        sampler_nfe("ddim", 5)


# ------------------------------------------------------------------ seeds -> generators

def _draw(g):
    return torch.randn(6, generator=g)


def test_churn_generator_is_the_first_state_word_of_seed_and_1():
    for seed in (0, 7, 2**31 + 1):
        first = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
        assert torch.equal(_draw(churn_generator(seed)),
                           _draw(torch.Generator().manual_seed(first)))
    assert not torch.equal(_draw(churn_generator(0)), _draw(churn_generator(1)))


def test_sampler_spec_defaults_config_and_validation():
    from omegaconf import OmegaConf

    from radiodiff.config import SamplerConfig, load_config
    from radiodiff.diffusion.sampling import SamplerSpec, sampler_nfe
    spec = SamplerSpec()
    assert spec == SamplerSpec.from_config(SamplerConfig())
    assert spec == SamplerSpec.from_config(load_config([]).sampler)  # conf/sampler/heun.yaml
    other = SamplerSpec.from_config(OmegaConf.create(
        {**OmegaConf.to_container(OmegaConf.structured(SamplerConfig)), "steps": 7}))
    assert other.steps == 7 and isinstance(other.sigma_max, float)
    assert SamplerSpec.build(spec, sampler="euler", steps=None).name == "euler"
    assert spec.nfe == sampler_nfe("heun", 25) and len(spec.sigmas()) == spec.steps + 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.steps = 3
    for kw, match in ((dict(name="ddim"), "unknown sampler 'ddim'; valid samplers: euler"),
                      (dict(steps=0), "steps must be an integer >= 1, got 0"),
                      (dict(sigma_min=20.0), "need 0 < sigma_min <= sigma_max"),
                      (dict(rho=0.0), "rho must be > 0"),
                      (dict(S_churn=-1.0), "S_churn must be a finite number >= 0"),
                      (dict(S_churn=5.0), "S_churn=5.0 needs the stochastic sampler"),
                      (dict(rho=0.001), "rho=0.001 is too small"),  # overflows
                      (dict(rho=0.2), "rho=0.2 is too small"),  # sigma_min rounds to 0
                      (dict(guidance=float("nan")), "guidance must be a finite number >= 0")):
        with pytest.raises(ValueError, match=match):
            SamplerSpec(**kw)
    with pytest.raises(TypeError, match="unknown sampler option"):
        SamplerSpec.build(sigma=1.0)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_solver_has_one_signature_and_reports_each_step(name):
    """fn(D, x, sigmas, cond=None, *, dtype=None, generator=None, callback=None, **opts)."""
    import inspect

    params = inspect.signature(REGISTRY[name]).parameters
    assert list(params)[:4] == ["D", "x", "sigmas", "cond"]
    assert (params["dtype"].kind is params["generator"].kind is params["callback"].kind
            is inspect.Parameter.KEYWORD_ONLY)
    seen = []
    sigmas = karras_sigmas(4)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = solve(SAMPLERS[name], gaussian_denoiser, noise, sigmas, None, generator=None,
                callback=lambda info: seen.append((info["i"], info["sigma"])))
    assert [i for i, _ in seen] == list(range(len(sigmas) - 1))
    assert torch.equal(out, solve(SAMPLERS[name], gaussian_denoiser, noise, sigmas))


# ------------------------------------------------- the state at sigmas[0] (k-diffusion)

# sha256 (first 16 hex digits) of each solver's float32 output on seeded_noise([3, 4],
# (1, 4, 4)) over karras_sigmas(5, 0.002, 10.0), recorded with the solvers of main at
# 9a93a40, which took unit noise and formed x = noise.double() * sigmas[0] themselves.
OLD_SOLVER_DIGESTS = {"dpmpp_2m": "9577fd274502eb3c", "euler": "334dcf350bb6fee4",
                      "heun": "5fd970d96c851680", "stochastic": "1dab46dc766185c7"}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_solvers_from_the_state_at_sigma_max_equal_the_old_noise_solvers(name):
    import hashlib

    noise, sigmas = seeded_noise([3, 4], (1, 4, 4)), karras_sigmas(5, 0.002, 10.0)
    kw = (dict(S_churn=3.0, generator=torch.Generator().manual_seed(2))
          if name == "stochastic" else {})
    x = noise.to(torch.float64) * float(sigmas[0])
    out = REGISTRY[name](gaussian_denoiser, x, sigmas, dtype=torch.float32, **kw)
    assert out.dtype == torch.float32
    assert hashlib.sha256(out.numpy().tobytes()).hexdigest()[:16] == OLD_SOLVER_DIGESTS[name]


def test_dtype_defaults_to_that_of_x_and_sets_the_network_calls():
    seen = []

    def spy(x, sigma, cond=None):
        seen.append((x.dtype, sigma.dtype))
        return gaussian_denoiser(x, sigma)

    x = torch.randn(2, 1, 2, 2, dtype=torch.float64) * 10
    assert heun_sample(spy, x, karras_sigmas(2, 0.002, 10.0)).dtype == torch.float64
    assert set(seen) == {(torch.float64, torch.float64)}
    seen.clear()
    assert heun_sample(spy, x, karras_sigmas(2, 0.002, 10.0),
                       dtype=torch.float32).dtype == torch.float32
    assert set(seen) == {(torch.float32, torch.float32)}


def test_start_state_is_one_rule_for_noise_and_for_a_clean_image():
    eps = seeded_noise([5, 6], (1, 4, 4))
    sigma = float(karras_sigmas(3, 0.002, 0.45)[0])
    # pure sampling: exactly eps * sigma in float64
    assert torch.equal(start_state(eps, sigma), eps.double() * sigma)
    # SDEdit: the standardised start x0 / sigma + eps rounded to the network dtype
    eps64 = seeded_noise([5, 6], (1, 4, 4), dtype=torch.float64)
    x0 = torch.linspace(0, 1, 32, dtype=torch.float64).reshape(2, 1, 4, 4)
    x = start_state(eps64, sigma, x0)
    assert x.dtype == torch.float64
    assert torch.equal(x, (x0 / sigma + eps64).float().double() * sigma)
    torch.testing.assert_close(x, x0 + sigma * eps64, rtol=0, atol=1e-6)
    assert not torch.equal(start_state(eps64, sigma, x0, dtype=torch.float64),
                           x)  # the rounding is the network dtype's
