"""A tiny untrained release folder (unet_tiny, 16 x 16) for sampling and evaluation tests."""

import numpy as np
import pytest
import torch

from radiodiff.config import load_config
from radiodiff.diffusion.conditions import ConditionTransform
from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.diffusion.unet import build_unet
from radiodiff.pipeline.release import export_release, load_release

# The io and pipeline tests' release (the fixtures below): conditioned on class, peak flux
# and LAS.
CLASSES = ["FRI", "FRII"]
SCALARS = ["peak_flux", "las_arcsec"]
SIZE, PIXEL_SCALE, BEAM, SIGMA_DATA = 16, 1.8, [5.0, 4.0], 0.3



def tiny_release(path, classes, size=16, busy=False, **extra_meta):
    """An untrained class-conditional release; ``busy``: random output-layer weights (its
    output depends on its input); ``extra_meta``: more meta keys."""
    config = load_config(["model=unet_tiny"])
    torch.manual_seed(0)
    net = build_unet(config.model, size, 1, len(classes), ())
    with torch.no_grad():  # the output layer starts at zero: give it something to say
        net.conv_out.bias.fill_(0.1)
        if busy:
            g = torch.Generator().manual_seed(1)
            net.conv_out.weight.copy_(torch.randn(net.conv_out.weight.shape, generator=g) * 0.1)
    meta = {"classes": classes, "scalar_conditions": [],
            "condition_transform": ConditionTransform.fit({}, ()).to_dict(),
            "sigma_data": 0.1, "image_size": size, "image_unit": "arbitrary",
            "pixel_scale_arcsec": 1.8, "beam_arcsec": [5.4, 5.4], "scaling": "per_image",
            "negatives": "clip", "data_sha256": "ab" * 32, "inputs_sha256": "i" * 64,
            "git_commit": "abc", "package_version": "0.1.0", "seed": 0, "images_seen": 64,
            "step": 2, **extra_meta}
    return export_release(path, EDMDenoiser(net, 0.1).eval(), config, meta)


# The faint-end refiner's model space in the tests: power 0.25, as the shipped refiner.
STRETCH = {"stretch": "power", "param": 0.25, "lo": 0.0, "hi": 1.0}


def refined_pair(root, classes, base_projection, refiner_projection, **refine):
    """A tiny base with a tiny refiner (in :data:`STRETCH` space) attached at
    ``root/paired`` (``refine``: attach_refiner's sigma, steps ...), loaded."""
    from radiodiff.pipeline.release import attach_refiner
    base = tiny_release(root / "base", classes, busy=True, projection=base_projection)
    refiner = tiny_release(root / "refiner", classes, busy=True, intensity=STRETCH,
                           projection=refiner_projection)
    return load_release(attach_refiner(base, refiner, root / "paired", **refine))


def train_table(n=40, seed=0, labels=None):
    """A training-condition table of ``n`` rows for :func:`tiny_physical_release`: labels
    0, 1, 0, 1 ... (or ``labels``); FRII (1) rows 10x brighter and 2x larger than FRI."""
    import numpy as np

    from radiodiff.diffusion.condition_table import ConditionTable

    rng = np.random.default_rng(seed)
    label = np.arange(n) % len(CLASSES) if labels is None else np.asarray(labels)
    peak = 10 ** (rng.normal(-2.5, 0.3, n) + label)
    las = 10 ** (rng.normal(1.3, 0.15, n) + 0.3 * label)
    return ConditionTable({"label": label.astype(np.int64), "peak_flux": peak,
                           "las_arcsec": las})


def tiny_physical_release(path, classes=CLASSES, size=SIZE, train_conditions=None,
                          busy=False, **extra_meta):
    """An untrained 16 x 16 release conditioned on class, peak flux (Jy/beam) and LAS
    (arcsec), with Jy/beam training images: generated images come back in Jy/beam.
    ``train_conditions``: its training rows' table; ``busy``: random output-layer weights
    (its output depends on the input and the conditions, so batched matrix products
    could show); ``extra_meta``: more meta keys."""
    import numpy as np

    config = load_config(["model=unet_tiny"])
    torch.manual_seed(0)
    net = build_unet(config.model, size, 1, len(classes), SCALARS)
    with torch.no_grad():
        net.conv_out.bias.fill_(0.1)
        if busy:
            g = torch.Generator().manual_seed(1)
            net.conv_out.weight.copy_(torch.randn(net.conv_out.weight.shape, generator=g) * 0.1)
    rng = np.random.default_rng(0)
    transform = ConditionTransform.fit({"peak_flux": 10 ** rng.normal(-2, 0.5, 50),
                                        "las_arcsec": 10 ** rng.normal(1.5, 0.3, 50)}, SCALARS)
    meta = {"classes": list(classes), "scalar_conditions": SCALARS,
            "condition_transform": transform.to_dict(), "sigma_data": SIGMA_DATA,
            "image_size": size, "image_unit": "Jy/beam", "pixel_scale_arcsec": PIXEL_SCALE,
            "beam_arcsec": BEAM, "scaling": "per_image", "negatives": "clip",
            "data_sha256": "d" * 64, "inputs_sha256": "i" * 64, "git_commit": "abc123",
            "package_version": "0.1.0", "seed": 0, "images_seen": 1000, "step": 10,
            **extra_meta}
    return export_release(path, EDMDenoiser(net, SIGMA_DATA).eval(), config, meta,
                          train_conditions=train_conditions)


# ---------------------------------------------------------------- fixtures of the io and
# pipeline tests (imported by tests/io/conftest.py and tests/pipeline/conftest.py)

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
