"""EDM preconditioning, training loss and classifier-free guidance (Karras et al. 2022).

The network ``F(x_in, c_noise, cond)`` knows nothing about sigma; :class:`EDMDenoiser`
wraps it into the one interface the rest of the package uses, ``D(x, sigma, cond)``
(EDM Table 1, Eq. 7). Sigma is always in model-space units (the units of the encoded
images), never a time step.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

__all__ = ["EDMDenoiser", "edm_loss", "guided", "noise_distribution"]

Denoiser = Callable[..., Tensor]


def _sigma_batch(sigma: Any, n: int, device: torch.device) -> Tensor:
    """Sigma as a float64 tensor of shape (n,) from a scalar or an (n,)-sized tensor."""
    s = torch.as_tensor(sigma, dtype=torch.float64, device=device)
    if s.ndim == 0:
        return s.expand(n)
    if s.numel() != n:
        raise ValueError(f"sigma must be a scalar or hold one value per sample ({n}), "
                         f"got shape {tuple(s.shape)}")
    return s.reshape(n)


class EDMDenoiser(nn.Module):
    """Preconditioned denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise, cond)``.

    EDM Table 1 ("Ours" column), Eq. 7.

    Parameters
    ----------
    net : torch.nn.Module
        The raw network ``F(x_in, c_noise, cond)``; ``x_in`` has shape (N, C, H, W),
        ``c_noise`` shape (N,), ``cond`` whatever the network accepts (or None).
    sigma_data : float
        Standard deviation of the training images in model-space units; measure it on
        the encoded training set. Stored as a float64 buffer (saved with the weights).
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        if not (math.isfinite(sigma_data) and sigma_data > 0):
            raise ValueError(f"sigma_data must be a positive finite number, got {sigma_data}")
        self.net = net
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data), dtype=torch.float64))

    def precondition(self, sigma: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The coefficients ``(c_skip, c_out, c_in, c_noise)`` at ``sigma`` (float64).

        EDM Table 1: c_skip = sd^2/(sigma^2+sd^2), c_out = sigma sd/sqrt(sigma^2+sd^2),
        c_in = 1/sqrt(sigma^2+sd^2), c_noise = ln(sigma)/4.

        Parameters
        ----------
        sigma : float or torch.Tensor
            Noise level(s) in model-space units, > 0; any shape.

        Returns
        -------
        tuple of torch.Tensor
            Four float64 tensors with the shape of ``sigma``.
        """
        sd = self.sigma_data.to(torch.float64)
        s = torch.as_tensor(sigma, dtype=torch.float64, device=sd.device)
        total = s.square() + sd.square()
        c_skip = sd.square() / total
        c_out = s * sd / total.sqrt()
        c_in = total.rsqrt()
        c_noise = s.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: Tensor, sigma: Any, cond: Any = None) -> Tensor:
        """Denoised estimate of ``x`` at noise level ``sigma`` (EDM Eq. 7).

        Parameters
        ----------
        x : torch.Tensor
            Noisy images, shape (N, C, H, W), model-space units.
        sigma : float or torch.Tensor
            Noise level, a scalar or one value per sample (N elements).
        cond : optional
            Conditioning passed unchanged to the network; None = unconditional.

        Returns
        -------
        torch.Tensor
            ``D(x; sigma)``, same shape and dtype as ``x``.
        """
        s = _sigma_batch(sigma, x.shape[0], x.device)                       # (N,)
        c_skip, c_out, c_in, c_noise = self.precondition(s)
        shape = (-1,) + (1,) * (x.ndim - 1)                                 # (N,1,1,1)
        c_skip, c_out, c_in = (c.to(x.dtype).reshape(shape) for c in (c_skip, c_out, c_in))
        f = self.net(c_in * x, c_noise.to(x.dtype), cond)                   # (N,C,H,W)
        return c_skip * x + c_out * f.to(x.dtype)


def noise_distribution(P_mean: float, P_std: float, sigma_data: float,
                       relative: bool = False) -> tuple[float, float]:
    """(mean, std) of ln sigma in training (EDM Eq. 2's P_mean, P_std), model-space units.

    With ``relative`` the configured ``P_mean`` is an offset from ``ln sigma_data``, so the
    noise levels follow the data's scale: EDM's -1.2 at sigma_data = 0.5 is offset -0.51.
    """
    if not (math.isfinite(P_std) and P_std > 0):
        raise ValueError(f"P_std must be a positive finite number, got {P_std}")
    mean = float(P_mean) + (math.log(float(sigma_data)) if relative else 0.0)
    return mean, float(P_std)


def edm_loss(denoiser: Denoiser, x0: Tensor, cond: Any = None, P_mean: float = -1.2,
             P_std: float = 1.2, generator: Optional[torch.Generator] = None,
             sigma_data: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """Unreduced EDM training loss, one value per sample.

    EDM Eq. 2 and Table 1: ln sigma ~ N(P_mean, P_std^2), n = sigma eps,
    lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2, loss = lambda |D(x0 + n; sigma) - x0|^2
    averaged over pixels. With this weighting the loss equals the network's effective
    training target error (lambda c_out^2 = 1), so it is O(1) at every sigma.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma, cond)``, typically an :class:`EDMDenoiser`.
    x0 : torch.Tensor
        Clean images, shape (N, C, H, W), model-space units.
    cond : optional
        Conditioning passed to the denoiser.
    P_mean, P_std : float
        Mean and standard deviation of ln sigma.
    generator : torch.Generator, optional
        Source of sigma and noise draws (on ``x0``'s device).
    sigma_data : float, optional
        Data standard deviation for lambda; defaults to ``denoiser.sigma_data``.

    Returns
    -------
    loss : torch.Tensor
        Shape (N,), in ``x0``'s dtype; reduce and log per sigma bin in the training loop.
    sigma : torch.Tensor
        Shape (N,), the noise levels drawn for each sample.
    """
    if sigma_data is None:
        if not hasattr(denoiser, "sigma_data"):
            raise TypeError("edm_loss needs sigma_data: pass it or give the denoiser a "
                            "`sigma_data` attribute (EDMDenoiser has one)")
        sigma_data = denoiser.sigma_data
    sd = torch.as_tensor(sigma_data, dtype=x0.dtype, device=x0.device)
    n = x0.shape[0]
    ln_sigma = torch.randn(n, generator=generator, dtype=x0.dtype, device=x0.device)
    sigma = (ln_sigma * P_std + P_mean).exp()                                # (N,)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    noisy = x0 + sigma.reshape(shape) * eps
    weight = (sigma.square() + sd.square()) / (sigma * sd).square()          # (N,)
    err = (denoiser(noisy, sigma, cond) - x0).square()
    return weight * err.reshape(n, -1).mean(dim=1), sigma


def guided(denoiser: Denoiser, guidance: float) -> Denoiser:
    """Classifier-free guidance: ``D_w = D_uncond + w (D_cond - D_uncond)``.

    Ho & Salimans 2022, Eq. 6 (written for denoisers, as in EDM2). The unconditional
    evaluation passes ``cond=None``; the network is expected to have been trained with
    label dropout so that it has a meaning.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma, cond)``.
    guidance : float
        Guidance weight w; 1 = plain conditional (one evaluation), 0 = unconditional.

    Returns
    -------
    callable
        A denoiser ``D(x, sigma, cond)``; with ``cond=None`` it is the unconditional one.
    """
    w = float(guidance)
    if not math.isfinite(w):
        raise ValueError(f"guidance must be finite, got {guidance}")
    if w == 1.0:
        return denoiser

    def guided_denoiser(x: Tensor, sigma: Any, cond: Any = None) -> Tensor:
        d_uncond = denoiser(x, sigma, None)
        if cond is None or w == 0.0:
            return d_uncond
        d_cond = denoiser(x, sigma, cond)
        return d_uncond + w * (d_cond - d_uncond)

    return guided_denoiser
