"""One factory: network arguments are plain data, and the same arguments build the same net."""

import json

import torch

from radiodiff.config import load_config
from radiodiff.diffusion.factory import build_denoiser, network_args


def test_arguments_are_plain_and_rebuild_an_identical_denoiser():
    cfg = load_config(["model=unet_tiny"])
    args = network_args(cfg.model, 16, num_classes=2, scalar_conditions=["peak_flux"])
    assert json.loads(json.dumps(args)) == args            # stored in JSON / checkpoints
    assert "name" not in args and "label_dropout" not in args
    torch.manual_seed(0)
    a = build_denoiser(args, 0.3)
    b = build_denoiser(json.loads(json.dumps(args)), 0.3)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 16, 16)
    cond = {"label": torch.tensor([0, 1]), "peak_flux": torch.tensor([0.1, -0.2])}
    torch.testing.assert_close(a(x, 0.5, cond), b(x, 0.5, cond))
    assert float(a.sigma_data) == 0.3
