"""The U-Net F: shapes, zero init, null conditioning, gradients, sizes, config errors."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from radiodiff.config import ModelConfig, conf_dir
from radiodiff.diffusion.unet import AttnBlock, build_unet, drop_conditions

SCALARS = ("peak_flux", "las_arcsec")


def preset(name):
    return OmegaConf.merge(OmegaConf.structured(ModelConfig),
                           OmegaConf.load(conf_dir() / "model" / f"{name}.yaml"))


def tiny(**kw):
    torch.manual_seed(0)
    kw = {"num_classes": 2, "scalar_conditions": SCALARS, **kw}
    return build_unet(preset("unet_tiny"), 16, **kw)


def randomise_output(net):
    """Give the zero-initialised last conv random weights so conditioning is visible."""
    with torch.no_grad():
        net.conv_out.weight.normal_(0, 0.1)
        net.conv_out.bias.normal_(0, 0.1)
    return net


def inputs(n=2, side=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, side, side, generator=g), torch.randn(n, generator=g)


def test_tiny_shape_and_zero_init():
    net = tiny()
    x, c_noise = inputs()
    out = net(x, c_noise, {"label": torch.tensor([0, 1]), "peak_flux": torch.tensor([0.5, -1])})
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, torch.zeros_like(x))


def test_small_preset_80x80_shape():
    torch.manual_seed(0)
    net = randomise_output(build_unet(preset("unet_small"), 80, num_classes=3,
                                      scalar_conditions=SCALARS))
    x, c_noise = inputs(side=80)
    with torch.no_grad():
        out = net(x, c_noise, None)
    assert out.shape == (2, 1, 80, 80) and torch.isfinite(out).all()


def test_scalar_c_noise_broadcasts():
    net = randomise_output(tiny()).eval()
    x, _ = inputs()
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.tensor(0.3)), net(x, torch.full((2,), 0.3)))


def test_none_equals_all_null():
    net = randomise_output(tiny()).eval()
    x, c_noise = inputs()
    null = {"label": torch.tensor([-1, -1]), "peak_flux": torch.full((2,), math.nan),
            "las_arcsec": torch.full((2,), math.nan)}
    with torch.no_grad():
        ref = net(x, c_noise, None)
        assert torch.equal(ref, net(x, c_noise, null))
        assert torch.equal(ref, net(x, c_noise, {}))
        assert torch.equal(ref, net(x, c_noise, {"label": torch.tensor([-1, -1])}))


@pytest.mark.parametrize("key, a, b", [
    ("label", torch.tensor([0, 0]), torch.tensor([1, 1])),
    ("label", torch.tensor([0, 0]), torch.tensor([-1, -1])),
    ("peak_flux", torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])),
    ("las_arcsec", torch.tensor([0.0, 0.0]), torch.tensor([math.nan, math.nan])),
])
def test_conditions_change_output(key, a, b):
    net = randomise_output(tiny()).eval()
    x, c_noise = inputs()
    with torch.no_grad():
        ya, yb = net(x, c_noise, {key: a}), net(x, c_noise, {key: b})
    assert (ya - yb).abs().amax(dim=(1, 2, 3)).min() > 1e-6  # every row changes


def test_noise_level_changes_output():
    net = randomise_output(tiny()).eval()
    x, c_noise = inputs()
    with torch.no_grad():
        assert not torch.allclose(net(x, c_noise), net(x, c_noise + 1))


def test_null_is_per_sample():
    net = randomise_output(tiny()).eval()
    x, c_noise = inputs()
    cond = {"label": torch.tensor([0, -1]), "peak_flux": torch.tensor([0.7, math.nan])}
    with torch.no_grad():
        both = net(x, c_noise, cond)
        row1 = net(x[1:], c_noise[1:], None)
        row0_uncond = net(x[:1], c_noise[:1], None)
    torch.testing.assert_close(both[1:], row1, rtol=1e-4, atol=1e-5)  # batch-size rounding
    assert not torch.allclose(both[:1], row0_uncond)


def test_gradient_reaches_every_parameter():
    net = randomise_output(tiny())
    x, c_noise = inputs()
    # Row 0 conditioned, row 1 null: both the embeddings and the null vectors get gradient.
    cond = {"label": torch.tensor([1, -1]), "peak_flux": torch.tensor([0.3, math.nan]),
            "las_arcsec": torch.tensor([math.nan, -0.4])}
    net(x, c_noise, cond).square().sum().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient for {dead}"


def test_published_size_parameter_count():
    net = build_unet(preset("unet_attn"), 80, num_classes=2, scalar_conditions=SCALARS)
    n = sum(p.numel() for p in net.parameters())
    assert 25e6 < n < 40e6, n


def test_attention_at_configured_resolutions():
    def sides(net):
        return sorted({m.resolution for m in net.modules() if isinstance(m, AttnBlock)})

    attn = build_unet(preset("unet_attn"), 80)
    assert sides(attn) == [20, 40]
    # 2 blocks per encoder level, 3 per decoder level, 1 in the middle at 20.
    assert sum(isinstance(m, AttnBlock) for m in attn.modules()) == 2 * (2 + 3) + 1
    assert sides(build_unet(preset("unet_small"), 80)) == [20]
    assert sides(tiny()) == [8]
    no_attn = OmegaConf.merge(preset("unet_tiny"), {"attn_resolutions": []})
    assert sides(build_unet(no_attn, 16)) == []


def test_bf16_autocast_forward_is_finite():
    net = randomise_output(tiny()).eval()
    x, c_noise = inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, c_noise, {"label": torch.tensor([0, -1]),
                               "peak_flux": torch.tensor([0.1, math.nan])})
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("change, message", [
    ({"attn_resolutions": [10]},
     r"attn_resolutions \[10\] not reached.*sides are \[16, 8\]"),
    ({"channel_mult": []}, r"channel_mult must list at least one"),
    ({"channel_mult": [1, 0]}, r"channel_mult entries must be >= 1"),
    ({"channel_mult": [1, 1, 1, 1, 1, 1]}, r"16 is not divisible by 32"),
    ({"num_blocks": 0}, r"num_blocks must be >= 1"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"num_heads": 3}, r"num_heads 3 does not divide"),
])
def test_build_unet_rejects_bad_configs(change, message):
    cfg = OmegaConf.merge(preset("unet_tiny"), change)
    with pytest.raises(ValueError, match=message):
        build_unet(cfg, 16)


def test_bad_conditions_rejected():
    net = tiny()
    x, c_noise = inputs()
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['peakflux'\]"):
        net(x, c_noise, {"peakflux": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"labels must be in \[-1, 1\]"):
        net(x, c_noise, {"label": torch.tensor([0, 2])})
    with pytest.raises(ValueError, match=r"takes no conditions"):
        build_unet(preset("unet_tiny"), 16)(x, c_noise, {"label": torch.tensor([0, 1])})


def test_drop_conditions():
    cond = {"label": torch.tensor([0, 1, 2, 1]), "peak_flux": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    kept = drop_conditions(cond, 0.0)
    assert kept is not cond and all(torch.equal(kept[k], v) for k, v in cond.items())
    dropped = drop_conditions(cond, 1.0)
    assert torch.equal(dropped["label"], torch.full((4,), -1))
    assert torch.isnan(dropped["peak_flux"]).all()
    g = torch.Generator().manual_seed(0)
    half = drop_conditions({k: v.repeat(250) for k, v in cond.items()}, 0.5, generator=g)
    null = half["label"] == -1
    assert torch.equal(null, torch.isnan(half["peak_flux"]))  # all conditions together
    assert 0.4 < null.float().mean() < 0.6
    assert drop_conditions(None, 0.5) is None
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        drop_conditions(cond, 1.5)
