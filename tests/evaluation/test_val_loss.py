"""Fixed-noise validation loss of a release (radiodiff.evaluation.val_loss)."""

import numpy as np
import pytest

from helpers import synth
from helpers.releases import tiny_release
from radiodiff.evaluation.val_loss import SIGMAS, val_loss


def test_val_loss_is_seeded_per_level_and_tells_a_network_from_another(tmp_path):
    data = synth.write_blob_set(tmp_path / "set.h5")
    calm = tiny_release(tmp_path / "calm", ["blob", "double"])
    busy = tiny_release(tmp_path / "busy", ["blob", "double"], busy=True)
    a = val_loss(str(calm), data)
    assert len(a) == len(SIGMAS) and np.isfinite(a).all() and min(a) > 0
    assert val_loss(str(calm), data) == a                     # the same noise every time
    assert val_loss(str(busy), data) != a
    assert val_loss(str(calm), data, "test") != a
    with pytest.raises(ValueError, match="no rows in split 'nope'"):
        val_loss(str(calm), data, "nope")
