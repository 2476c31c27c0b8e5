"""Fixtures of the io tests: a tiny 16x16 release conditioned on class, peak flux and LAS."""

import numpy as np
import pytest
import torch

from helpers.releases import BEAM, CLASSES, PIXEL_SCALE, SCALARS, SIGMA_DATA, SIZE
from radiodiff.config import load_config
from radiodiff.diffusion.conditions import ConditionTransform
from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.diffusion.unet import build_unet
from radiodiff.io.release import export_release, load_release


@pytest.fixture(scope="module")
def config():
    return load_config(["model=unet_tiny"])


@pytest.fixture(scope="module")
def denoiser(config):
    """Untrained tiny U-Net whose (zero-initialised) output layer is randomised."""
    torch.manual_seed(0)
    net = build_unet(config.model, SIZE, 1, len(CLASSES), SCALARS)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        net.conv_out.weight.copy_(torch.randn(net.conv_out.weight.shape, generator=g) * 0.1)
        net.conv_out.bias.fill_(0.05)
    return EDMDenoiser(net, SIGMA_DATA).eval()


@pytest.fixture(scope="module")
def transform():
    rng = np.random.default_rng(0)
    return ConditionTransform.fit({"peak_flux": 10 ** rng.normal(-2, 0.5, 50),
                                   "las_arcsec": 10 ** rng.normal(1.5, 0.3, 50)}, SCALARS)


@pytest.fixture(scope="module")
def meta(transform):
    return {"classes": CLASSES, "scalar_conditions": SCALARS,
            "condition_transform": transform.to_dict(), "sigma_data": SIGMA_DATA,
            "image_size": SIZE, "image_unit": "Jy/beam", "pixel_scale_arcsec": PIXEL_SCALE,
            "beam_arcsec": BEAM, "scaling": "per_image", "negatives": "clip",
            "data_sha256": "d" * 64, "inputs_sha256": "i" * 64, "git_commit": "abc123",
            "package_version": "0.1.0", "seed": 0, "images_seen": 1000, "step": 10}


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory, denoiser, config, meta):
    return export_release(tmp_path_factory.mktemp("rel") / "tiny", denoiser, config, meta)


@pytest.fixture(scope="module")
def release(release_dir):
    return load_release(release_dir)
