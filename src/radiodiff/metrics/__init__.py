"""Pixel and shape statistics of images, their collection over batches, and distances.

See :mod:`radiodiff.metrics.moments` for definitions, units and conventions.
"""

from radiodiff.metrics.collect import StatsCollector, histogram_distance
from radiodiff.metrics.moments import (
    ALL_KEYS,
    PIXEL_KEYS,
    SHAPE_KEYS,
    all_stats,
    pixel_stats,
    shape_stats,
)

__all__ = [
    "ALL_KEYS", "PIXEL_KEYS", "SHAPE_KEYS", "pixel_stats", "shape_stats", "all_stats",
    "StatsCollector", "histogram_distance",
]
