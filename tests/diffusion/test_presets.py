"""Every model preset builds and runs at the image size of every data preset (issue: unet_tiny
at 80 px), and attention levels resolve to the same sides released models record."""

import pytest
import torch
from omegaconf import OmegaConf

from radiodiff.config import conf_dir, load_config
from radiodiff.diffusion.unet import AttnBlock, attention_sides, build_unet

MODELS = sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (conf_dir() / "data").glob("*.yaml"))
SIZES = sorted({int(load_config([f"data={d}"]).data.image_size) for d in DATA})
REPO = conf_dir().parent


def _sides(net):
    return sorted({m.resolution for m in net.modules() if isinstance(m, AttnBlock)},
                  reverse=True)


def test_the_data_presets_offer_16_and_80_px():
    assert MODELS == ["unet_attn", "unet_base", "unet_deep", "unet_small", "unet_tiny"]
    assert SIZES == [16, 80]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_preset_builds_and_runs_at_every_data_size(model, size):
    cfg = load_config([f"model={model}"])
    torch.manual_seed(0)
    net = build_unet(cfg.model, size, num_classes=4).eval()
    assert _sides(net) == net.attn_sides and net.attn_sides  # every preset has attention
    x = torch.randn(1, 1, size, size)
    with torch.no_grad():
        out = net(x, torch.zeros(1), {"label": torch.tensor([1])})
    assert out.shape == (1, 1, size, size) and torch.isfinite(out).all()


@pytest.mark.parametrize("model, size, sides", [
    ("unet_tiny", 16, [8]), ("unet_tiny", 80, [40]),
    ("unet_small", 16, [4]), ("unet_small", 80, [20]),
    ("unet_base", 80, [20]),
    ("unet_attn", 16, [8, 4]), ("unet_attn", 80, [40, 20]),
])
def test_presets_attend_at_their_lowest_levels(model, size, sides):
    cfg = load_config([f"model={model}"]).model
    assert attention_sides(size, len(cfg.channel_mult), cfg.attn_resolutions) == sides


def test_the_released_model_config_builds_the_same_network_as_its_preset():
    # models/first records the side ([20] at 80 px); the preset now says "lowest level"
    released = OmegaConf.load(REPO / "models" / "first" / "config.yaml")
    assert list(released.model.attn_resolutions) == [20]
    preset = load_config(["model=unet_small"]).model
    a = build_unet(released.model, 80, num_classes=4).state_dict()
    b = build_unet(preset, 80, num_classes=4).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]


def test_attention_sides_rule():
    assert attention_sides(80, 3, [20]) == [20]               # a side, as released
    assert attention_sides(80, 3, [-1, 20, 40]) == [40, 20]    # mixed, duplicates merged
    assert attention_sides(80, 3, []) == []
    with pytest.raises(ValueError, match=r"\[8\] not reached.*sides are \[80, 40, 20\]"):
        attention_sides(80, 3, [8])
    with pytest.raises(ValueError, match=r"\[-4\]: only 3 levels.*sides are \[16, 8, 4\]"):
        attention_sides(16, 3, [-4])
    with pytest.raises(ValueError, match=r"\[0\] not reached"):
        attention_sides(16, 3, [0])
    with pytest.raises(ValueError, match=r"\[8\] not reached.*\[80, 40\].*channel_mult"):
        build_unet(load_config(["model=unet_tiny", "model.attn_resolutions=[8]"]).model, 80)
