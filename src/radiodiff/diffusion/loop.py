"""The one sampling loop: batches of images through a solver, from noise (or a clean image)
to decoded data space.

Base sampling (:func:`radiodiff.pipeline.generate.generate`), refinement
(:func:`radiodiff.pipeline.refine.refine_images`) and the training callback's samples
(:class:`radiodiff.training.callbacks.SampleCallback`) all run :func:`sample_batches`. Per
batch it draws the noise, forms the start state at ``sigmas[0]`` by the one rule of
:func:`radiodiff.diffusion.sampling.start_state` (pure sampling: ``x0`` None; SDEdit: ``x0``
the encoded base image and a truncated schedule), places it and the batch's conditions on the
device, counts the network evaluations (:class:`~radiodiff.diffusion.sampling.CountingDenoiser`
under classifier-free guidance), runs the solver with the network in float32 and decodes the
result through the intensity transform in float64.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from radiodiff.diffusion.edm import guided
from radiodiff.diffusion.sampling import CountingDenoiser, SamplerSpec, start_state
from radiodiff.progress import chunked

__all__ = ["sample_batches", "NETWORK_DTYPE"]

# The dtype of every network call (the weights are float32); the state stays float64.
NETWORK_DTYPE = torch.float32

Span = Callable[[int, int], Tensor]


def sample_batches(denoiser: Callable[..., Tensor], spec: SamplerSpec, noise: Span, n: int, *,
                   decode: Callable[[Tensor], Tensor], x0: Optional[Span] = None,
                   cond: Optional[Mapping[str, Tensor]] = None, batch_size: int = 32,
                   device: Any = None, churn: Optional[Callable[[int], torch.Generator]] = None,
                   progress: Optional[Callable] = None) -> tuple[Tensor, np.ndarray]:
    """Draw ``n`` images in batches of ``batch_size``: ``spec``'s solver from
    ``start_state(noise, sigmas[0], x0)``, guided with ``spec.guidance``, then decoded.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma, cond)`` (e.g. :func:`~radiodiff.diffusion.sampling.per_image` of a
        release's denoiser); its evaluations are counted.
    spec : SamplerSpec
        Solver, schedule (a truncated one for refinement) and guidance weight.
    noise : callable
        ``noise(lo, hi)``: unit Gaussian noise of images ``lo .. hi - 1``, (hi - lo, C, H, W).
    n : int
        Number of images (>= 1).
    decode : callable
        Model space -> data space (the release's ``intensity.decode``), called in float64.
    x0 : callable, optional
        ``x0(lo, hi)``: the clean images in model space to noise to ``sigmas[0]`` (SDEdit);
        None: pure sampling.
    cond : mapping, optional
        The network conditions of all ``n`` images (tensors of length ``n``), sliced per batch.
    batch_size : int
        Images per solver call.
    device : torch.device or str, optional
        Where the state and conditions are placed (the network's device).
    churn : callable, optional
        ``churn(k)``: the churn generator of image k; when given and the spec churns
        (stochastic, ``S_churn > 0``), images are solved one at a time with their own.
    progress : callable, optional
        ``progress(iterable, total)`` told the ``n`` images, each when its batch is done
        (:func:`radiodiff.progress.chunked`).

    Returns
    -------
    (torch.Tensor, numpy.ndarray)
        The decoded images (n, C, H, W) float32 on the CPU, and the network evaluations of
        each image (int64, (n,)).
    """
    counter = CountingDenoiser(denoiser)
    D = guided(counter, spec.guidance)
    own = churn is not None and spec.name == "stochastic" and spec.S_churn > 0
    chunk = 1 if own else int(batch_size)
    sigma = float(spec.sigmas()[0])
    starts = list(range(0, int(n), chunk))
    images, nfe = [], []
    advance = chunked(progress, int(n))
    with torch.inference_mode():
        for lo in starts:
            hi = min(lo + chunk, int(n))
            x = start_state(noise(lo, hi), sigma, None if x0 is None else x0(lo, hi),
                            NETWORK_DTYPE).to(device)
            cond_b = None if cond is None else {k: v[lo:hi].to(device) for k, v in cond.items()}
            counter.nfe = 0
            y = spec.solve(D, x, cond_b, generator=churn(lo) if own else None,
                           dtype=NETWORK_DTYPE)
            images.append(decode(y.double()).float().cpu())
            nfe += [counter.nfe] * (hi - lo)
            advance(hi - lo)
    return torch.cat(images), np.asarray(nfe, np.int64)
