"""adapt_state: warm start between networks that differ only in their conditions."""

import pytest
import torch

from radiodiff.config import load_config
from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.diffusion.unet import build_unet
from radiodiff.training.fit import adapt_state

SOURCE_CLASSES = ["FRI", "FRII", "Compact", "Bent"]
TARGET_CLASSES = ["FRI", "FRII", "hybrid"]
SCALARS = ("peak_flux", "las_arcsec")


def _denoiser(classes, scalars=(), seed=0, **model):
    cfg = load_config(["model=unet_tiny", *[f"model.{k}={v}" for k, v in model.items()]])
    torch.manual_seed(seed)
    net = build_unet(cfg.model, 16, 1, len(classes), scalars)
    with torch.no_grad():  # a non-zero output layer, so outputs differ between conditions
        net.conv_out.weight.normal_(0, 0.1)
    return EDMDenoiser(net, 0.2).eval()


def test_classes_by_name_and_new_scalars_start_at_zero():
    src, dst = _denoiser(SOURCE_CLASSES, seed=1), _denoiser(TARGET_CLASSES, SCALARS, seed=2)
    state, notes = adapt_state(src.state_dict(), dst.state_dict(), SOURCE_CLASSES,
                               TARGET_CLASSES)
    dst.load_state_dict(state, strict=True)
    w_src, w_dst = src.net.map_label.weight, dst.net.map_label.weight
    assert torch.equal(w_dst[0], w_src[0]) and torch.equal(w_dst[1], w_src[1])   # FRI, FRII
    assert torch.equal(w_dst[2], w_src[-1]) and torch.equal(w_dst[3], w_src[-1])  # hybrid, null
    assert all(not v.any() for k, v in state.items() if "scalar" in k)
    assert any("hybrid" in n for n in notes)
    # step 0 computes what the release computed: any scalar value adds nothing yet
    x, sigma = torch.randn(3, 1, 16, 16), torch.tensor([0.05, 0.5, 3.0])
    label = torch.tensor([1, 0, -1])
    cond = {"label": label, "peak_flux": torch.tensor([0.3, -1.0, float("nan")]),
            "las_arcsec": torch.tensor([2.0, float("nan"), 0.0])}
    with torch.no_grad():
        assert torch.allclose(dst(x, sigma, cond), src(x, sigma, {"label": label}), atol=1e-6)
        hybrid = dst(x, sigma, {"label": torch.full((3,), 2)})
        null = src(x, sigma, {"label": torch.full((3,), -1)})
    assert torch.allclose(hybrid, null, atol=1e-6)


def test_same_conditions_copy_everything():
    src, dst = _denoiser(SOURCE_CLASSES, SCALARS, seed=1), _denoiser(SOURCE_CLASSES, SCALARS)
    state, notes = adapt_state(src.state_dict(), dst.state_dict(), SOURCE_CLASSES,
                               SOURCE_CLASSES)
    assert notes == []
    assert all(torch.equal(state[k], v) for k, v in src.state_dict().items())


def test_other_differences_are_refused():
    src = _denoiser(SOURCE_CLASSES)
    wider = _denoiser(TARGET_CLASSES, model_channels=24)
    with pytest.raises(ValueError, match="release .* model"):
        adapt_state(src.state_dict(), wider.state_dict(), SOURCE_CLASSES, TARGET_CLASSES)
    # a release with a scalar path this model lacks
    with pytest.raises(ValueError, match="not in this model"):
        adapt_state(_denoiser(SOURCE_CLASSES, SCALARS).state_dict(), src.state_dict(),
                    SOURCE_CLASSES, SOURCE_CLASSES)
    # a label table that does not match its class list
    with pytest.raises(ValueError, match="rows for classes"):
        adapt_state(src.state_dict(), _denoiser(TARGET_CLASSES).state_dict(),
                    SOURCE_CLASSES[:3], TARGET_CLASSES)
