"""Fixtures of the skymap tests: tiny releases (one physical, one shape-only) and a grid."""

import pytest

from helpers.releases import tiny_physical_release, tiny_release
from radiodiff.pipeline.release import load_release
from radiodiff.skymap.sky import Beam, make_grid


@pytest.fixture(scope="session")
def physical_release_dir(tmp_path_factory):
    return tiny_physical_release(tmp_path_factory.mktemp("rel") / "phys")


@pytest.fixture(scope="session")
def physical_release(physical_release_dir):
    return load_release(physical_release_dir)


@pytest.fixture(scope="session")
def busy_release_dir(tmp_path_factory):
    """The physical release with a random output layer (its images depend on the network)."""
    return tiny_physical_release(tmp_path_factory.mktemp("rel") / "busy", busy=True)


@pytest.fixture(scope="session")
def shape_release_dir(tmp_path_factory):
    return tiny_release(tmp_path_factory.mktemp("rel") / "shape", ["FRI", "FRII"])


@pytest.fixture
def grid():
    """FIRST-like: 1.8" pixels, 5.4" beam, 0.1 x 0.1 deg (200 x 200 px), SIN."""
    return make_grid(150.0, 30.0, [0.1, 0.1], 1.8, Beam(5.4, 5.4))
