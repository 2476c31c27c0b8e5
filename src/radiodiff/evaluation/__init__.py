"""Metrics of image sets: pixel, moment and segmentation statistics, distances with noise
floors, source-finder statistics (PyBDSF) and classifier-based tests.

See :mod:`radiodiff.evaluation.moments` for the moment definitions, units and conventions;
:mod:`radiodiff.evaluation.sourcefind` and the classifier-based tests
(:mod:`~radiodiff.evaluation.classifier`, :mod:`~radiodiff.evaluation.two_sample`,
:mod:`~radiodiff.evaluation.feature_distances`, :mod:`~radiodiff.evaluation.memorisation`)
are imported on demand (they pull in PyBDSF and train networks).
"""

from radiodiff.evaluation.collect import StatsCollector, histogram_distance
from radiodiff.evaluation.distances import (
    binned_relative_difference, cdf_distance, compare, ks_statistic, noise_floor, wasserstein1,
)
from radiodiff.evaluation.moments import (
    ALL_KEYS,
    PIXEL_KEYS,
    SHAPE_KEYS,
    all_stats,
    pixel_stats,
    shape_stats,
)
from radiodiff.evaluation.segmentation import SEGMENT_KEYS, pixel_bin_stats, segment_stats

__all__ = [
    "ALL_KEYS", "PIXEL_KEYS", "SHAPE_KEYS", "SEGMENT_KEYS", "pixel_stats", "shape_stats",
    "all_stats", "segment_stats", "pixel_bin_stats", "StatsCollector", "histogram_distance",
    "wasserstein1", "ks_statistic", "binned_relative_difference", "cdf_distance",
    "noise_floor", "compare",
]
