"""The ground-floor seed rules (radiodiff.seeds): the one hash of seed words, the 63-bit
seed made of it and the generator of a seed; existing runs' streams pinned."""

import numpy as np
import pytest
import torch

from radiodiff.seeds import seed_generator, seed_state, word_seed


def _draw(g):
    return torch.randn(6, generator=g)


def test_seed_state_is_numpy_seed_sequence_and_a_prefix():
    words = np.random.SeedSequence([3, 1, 7]).generate_state(4, np.uint32)
    state = seed_state(3, 1, 7, n=4)
    assert state.dtype == np.uint32 and np.array_equal(state, words)
    assert np.array_equal(seed_state(3, 1, 7, n=1), words[:1])
    with pytest.raises(ValueError):
        seed_state(-1, 2)  # SeedSequence takes non-negative words only


def test_word_seed_is_the_uint64_state_shifted_by_one_bit():
    for words in [(0, 1, 0, 0), (7, 2, 3), (99, 1, 10**12, 5), (0,) * 6]:
        state = np.random.SeedSequence(list(words)).generate_state(1, np.uint64)
        assert word_seed(*words) == int(state[0]) >> 1
    # the seeds of existing runs' augmentation, shuffle and split streams
    assert [word_seed(0, 1, 0, 0), word_seed(7, 3)] == [2918264622725855778,
                                                         2530781778362038830]
    assert word_seed(-1, 2, 0) == word_seed(2**64 - 1, 2, 0) == 6429822722894581680
    assert 0 <= word_seed(2**63 + 5, 1, 2, 3) < 2**63


def test_seed_generator_one_word_is_the_seed_several_are_hashed():
    for seed in (0, 5, 2**40 + 3):
        assert torch.equal(_draw(seed_generator(seed)),
                           _draw(torch.Generator().manual_seed(seed)))
    assert torch.equal(_draw(seed_generator(7, 2, 3)),
                       _draw(torch.Generator().manual_seed(word_seed(7, 2, 3))))
    assert not torch.equal(_draw(seed_generator(7, 2, 3)), _draw(seed_generator(7, 2, 4)))
    g = seed_generator(4, 1, device="cpu")
    assert g.device.type == "cpu" and g.initial_seed() == word_seed(4, 1)
    with pytest.raises(ValueError, match="at least one"):
        seed_generator()
