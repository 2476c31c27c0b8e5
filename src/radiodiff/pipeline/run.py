"""Run a release's pipeline (:class:`~radiodiff.pipeline.spec.PipelineSpec`) on seeds and
network conditions: the one place the steps are put in order.

1. base sampling: the one sampling loop (:func:`radiodiff.diffusion.loop.sample_batches`),
   image k from the noise of ``seeds[k]``, decoded to data space;
2. with a refiner: the base projection (no islands), then refinement
   (:func:`radiodiff.pipeline.refine.refine_images`: the same loop over a truncated
   schedule from the encoded base image);
3. the final output projection, with the data's noise islands drawn from each image's seed
   (:func:`radiodiff.data.projection.apply_projection`);
4. restoration to Jy/beam as ``image * peak_flux`` where the pipeline restores it.

Images are checked finite after sampling and after restoration, before anything is
returned (so before anything is written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from radiodiff.data.projection import apply_projection
from radiodiff.diffusion.loop import sample_batches
from radiodiff.diffusion.sampling import per_image, seeded_noise
from radiodiff.pipeline.refine import refine_images
from radiodiff.pipeline.spec import PipelineSpec
from radiodiff.seeds import churn_generator

__all__ = ["Drawn", "run_pipeline"]


@dataclass
class Drawn:
    """What a pipeline run gives: ``images`` (n, 1, H, W) float32 in data space, projected
    when the pipeline projects; ``raw`` the same before the final projection (None when it
    does not project); ``physical`` in Jy/beam (None when not restored); ``nfe`` the
    network evaluations of each image (both networks)."""
    images: np.ndarray
    raw: Optional[np.ndarray]
    physical: Optional[np.ndarray]
    nfe: np.ndarray


def run_pipeline(release: Any, pipe: PipelineSpec, seeds: np.ndarray,
                 cond: Optional[dict[str, torch.Tensor]], peak_flux: np.ndarray, *,
                 batch_size: int = 32, batch_invariant: bool = True,
                 progress: Optional[Callable] = None) -> Drawn:
    """Draw ``len(seeds)`` images by ``pipe`` with ``release``'s networks (its denoiser and
    intensity transform; its ``refiner`` when ``pipe.refine``); ``cond``: the network
    conditions of all images; ``peak_flux``: each image's, Jy/beam (NaN: none)."""
    size, spec = release.image_size, pipe.sampler
    out, nfe = sample_batches(
        per_image(release.denoiser) if batch_invariant else release.denoiser, spec,
        lambda lo, hi: seeded_noise(seeds[lo:hi].tolist(), (1, size, size)), len(seeds),
        decode=release.intensity.decode, cond=cond, batch_size=batch_size,
        device=next(release.denoiser.parameters()).device,
        churn=lambda k: churn_generator(int(seeds[k])), progress=progress)
    out = out.numpy().astype(np.float32)
    if pipe.refine is not None:
        base = apply_projection(out, pipe.base_projection, islands=False)
        out, extra = refine_images(release.refiner, base, seeds, cond, pipe.refine,
                                   batch_size, batch_invariant)
        nfe = nfe + extra
    _check_finite(release, pipe, out, "sampled")
    raw = None
    if pipe.projection is not None:
        raw, out = out, apply_projection(out, pipe.projection, seeds)
    physical = _restore(pipe, out, peak_flux)
    if physical is not None:
        _check_finite(release, pipe, physical, "restored (Jy/beam)")
    return Drawn(images=out, raw=raw, physical=physical, nfe=nfe)


def _check_finite(release: Any, pipe: PipelineSpec, images: np.ndarray, what: str) -> None:
    """One line, before anything is written, when an image holds NaN or inf."""
    bad = int((~np.isfinite(images)).any(axis=(1, 2, 3)).sum())
    if bad:
        from radiodiff.io.integrity import IntegrityError
        spec = pipe.sampler
        raise IntegrityError(f"{release.path}: {bad} of {len(images)} {what} images hold NaN "
                             f"or inf (sampler {spec.name}, sigma {spec.sigma_min:g}..."
                             f"{spec.sigma_max:g}); nothing written: check the release "
                             "(re-export it), the sampler options and the conditions")


def _restore(pipe: PipelineSpec, images: np.ndarray, peak_flux: np.ndarray
             ) -> Optional[np.ndarray]:
    """``images * peak_flux`` image by image (Jy/beam) when the pipeline restores the flux
    and every image has a peak flux, else None."""
    if not (pipe.restores_jy_per_beam and bool(np.isfinite(peak_flux).all())):
        return None
    return (images * peak_flux.astype(np.float32)[:, None, None, None]).astype(np.float32)
