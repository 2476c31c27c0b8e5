"""EDM preconditioning, loss and guidance: analytic identities (Karras et al. 2022, Table 1)."""

import math

import pytest
import torch
from torch import nn

from radiodiff.diffusion.edm import EDMDenoiser, edm_loss, guided

SD = 0.5


class ZeroNet(nn.Module):
    """F == 0, so D(x; sigma) = c_skip x (the exact denoiser of N(0, sd^2) data)."""

    def forward(self, x_in, c_noise, cond=None):
        return torch.zeros_like(x_in)


class ToyNet(nn.Module):
    """Output depends on x_in, c_noise and cond; counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.records = []

    def forward(self, x_in, c_noise, cond=None):
        self.calls += 1
        self.records.append((x_in, c_noise, cond))
        out = 0.7 * x_in + c_noise.reshape(-1, 1, 1, 1)
        if cond is not None:
            out = out + cond.to(x_in.dtype).reshape(-1, 1, 1, 1) * 0.3
        return out


def test_zero_net_gives_c_skip_x():
    den = EDMDenoiser(ZeroNet(), sigma_data=SD)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.01, 1.0, 50.0], dtype=torch.float64)
    c_skip = SD ** 2 / (sigma ** 2 + SD ** 2)
    assert torch.equal(den(x, sigma), c_skip.reshape(-1, 1, 1, 1) * x)


def test_lambda_times_c_out_squared_is_one():
    den = EDMDenoiser(ZeroNet(), sigma_data=SD)
    sigma = torch.logspace(-3, 2, 200, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = den.precondition(sigma)
    lam = (sigma ** 2 + SD ** 2) / (sigma * SD) ** 2
    torch.testing.assert_close(lam * c_out ** 2, torch.ones_like(sigma), rtol=1e-12, atol=0)
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    torch.testing.assert_close(c_in, 1 / (sigma ** 2 + SD ** 2).sqrt())
    assert c_skip.dtype == torch.float64


def test_forward_preconditions_network_inputs_and_broadcasts_sigma():
    net = ToyNet()
    den = EDMDenoiser(net, sigma_data=SD)
    x = torch.randn(4, 2, 6, 6)
    out_scalar = den(x, 2.0)
    out_vector = den(x, torch.full((4,), 2.0))
    assert out_scalar.shape == x.shape and out_scalar.dtype == torch.float32
    torch.testing.assert_close(out_scalar, out_vector)
    x_in, c_noise, cond = net.records[0]
    assert c_noise.shape == (4,) and cond is None
    torch.testing.assert_close(c_noise, torch.full((4,), math.log(2.0) / 4))
    torch.testing.assert_close(x_in, x / math.sqrt(4 + SD ** 2))
    with pytest.raises(ValueError, match="one value per sample"):
        den(x, torch.ones(3))


def test_sigma_data_is_a_buffer_and_validated():
    den = EDMDenoiser(ZeroNet(), sigma_data=0.3)
    assert "sigma_data" in den.state_dict()
    assert float(den.sigma_data) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="sigma_data"):
        EDMDenoiser(ZeroNet(), sigma_data=0.0)


def test_loss_shape_and_exact_gaussian_denoiser():
    # For N(0, sd^2) data, F == 0 is the exact denoiser and E[loss | sigma] = 1 at every
    # sigma (lambda * sigma^2 sd^2 / (sigma^2 + sd^2) = 1); a wrong denoiser does worse.
    g = torch.Generator().manual_seed(0)
    x0 = SD * torch.randn(64, 1, 32, 32, generator=g, dtype=torch.float64)
    exact = EDMDenoiser(ZeroNet(), sigma_data=SD)
    loss, sigma = edm_loss(exact, x0, generator=torch.Generator().manual_seed(1))
    assert loss.shape == (64,) and sigma.shape == (64,)
    assert torch.isfinite(loss).all() and (sigma > 0).all()
    assert loss.mean().item() == pytest.approx(1.0, abs=0.03)
    assert (loss - 1).abs().max().item() < 0.25

    def identity(x, sigma, cond=None):  # D = x: ignores the noise entirely
        return x

    bad, _ = edm_loss(identity, x0, generator=torch.Generator().manual_seed(1),
                      sigma_data=SD)
    assert bad.mean().item() > 3 * loss.mean().item()


def test_loss_sigma_distribution_and_determinism():
    x0 = torch.zeros(4000, 1, 2, 2)
    den = EDMDenoiser(ZeroNet(), sigma_data=SD)
    loss_a, sigma = edm_loss(den, x0, P_mean=-1.2, P_std=1.2,
                             generator=torch.Generator().manual_seed(3))
    loss_b, _ = edm_loss(den, x0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loss_a, loss_b)
    assert sigma.log().mean().item() == pytest.approx(-1.2, abs=0.06)
    assert sigma.log().std().item() == pytest.approx(1.2, abs=0.06)


def test_loss_needs_sigma_data():
    with pytest.raises(TypeError, match="sigma_data"):
        edm_loss(lambda x, s, c=None: x, torch.zeros(2, 1, 2, 2))


@pytest.fixture
def toy():
    net = ToyNet()
    return net, EDMDenoiser(net, sigma_data=SD)


def test_guidance_one_is_conditional_single_evaluation(toy):
    net, den = toy
    x, cond = torch.randn(3, 1, 4, 4), torch.tensor([1.0, 2.0, 3.0])
    g = guided(den, 1.0)
    net.calls = 0
    out = g(x, 0.8, cond)
    assert net.calls == 1
    torch.testing.assert_close(out, den(x, 0.8, cond))


def test_guidance_zero_and_two(toy):
    net, den = toy
    x, cond = torch.randn(3, 1, 4, 4), torch.tensor([1.0, 2.0, 3.0])
    d_cond, d_uncond = den(x, 0.8, cond), den(x, 0.8, None)
    assert not torch.allclose(d_cond, d_uncond)
    torch.testing.assert_close(guided(den, 0.0)(x, 0.8, cond), d_uncond)
    torch.testing.assert_close(guided(den, 2.0)(x, 0.8, cond), 2 * d_cond - d_uncond)
    net.calls = 0
    torch.testing.assert_close(guided(den, 2.0)(x, 0.8, None), d_uncond)
    assert net.calls == 1
