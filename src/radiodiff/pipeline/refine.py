"""Faint-end refinement: a second denoiser re-draws the faint pixels in a stretched space.

The linear model space of ``models/first`` learns the bright structure (class, shape,
orientation) but never the faint end: under x^0.25 every linear arm of the issue-10
ablation is told apart from real images 100 % of the time. A model trained in the
power-0.25 space (``schedule=stretch``) reaches the faint end but, on the compute a CPU
gives, not the bright structure. Refinement takes the best of both, as SDEdit (Meng et al.
2022) and the SDXL refiner (Podell et al. 2023) do: the base image ``x`` (projected like the
data) is encoded into the refiner's model space, ``y = s(x)``, noised to ``sigma_r``,

    y(sigma_r) = s(x) + sigma_r * eps,

and integrated back to 0 by the refiner's probability-flow ODE (EDM Eq. 1) in ``steps``
solver steps. At ``sigma_r = 0.6`` in x^0.25 space (the default; the shipped FIRST
release records 0.45, chosen on the validation split over 0.3 and 0.6 for its 55k-image
refiner) the noise is comparable to what lies below ~10 % of the peak (0.6^4 = 0.13) and
small beside the bright core: the refiner re-draws the faint wings, jets and sky, the base
keeps the morphology.

No special sampler: it is the one sampling loop
(:func:`radiodiff.diffusion.loop.sample_batches`) with ``x0 = s(x)`` and the truncated
schedule :meth:`RefineSpec.solver` (Karras levels from ``sigma_r`` down), whose start
``y(sigmas[0])`` is formed by the same rule as pure noise
(:func:`radiodiff.diffusion.sampling.start_state`).

The refiner is a release of its own, kept in the base release's ``refiner/`` folder; the
base's ``meta.json`` records ``refine = {sigma, steps, sampler, rho, weights_sha256,
projection}``, so the pair is checked as one (:func:`radiodiff.pipeline.release.load_release`)
and the final output projection is stored once (:mod:`radiodiff.pipeline.spec`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch

from radiodiff.config import SamplerConfig
from radiodiff.diffusion.loop import sample_batches
from radiodiff.diffusion.sampling import SamplerSpec, per_image, seeded_noise
from radiodiff.seeds import refine_seed

__all__ = ["RefineSpec", "refine_images"]


@dataclass(frozen=True)
class RefineSpec:
    """How a base image is refined.

    Parameters
    ----------
    sigma : float
        Noise level the base image is taken to, in the refiner's model-space units
        (> 0; at most the refiner's sampling ``sigma_max``).
    steps : int
        Solver steps from ``sigma`` to 0 (>= 1); ``dpmpp_2m`` costs one network
        evaluation per step.
    sampler : str
        Solver (one of :data:`radiodiff.diffusion.sampling.SAMPLERS`).
    rho : float
        Curvature of the refiner's Karras schedule (EDM Eq. 5): smaller values spread the
        few steps more evenly over (0, ``sigma``]. Releases written before it was recorded
        use EDM's 7.
    """
    sigma: float = 0.6
    steps: int = 3
    sampler: str = "dpmpp_2m"
    rho: float = SamplerConfig.rho  # EDM's 7, the base sampler's default

    def __post_init__(self) -> None:
        low = SamplerConfig.sigma_min  # the schedule's end, which a refinement steps down to
        if not (isinstance(self.sigma, (int, float)) and 0 < self.sigma < float("inf")):
            raise ValueError(f"refine sigma (--sigma) must be a finite number > 0, got "
                             f"{self.sigma!r}")
        if self.sigma <= low and self.steps != 1:
            raise ValueError(f"refine sigma (--sigma) {self.sigma:g} is at or below the "
                             f"schedule's end {low:g}: only one step (--steps 1) fits, got "
                             f"steps={self.steps}")

    def solver(self, sigma_min: float = 0.002) -> SamplerSpec:
        """The refiner's solver spec from ``sigma`` down to ``sigma_min`` (validated there)."""
        return SamplerSpec.build(sampler=self.sampler, steps=self.steps, rho=self.rho,
                                 sigma_max=self.sigma, sigma_min=min(sigma_min, self.sigma))

    @property
    def nfe(self) -> int:
        """Network evaluations per image (unguided)."""
        return self.solver().nfe

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "refine") -> "RefineSpec":
        """From a release's ``meta["refine"]``; a bad value raises ValueError naming ``where``."""
        try:
            spec = cls(sigma=float(d["sigma"]), steps=int(d["steps"]),
                       sampler=str(d.get("sampler", "dpmpp_2m")),
                       rho=float(d.get("rho", cls.rho)))
            spec.solver()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: not a refinement setting ({exc})") from exc
        return spec


def refine_images(refiner: Any, images: np.ndarray, seeds: np.ndarray,
                  cond: Optional[Mapping[str, torch.Tensor]], spec: RefineSpec,
                  batch_size: int = 32, batch_invariant: bool = True,
                  sigma_min: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Refine base images (data space, projected like the data) with the refiner release.

    Parameters
    ----------
    refiner : Release
        The refiner (its ``intensity`` maps data space to its model space).
    images : numpy.ndarray
        (n, 1, H, W) base images in data space ([0, 1], peak at 1).
    seeds : numpy.ndarray
        One seed per image (the refinement noise: :func:`radiodiff.seeds.refine_seed`).
    cond : mapping or None
        The network conditions of all n images (as for the base).
    spec : RefineSpec
    batch_size, batch_invariant
        As for :func:`radiodiff.pipeline.generate.generate`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The refined images in data space (float32, not projected) and the network
        evaluations of each image (int64, (n,)).
    """
    size = images.shape[-1]
    noise_seeds = [refine_seed(s) for s in seeds]
    out, nfe = sample_batches(
        per_image(refiner.denoiser) if batch_invariant else refiner.denoiser,
        spec.solver(sigma_min),
        lambda lo, hi: seeded_noise(noise_seeds[lo:hi], (1, size, size), dtype=torch.float64),
        len(images), decode=refiner.intensity.decode, batch_size=batch_size,
        x0=lambda lo, hi: refiner.intensity.encode(
            torch.from_numpy(np.asarray(images[lo:hi])).double().clamp(0, 1)),
        cond=cond, device=next(refiner.denoiser.parameters()).device)
    return out.numpy().astype(np.float32), nfe
