"""The one cache key of results computed from images (``radiodiff.io.integrity.content_digest``)."""

import numpy as np

from radiodiff.io.integrity import content_digest


def test_digest_follows_settings_and_every_pixel_but_not_memory_layout():
    images = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    labels = np.array([0, 1, 2], np.int64)
    key = content_digest([1, "x", list(images.shape)], images, labels)
    assert len(key) == 64 and key == content_digest([1, "x", [3, 8, 8]], images, labels)
    assert content_digest([1, "x", [3, 8, 8]], np.asfortranarray(images), labels) == key
    assert content_digest([2, "x", [3, 8, 8]], images, labels) != key
    flipped = images.copy()
    flipped[2, 7, 7] += 1e-6
    assert content_digest([1, "x", [3, 8, 8]], flipped, labels) != key
    assert content_digest([1, "x", [3, 8, 8]], images, labels[::-1]) != key
