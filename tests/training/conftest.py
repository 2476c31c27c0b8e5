"""Fixtures of the training tests: the tiny prepared set, built once per module."""

import pytest

from radiodiff.config import load_config


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    from radiodiff.data.prepare import prepare
    out = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    prepare(load_config(["data=tiny"]), out=out)
    return out
