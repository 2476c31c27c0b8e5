"""Noise schedules and probability-flow ODE / SDE solvers over ``D(x, sigma, cond)``.

Every solver is a pure function in the k-diffusion convention: it takes the state ``x``
already at ``sigmas[0]``, integrates the probability-flow ODE ``dx/dsigma = (x - D(x;
sigma)) / sigma`` (EDM Eq. 4 with sigma(t) = t) down the given schedule and returns ``x``
at ``sigma = sigmas[-1]`` (normally 0). Pure sampling starts from ``x = sigma_max * eps``;
SDEdit-style refinement (:mod:`radiodiff.pipeline.refine`) is the same solver over a
truncated schedule from ``x = x0 + sigma * eps``. :func:`start_state` is the one rule that
forms either start. The state and all sigma arithmetic are float64; the denoiser is called
with ``x`` cast to ``dtype`` (the network dtype, default the dtype of the ``x`` given) and
``sigma`` as an (N,) tensor of that dtype, and the result is returned in ``dtype``.

Seeds become ``torch.Generator`` objects by the rules of :mod:`radiodiff.seeds` and nowhere
else (:func:`~radiodiff.seeds.seed_generator`, built on the one hash of seed words,
:func:`~radiodiff.seeds.seed_state`): the initial noise of sample k (here,
:func:`seeded_noise`), the churn noise of the stochastic solver
(:func:`~radiodiff.seeds.churn_generator`), the drawn conditions, the training and
validation noise of step k, the data augmentation and shuffle order and the classifier's
shuffling all take their generators from its named streams.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from radiodiff.config import SamplerConfig
from radiodiff.seeds import seed_generator

__all__ = [
    "SAMPLERS", "sampler_nfe", "SamplerSpec",
    "CountingDenoiser", "karras_sigmas", "euler_sample", "heun_sample", "stochastic_sample",
    "dpmpp_2m_sample", "seeded_noise", "start_state", "per_image",
    "LIMITS", "check_seed_range", "check_sample_memory",
]

Denoiser = Callable[..., Tensor]


class CountingDenoiser:
    """Wraps ``D(x, sigma, cond)`` and counts its evaluations in ``nfe``.

    Parameters
    ----------
    denoiser : callable
        The denoiser to wrap.
    """

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.nfe = 0

    def __call__(self, x: Tensor, sigma: Any, cond: Any = None) -> Tensor:
        self.nfe += 1
        return self.denoiser(x, sigma, cond)


def per_image(denoiser: Denoiser) -> Denoiser:
    """``D`` evaluated one image at a time: the result of image k never depends on the batch.

    Matrix-product kernels round differently for different batch sizes (~1e-9 in float32),
    so batched network calls make sample k depend, in the last bits, on how many images
    were drawn with it. On a CPU the per-image loop costs ~8 % (unet_small, 80x80).
    """
    def D(x: Tensor, sigma: Any, cond: Any = None) -> Tensor:
        sig = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        return torch.cat([
            denoiser(x[i:i + 1], sig[i:i + 1],
                     None if cond is None else {k: v[i:i + 1] for k, v in cond.items()})
            for i in range(x.shape[0])])
    return D


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0) -> Tensor:
    """Noise levels for ``n`` sampling steps, decreasing, with a final 0.

    EDM Eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho for i < n, and sigma_n = 0.

    Parameters
    ----------
    n : int
        Number of steps (>= 1); with n = 1 the single step goes from sigma_max to 0.
    sigma_min, sigma_max : float
        Smallest and largest non-zero noise level, model-space units.
    rho : float
        Schedule curvature (7 in EDM).

    Returns
    -------
    torch.Tensor
        float64, shape (n + 1,).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n (number of steps) must be an integer >= 1, got {n}")
    if not 0 < sigma_min <= sigma_max < math.inf:
        raise ValueError("need 0 < sigma_min <= sigma_max < inf, got "
                         f"sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(0, 1, int(n), dtype=torch.float64)
    try:
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    except OverflowError:
        lo = hi = math.inf
    sigmas = (hi + ramp * (lo - hi)) ** rho
    ends = (sigma_max, sigma_min)[:int(n)]
    if not (torch.isfinite(sigmas).all() and sigmas.min() > 0
            and all(abs(float(s) / e - 1) < 1e-6 for s, e in zip(sigmas[[0, -1]], ends))):
        raise ValueError(f"rho={rho} is too small for sigma_min={sigma_min}, sigma_max="
                         f"{sigma_max}: the schedule's noise levels over- or underflow "
                         "float64 (EDM: rho 7)")
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _check(x: Tensor, sigmas: Tensor) -> list[float]:
    """The schedule as Python floats (float64), validated."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten().tolist()
    if len(s) < 2:
        raise ValueError(f"sigmas needs at least 2 values (1 step), got {len(s)}")
    if any(b > a for a, b in zip(s, s[1:])) or s[-1] < 0 or min(s[:-1]) <= 0:
        raise ValueError("sigmas must be non-increasing and positive, except a final 0")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    return s


def _denoise(D: Denoiser, x: Tensor, sigma: float, cond: Any, dtype: torch.dtype) -> Tensor:
    """``D(x; sigma)`` in float64, with the call made in the network dtype."""
    s = torch.full((x.shape[0],), sigma, dtype=dtype, device=x.device)
    return D(x.to(dtype), s, cond).to(torch.float64)


def _report(callback, i: int, s_cur: float, s_next: float, x: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "sigma": s_cur, "sigma_next": s_next, "x": x})


def euler_sample(D: Denoiser, x: Tensor, sigmas: Tensor, cond: Any = None, *,
                 dtype: Optional[torch.dtype] = None,
                 generator: Optional[torch.Generator] = None,
                 callback: Optional[Callable[[dict], None]] = None) -> Tensor:
    """First-order (Euler) probability-flow ODE solver; N steps cost N evaluations.

    EDM Algorithm 1 without the second-order correction (lines 9-11).

    Parameters
    ----------
    D : callable
        Denoiser ``D(x, sigma, cond)``.
    x : torch.Tensor
        The state at ``sigmas[0]`` (e.g. :func:`start_state`), shape (N, C, H, W); taken
        in float64.
    dtype : torch.dtype, optional
        Dtype of the network calls and of the result (default: that of ``x``).
    sigmas : torch.Tensor
        Decreasing schedule, e.g. :func:`karras_sigmas`.
    cond : optional
        Conditioning passed to ``D``.
    generator : torch.Generator, optional
        Source of any added noise (unused by this deterministic solver).
    callback : callable, optional
        Called after every step as ``callback({"i", "sigma", "sigma_next", "x"})``.

    Returns
    -------
    torch.Tensor
        Samples at ``sigmas[-1]``, in ``dtype``.
    """
    s = _check(x, sigmas)
    dtype, x = dtype or x.dtype, x.to(torch.float64)
    for i, (s_cur, s_next) in enumerate(zip(s[:-1], s[1:])):
        d = (x - _denoise(D, x, s_cur, cond, dtype)) / s_cur
        x = x + (s_next - s_cur) * d
        _report(callback, i, s_cur, s_next, x)
    return x.to(dtype)


def heun_sample(D: Denoiser, x: Tensor, sigmas: Tensor, cond: Any = None, *,
                dtype: Optional[torch.dtype] = None,
                generator: Optional[torch.Generator] = None,
                callback: Optional[Callable[[dict], None]] = None) -> Tensor:
    """Heun's second-order probability-flow ODE solver; N steps cost 2N - 1 evaluations.

    EDM Algorithm 1 (deterministic sampler). The correction is skipped on the last step
    to sigma = 0, where the ODE slope is undefined.

    Parameters
    ----------
    D : callable
        Denoiser ``D(x, sigma, cond)``.
    x : torch.Tensor
        The state at ``sigmas[0]`` (e.g. :func:`start_state`), shape (N, C, H, W); taken
        in float64.
    dtype : torch.dtype, optional
        Dtype of the network calls and of the result (default: that of ``x``).
    sigmas : torch.Tensor
        Decreasing schedule, e.g. :func:`karras_sigmas`.
    cond : optional
        Conditioning passed to ``D``.
    generator : torch.Generator, optional
        Source of any added noise (unused by this deterministic solver).
    callback : callable, optional
        Called after every step as ``callback({"i", "sigma", "sigma_next", "x"})``.

    Returns
    -------
    torch.Tensor
        Samples at ``sigmas[-1]``, in ``dtype``.
    """
    s = _check(x, sigmas)
    dtype, x = dtype or x.dtype, x.to(torch.float64)
    for i, (s_cur, s_next) in enumerate(zip(s[:-1], s[1:])):
        x = _heun_step(D, x, s_cur, s_next, cond, dtype)
        _report(callback, i, s_cur, s_next, x)
    return x.to(dtype)


def _heun_step(D: Denoiser, x: Tensor, s_cur: float, s_next: float, cond: Any,
               dtype: torch.dtype) -> Tensor:
    """One step of EDM Algorithm 1 (lines 4-11) from ``s_cur`` to ``s_next``."""
    d = (x - _denoise(D, x, s_cur, cond, dtype)) / s_cur
    x_next = x + (s_next - s_cur) * d
    if s_next > 0:
        d_next = (x_next - _denoise(D, x_next, s_next, cond, dtype)) / s_next
        x_next = x + (s_next - s_cur) * (0.5 * d + 0.5 * d_next)
    return x_next


def stochastic_sample(D: Denoiser, x: Tensor, sigmas: Tensor, cond: Any = None, *,
                      dtype: Optional[torch.dtype] = None,
                      generator: Optional[torch.Generator] = None,
                      callback: Optional[Callable[[dict], None]] = None,
                      S_churn: float = 0.0, S_min: float = 0.0, S_max: float = math.inf,
                      S_noise: float = 1.0) -> Tensor:
    """Stochastic sampler: Heun steps with Langevin-like churn.

    EDM Algorithm 2. At each step with S_min <= sigma_i <= S_max the noise level is raised
    to sigma_hat = sigma_i (1 + gamma), gamma = min(S_churn / N, sqrt(2) - 1), by adding
    fresh noise of standard deviation S_noise sqrt(sigma_hat^2 - sigma_i^2); then one Heun
    step goes from sigma_hat to sigma_{i+1}. With S_churn = 0 it equals :func:`heun_sample`.

    Parameters
    ----------
    D : callable
        Denoiser ``D(x, sigma, cond)``.
    x : torch.Tensor
        The state at ``sigmas[0]`` (e.g. :func:`start_state`), shape (N, C, H, W); taken
        in float64.
    dtype : torch.dtype, optional
        Dtype of the network calls and of the result (default: that of ``x``).
    sigmas : torch.Tensor
        Decreasing schedule, e.g. :func:`karras_sigmas`.
    cond : optional
        Conditioning passed to ``D``.
    S_churn : float
        Overall amount of stochasticity (>= 0).
    S_min, S_max : float
        Sigma range (model-space units) in which churn is applied.
    S_noise : float
        Scale of the added noise (slightly > 1 counters over-denoising).
    generator : torch.Generator, optional
        Source of the added noise, drawn on the generator's device (the seeded CPU one of
        :func:`radiodiff.seeds.churn_generator`) and moved to ``x``'s.
    callback : callable, optional
        Called after every step as ``callback({"i", "sigma", "sigma_next", "x"})``.

    Returns
    -------
    torch.Tensor
        Samples at ``sigmas[-1]``, in ``dtype``.
    """
    if S_churn < 0:
        raise ValueError(f"S_churn must be >= 0, got {S_churn}")
    s = _check(x, sigmas)
    n_steps = len(s) - 1
    dtype, x = dtype or x.dtype, x.to(torch.float64)
    for i, (s_cur, s_next) in enumerate(zip(s[:-1], s[1:])):
        gamma = min(S_churn / n_steps, math.sqrt(2) - 1) if S_min <= s_cur <= S_max else 0.0
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:  # drawn where the generator lives (the seeded CPU one), then moved
            where = generator.device if generator is not None else x.device
            eps = torch.randn(x.shape, generator=generator, dtype=dtype,
                              device=where).to(x.device, torch.float64)
            x = x + math.sqrt(s_hat ** 2 - s_cur ** 2) * S_noise * eps
        x = _heun_step(D, x, s_hat, s_next, cond, dtype)
        _report(callback, i, s_cur, s_next, x)
    return x.to(dtype)


def dpmpp_2m_sample(D: Denoiser, x: Tensor, sigmas: Tensor, cond: Any = None, *,
                    dtype: Optional[torch.dtype] = None,
                    generator: Optional[torch.Generator] = None,
                    callback: Optional[Callable[[dict], None]] = None) -> Tensor:
    """DPM-Solver++(2M): second-order multistep solver; N steps cost N evaluations.

    Lu et al. 2022 (DPM-Solver++), Algorithm 2, in the sigma parametrisation of
    k-diffusion's ``sample_dpmpp_2m`` (t = -ln sigma, h = t_{i+1} - t_i). The first step
    and the last step to sigma = 0 are first order.

    Parameters
    ----------
    D : callable
        Denoiser ``D(x, sigma, cond)``.
    x : torch.Tensor
        The state at ``sigmas[0]`` (e.g. :func:`start_state`), shape (N, C, H, W); taken
        in float64.
    dtype : torch.dtype, optional
        Dtype of the network calls and of the result (default: that of ``x``).
    sigmas : torch.Tensor
        Decreasing schedule, e.g. :func:`karras_sigmas`.
    cond : optional
        Conditioning passed to ``D``.
    generator : torch.Generator, optional
        Source of any added noise (unused by this deterministic solver).
    callback : callable, optional
        Called after every step as ``callback({"i", "sigma", "sigma_next", "x"})``.

    Returns
    -------
    torch.Tensor
        Samples at ``sigmas[-1]``, in ``dtype``.
    """
    s = _check(x, sigmas)
    dtype, x = dtype or x.dtype, x.to(torch.float64)
    old_denoised: Optional[Tensor] = None
    h_last = 0.0
    for i, (s_cur, s_next) in enumerate(zip(s[:-1], s[1:])):
        denoised = _denoise(D, x, s_cur, cond, dtype)
        if s_next == 0:
            x = denoised                       # limit h -> inf of the update below
            _report(callback, i, s_cur, s_next, x)
            break
        h = math.log(s_cur) - math.log(s_next)
        if h == 0:
            _report(callback, i, s_cur, s_next, x)
            continue
        if old_denoised is None or h_last == 0:
            d = denoised
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (s_next / s_cur) * x - math.expm1(-h) * d
        old_denoised, h_last = denoised, h
        _report(callback, i, s_cur, s_next, x)
    return x.to(dtype)


# The registry: every solver has the signature
# fn(D, x, sigmas, cond=None, *, dtype=None, generator=None, callback=None, **opts),
# x the state at sigmas[0].
SAMPLERS = {"euler": euler_sample, "heun": heun_sample, "stochastic": stochastic_sample,
            "dpmpp_2m": dpmpp_2m_sample}


def sampler_nfe(sampler: str, steps: int, guidance: float = 1.0) -> int:
    """Network evaluations per image: Heun and the stochastic solver 2N - 1 (no second
    order at the last step to sigma = 0), Euler and DPM-Solver++(2M) N; classifier-free
    guidance evaluates the network twice, except at w = 1 (conditional only) and w = 0
    (unconditional only)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    n = 2 * steps - 1 if sampler in ("heun", "stochastic") else steps
    return n * (1 if guidance in (0, 1) else 2)


# Sane limits, checked before anything is allocated (one rule each, here only).
LIMITS = {
    "sigma_max": 1e5,        # model-space data live in [0, 1]; EDM uses 80
    "sigma_min": 1e-7,       # below this float32 images cannot tell the steps apart
    "steps": 100_000,
    "rho": 1000.0,
    "seed": 2**63 - 1,       # seeds are int64 (samples.h5, FITS SEED card)
    "memory_fraction": 0.5,  # of the machine's RAM, for the images of one sample run
}


def check_seed_range(seed: int, n: int) -> None:
    """Seeds ``seed .. seed + n - 1`` must fit int64 (one seed per image, stored)."""
    top = LIMITS["seed"]
    if seed < 0 or seed + n - 1 > top:
        raise ValueError(f"seeds {seed}..{seed + n - 1} out of range: image k uses seed + k, "
                         f"which must lie in [0, 2**63 - 1 = {top}]")


def _physical_memory() -> int | None:
    """Bytes of RAM of this machine (None when the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_sample_memory(n: int, image_size: int, copies: int = 4) -> int:
    """Estimated bytes of ``n`` float32 images of ``image_size``^2 kept by a sample run
    (``copies``: decoded, projected, physical, the writer's buffer); refused over
    ``LIMITS["memory_fraction"]`` of the RAM. Returns the estimate."""
    need = int(n) * int(image_size) ** 2 * 4 * copies
    ram = _physical_memory()
    if ram is not None and need > LIMITS["memory_fraction"] * ram:
        most = int(LIMITS["memory_fraction"] * ram // (int(image_size) ** 2 * 4 * copies))
        raise ValueError(f"n={n} images of {image_size}x{image_size} need about "
                         f"{need / 2**30:.1f} GiB, more than half of this machine's "
                         f"{ram / 2**30:.1f} GiB; ask for at most {most} per run")
    return need


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler setting: solver, Karras schedule (EDM Eq. 5), churn and guidance weight.

    Defaults are :class:`radiodiff.config.SamplerConfig` (``conf/sampler/``). Noise levels
    are in model-space units; ``guidance`` is w of :func:`radiodiff.diffusion.edm.guided`.
    """
    name: str = SamplerConfig.name
    steps: int = SamplerConfig.steps
    sigma_min: float = SamplerConfig.sigma_min
    sigma_max: float = SamplerConfig.sigma_max
    rho: float = SamplerConfig.rho
    S_churn: float = SamplerConfig.S_churn
    guidance: float = SamplerConfig.guidance

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.name!r}; valid samplers: "
                             f"{', '.join(SAMPLERS)}")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps}")
        if self.steps > LIMITS["steps"]:
            raise ValueError(f"steps={self.steps} is past the limit of {LIMITS['steps']}")
        if not 0 < self.sigma_min <= self.sigma_max < math.inf:
            raise ValueError("need 0 < sigma_min <= sigma_max < inf, got "
                             f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}")
        if self.sigma_min < LIMITS["sigma_min"] or self.sigma_max > LIMITS["sigma_max"]:
            raise ValueError(f"need {LIMITS['sigma_min']:g} <= sigma_min <= sigma_max <= "
                             f"{LIMITS['sigma_max']:g} (model-space units; EDM: 0.002 and "
                             f"80), got sigma_min={self.sigma_min}, "
                             f"sigma_max={self.sigma_max}")
        if self.sigma_min == self.sigma_max and self.steps > 1:
            raise ValueError(f"sigma_min = sigma_max = {self.sigma_min} with steps="
                             f"{self.steps}: the schedule would not move; need sigma_min "
                             "< sigma_max")
        if not self.rho > 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")
        if self.rho > LIMITS["rho"]:
            raise ValueError(f"rho={self.rho} is past the limit of {LIMITS['rho']:g}")
        for name in ("guidance", "S_churn"):
            value = getattr(self, name)
            if not (math.isfinite(float(value)) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.S_churn > 0 and self.name != "stochastic":
            raise ValueError(f"S_churn={self.S_churn} needs the stochastic sampler; the "
                             f"{self.name} solver is deterministic (give S_churn 0, or "
                             "sampler stochastic)")
        object.__setattr__(self, "steps", int(self.steps))
        for name in ("sigma_min", "sigma_max", "rho", "S_churn", "guidance"):
            object.__setattr__(self, name, float(getattr(self, name)))
        self.sigmas()  # a rho that over- or underflows the schedule: one ValueError here

    @classmethod
    def from_config(cls, sampler_cfg: Any) -> "SamplerSpec":
        """From ``cfg.sampler`` (a ``SamplerConfig`` or its DictConfig)."""
        return cls(**{f.name: getattr(sampler_cfg, f.name) for f in fields(cls)})

    @classmethod
    def build(cls, base: Optional["SamplerSpec"] = None, sampler: Optional[str] = None,
              **options: Any) -> "SamplerSpec":
        """``base`` (default: the defaults) with the options given (not None) replaced;
        ``sampler`` is the solver name, the keyword ``generate`` and the CLI use."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown sampler option(s) {', '.join(unknown)}; "
                            f"known: sampler, {', '.join(sorted(known - {'name'}))}")
        given = {k: v for k, v in dict(options, name=sampler).items() if v is not None}
        if given.get("name", "stochastic") != "stochastic" and "S_churn" not in given:
            given["S_churn"] = 0.0  # another solver named over a churned base: no churn
        return replace(base or cls(), **given)

    @property
    def nfe(self) -> int:
        """Network evaluations per image (:func:`sampler_nfe`)."""
        return sampler_nfe(self.name, self.steps, self.guidance)

    def sigmas(self) -> Tensor:
        """The noise levels of the solver steps, with the final 0 (EDM Eq. 5)."""
        return karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)

    def solve(self, D: Denoiser, x: Tensor, cond: Any = None,
              generator: Optional[torch.Generator] = None,
              callback: Optional[Callable[[dict], None]] = None,
              dtype: Optional[torch.dtype] = None) -> Tensor:
        """Run the solver from ``x``, the state at ``sigmas()[0]`` (:func:`start_state`),
        over :meth:`sigmas`, the network called in ``dtype`` (default: that of ``x``);
        ``generator`` draws the churn noise of the stochastic solver (used only when
        ``S_churn > 0``)."""
        solver = SAMPLERS[self.name]
        opts = {"S_churn": self.S_churn} if self.name == "stochastic" else {}
        return solver(D, x, self.sigmas(), cond, callback=callback, dtype=dtype,
                      generator=generator if self.S_churn > 0 else None, **opts)

    def settings(self) -> dict[str, Any]:
        """The spec as the ``sampler``/``steps``/... dict of sample provenance."""
        return dict(sampler=self.name, steps=self.steps, guidance=self.guidance,
                    sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho,
                    S_churn=self.S_churn)


def seeded_noise(seeds: Sequence[int], shape: Sequence[int], dtype: torch.dtype = torch.float32,
                 device: Optional[torch.device | str] = None) -> Tensor:
    """Unit Gaussian noise with one generator per seed.

    Row k is drawn from ``seed_generator(seeds[k])`` (on the CPU), so sample k
    is identical whatever the batch size, batch split or device.

    Parameters
    ----------
    seeds : sequence of int
        One seed per sample.
    shape : sequence of int
        Shape of one sample, e.g. (C, H, W).
    dtype : torch.dtype
        Floating-point dtype of the result.
    device : torch.device or str, optional
        Where the result is placed (drawn on the CPU first).

    Returns
    -------
    torch.Tensor
        Shape (len(seeds), *shape).
    """
    rows = [torch.randn(tuple(shape), generator=seed_generator(seed), dtype=dtype)
            for seed in seeds]
    if not rows:
        return torch.empty((0, *shape), dtype=dtype, device=device)
    return torch.stack(rows).to(device)


def start_state(eps: Tensor, sigma: float, x0: Optional[Tensor] = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """The solvers' start ``x = x0 + sigma * eps`` at ``sigma = sigmas[0]``, float64.

    One rule for pure sampling (``x0`` None: ``sigma * eps``) and for SDEdit-style
    refinement (``x0`` the encoded base image, ``sigma`` the first level of a truncated
    schedule). The standardised start ``x0 / sigma + eps`` is formed in the network
    ``dtype``, as the noise is drawn, then scaled by ``sigma`` in float64:
    ``x = float64(dtype(x0 / sigma + eps)) * sigma``. With ``x0`` None it is exactly
    ``float64(eps) * sigma`` for noise drawn in ``dtype``.

    Parameters
    ----------
    eps : torch.Tensor
        Unit Gaussian noise (e.g. :func:`seeded_noise`), shape (N, C, H, W).
    sigma : float
        The first noise level of the schedule, ``sigmas[0]`` (model-space units).
    x0 : torch.Tensor, optional
        The clean image in model space, shape of ``eps``.
    dtype : torch.dtype
        The network dtype the standardised start is rounded to.

    Returns
    -------
    torch.Tensor
        float64, shape of ``eps``.
    """
    z = eps.to(torch.float64)
    if x0 is not None:
        z = x0.to(torch.float64) / sigma + z
    return z.to(dtype).to(torch.float64) * sigma
