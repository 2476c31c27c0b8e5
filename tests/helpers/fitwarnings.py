"""Lightning warnings that tiny CPU fits raise by design (no workers, short epochs)."""

import pytest

TINY_FIT_WARNINGS = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*on_train_batch_end.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*The number of training batches.*:UserWarning"),
]
