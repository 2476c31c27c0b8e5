"""Fixtures of the evaluation tests: a small CNN trained once on toy shapes."""

import pytest

from helpers.shapes import dataset

from radiodiff.evaluation.classifier import train_classifier


@pytest.fixture(scope="session")
def trained_cnn():
    """A classifier trained on 3 x 80 toy images (bar, double, blob), with a separate test
    set of 3 x 40: ``(model, (x_test, y_test))``."""
    x, y = dataset(80, seed=1)
    model = train_classifier(x, y, 3, epochs=12, seed=0)
    return model, dataset(40, seed=2)
