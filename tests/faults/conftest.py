"""Fixtures of the fault tests: a tiny release, a minimal training checkpoint, and a guard
that no sampling starts before the output is checked."""

import pytest
import torch
from omegaconf import OmegaConf

from helpers.outputs import CLASSES
from helpers.releases import tiny_release


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_release(tmp_path_factory.mktemp("rel") / "tiny", CLASSES)


@pytest.fixture
def release_copy(tiny, tmp_path):
    """A copy of the tiny release at ``tmp_path/rel``, to write onto."""
    target = tmp_path / "rel"
    target.mkdir()
    for f in tiny.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A minimal training checkpoint (the layout export_checkpoint reads), 16 x 16 unet_tiny."""
    from radiodiff.config import load_config
    from radiodiff.diffusion.conditions import ConditionTransform
    from radiodiff.diffusion.factory import build_denoiser, network_args

    cfg = load_config(["model=unet_tiny", "data.image_size=16"])
    args = network_args(cfg.model, 16, len(CLASSES), [])
    torch.manual_seed(0)
    denoiser = build_denoiser(args, 0.1)
    hp = {"cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
          "num_classes": len(CLASSES),
          "scalar_conditions": [], "transform": ConditionTransform.fit({}, ()).to_dict(),
          "sigma_data": 0.1, "model_args": args, "intensity": None,
          "dataset": {"classes": CLASSES, "pixel_scale_arcsec": 1.8,
                      "beam_arcsec": [5.4, 5.4],
                      # recorded by a run whose data.projection_floor is "data" (data=first)
                      "projection_floor_max": 8e-4}}
    state = {f"ema.{k}": v for k, v in denoiser.state_dict().items()}
    path = tmp_path_factory.mktemp("run") / "last.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": state, "global_step": 7,
                "images_seen": 448}, path)
    return path


@pytest.fixture
def no_compute(monkeypatch):
    """Any sampling is an error: checks must come first."""
    import radiodiff.pipeline.generate as gen

    def refuse(*a, **k):
        raise AssertionError("sampling started before the output was checked")
    monkeypatch.setattr(gen, "generate", refuse)
