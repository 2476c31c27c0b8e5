"""The input checks of the classifier-based tests: one error per kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radiodiff.evaluation.inputs import (
    as_features,
    as_images,
    as_labels,
    check_num_classes,
    check_positive_int,
)


def test_as_images_adds_the_channel_axis_and_casts():
    x = as_images(np.ones((2, 4, 4), dtype=np.uint8))
    assert x.shape == (2, 1, 4, 4) and x.dtype == torch.float32
    assert torch.equal(as_images(torch.ones(2, 1, 4, 4, dtype=torch.float64)), x)


def test_as_features_and_labels():
    f = as_features(torch.ones(3, 2), "f")
    assert f.dtype == np.float64 and f.shape == (3, 2)
    y = as_labels([0.0, 2.0, 1.0], 3, 3)
    assert y.dtype == torch.int64 and y.tolist() == [0, 2, 1]


def test_bad_inputs_name_the_input():
    with pytest.raises(TypeError, match="real images must be a numpy array or torch tensor"):
        as_images([[0.0]], "real images")
    with pytest.raises(ValueError, match=r"must have shape \(N, 1, H, W\) or \(N, H, W\)"):
        as_images(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="images is empty"):
        as_images(np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match="NaN or infinite pixel values"):
        as_images(np.full((1, 4, 4), np.inf))
    with pytest.raises(ValueError, match=r"feat must have shape \(N, D\)"):
        as_features(np.zeros(3), "feat")
    with pytest.raises(ValueError, match="labels must be integers"):
        as_labels([0.5, 1.0], 2, 3)
    with pytest.raises(ValueError, match="labels must be integers, got dtype torch.bool"):
        as_labels(np.array([True, False]), 2, 3)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        check_num_classes(1)
    with pytest.raises(ValueError, match="k must be an integer >= 2, got True"):
        check_positive_int(True, "k", minimum=2)
