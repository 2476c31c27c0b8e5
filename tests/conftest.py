"""Shared fixtures. Survey data from ../shared/data come through RADIODIFF_SHARED_DATA
(set by `.ci/run` and the Makefile) or ``--shared-data``; tests needing them skip otherwise."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("WANDB_MODE", "offline")


def pytest_addoption(parser):
    parser.addoption("--shared-data", default=None,
                     help="folder holding mirabest/ and mirabest_raw/ (else $RADIODIFF_SHARED_DATA)")


@pytest.fixture(scope="session")
def shared_data(request) -> Path:
    value = request.config.getoption("--shared-data") or os.environ.get("RADIODIFF_SHARED_DATA")
    if not value:
        pytest.skip("shared survey data not configured: set RADIODIFF_SHARED_DATA or "
                    "--shared-data (`.ci/run` and `make test` do when ../shared/data exists)")
    path = Path(value)
    if not (path / "mirabest" / "catalog.csv").is_file():
        pytest.skip(f"shared survey data not found at {path} (no mirabest/catalog.csv)")
    return path
