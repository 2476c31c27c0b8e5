"""The ground-floor seed rules (radiodiff.seeds): the one hash of seed words, the 63-bit
seed made of it, the generator of a seed and every named stream; existing runs', releases'
and maps' streams pinned to the rules they had before they moved here (the expected values
are the old formulas written out, and literals computed from them)."""

import numpy as np
import pytest
import torch

from radiodiff.seeds import (augment_generator, callback_sample_seed, churn_generator,
                             class_pick_rng, classifier_fold_seed, condition_rng, image_seeds,
                             island_rng, matched_rng, real_vs_fake_pick_rng, refine_seed,
                             seed_generator, seed_state, shuffle_generator, sky_draw_rng,
                             sky_image_seed, sky_noise_rng, sky_pa_rng, sky_source_seed,
                             step_generator, validation_split_rng, validation_step_generator,
                             word_seed)


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


# --------------------------------------------------------------------------- helpers

def _same_torch(g, seed):
    """``g`` is exactly ``torch.Generator().manual_seed(seed)``: same seed, same state."""
    expected = torch.Generator().manual_seed(seed)
    return g.initial_seed() == seed and torch.equal(g.get_state(), expected.get_state())


def _same_numpy(rng, seed_material):
    """``rng`` is exactly ``numpy.random.default_rng(seed_material)``."""
    return rng.bit_generator.state == np.random.default_rng(seed_material).bit_generator.state


def _first_word(*words):
    """The old rules' ``int(SeedSequence(words).generate_state(1, np.uint32)[0])``."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint32)[0])


def _uint64_half(*words):
    """The old ``word_seed``: the first uint64 state word of the words, shifted right by 1."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0]) >> 1


def _packed(*words):
    """The old ``training.module.step_generator`` packing ``w0 << 31 | w1 >> 1``."""
    w = np.random.SeedSequence(list(words)).generate_state(2, np.uint32)
    return int(w[0]) << 31 | int(w[1]) >> 1


# --------------------------------------------------------------------------- images

def test_image_seeds_are_seed_plus_k_int64():
    # old pipeline.generate._image_seeds: np.arange(seed, seed + n, dtype=np.int64)
    seeds = image_seeds(5, 3)
    assert seeds.dtype == np.int64 and seeds.tolist() == [5, 6, 7]
    assert image_seeds(2**62, 2).tolist() == [2**62, 2**62 + 1]
    assert image_seeds(9, 0).tolist() == []


def test_churn_generator_is_the_first_state_word_of_seed_and_1():
    # old diffusion.sampling.churn_generator: seed_generator(int(seed_state(seed, 1, n=1)[0]))
    for seed, first in ((0, 3964924996), (7, 369571992), (2**31 + 1, 3566339117)):
        assert _first_word(seed, 1) == first
        assert _same_torch(churn_generator(seed), first)


def test_condition_rng_is_default_rng_of_word_seed_of_seed_and_2():
    # old diffusion.sampling.condition_rng: np.random.default_rng(word_seed(seed, 2))
    for seed, value in ((0, 8597659618385908031), (7, 9139555415570476218)):
        assert _uint64_half(seed, 2) == value
        assert _same_numpy(condition_rng(seed), value)
    assert condition_rng(7).integers(1000) == np.random.default_rng(9139555415570476218) \
        .integers(1000)


def test_refine_seed_is_word_seed_of_seed_and_3():
    # old pipeline.refine.refine_seeds: [word_seed(int(s), 3) for s in seeds]
    for seed, value in ((0, 3291213472928352369), (7, 2530781778362038830),
                        (2**62, 382501417118290029)):
        assert _uint64_half(seed, 3) == value
        assert refine_seed(seed) == value
    assert refine_seed(np.int64(7)) == 2530781778362038830
    assert type(refine_seed(np.int64(7))) is int


def test_island_rng_is_default_rng_of_seed_and_the_island_word():
    for seed in (0, 3, 2**40):
        assert _same_numpy(island_rng(seed), [seed, 0x15_1A4D])


# --------------------------------------------------------------------------- training

def test_data_streams_are_seed_generator_of_the_purpose_words():
    # old data.datamodule: seed_generator(seed, 1, epoch, row), seed_generator(seed, 2, epoch),
    # np.random.default_rng(word_seed(seed, 3))
    assert _uint64_half(0, 1, 0, 0) == 2918264622725855778
    assert _same_torch(augment_generator(0, 0, 0), 2918264622725855778)
    assert _same_torch(augment_generator(5, 2, 17), 535923834780919707)
    assert _same_torch(shuffle_generator(0, 0), 8597659618385908031)
    assert _same_torch(shuffle_generator(5, 3), 7935110420765620783)
    assert _uint64_half(5, 2, 3) == 7935110420765620783
    assert _same_numpy(validation_split_rng(7), 2530781778362038830)
    assert _same_numpy(validation_split_rng(0), 3291213472928352369)
    assert np.array_equal(validation_split_rng(7).permutation(10),
                          np.random.default_rng(2530781778362038830).permutation(10))


def test_step_generator_packs_two_words_of_seed_7_step_rank():
    # old training.module.step_generator (resumed runs continue only while this holds)
    for (seed, step, rank), value in (((0, 0, 0), 2941620407015366315),
                                      ((123, 999, 3), 1219286823095573650)):
        assert _packed(seed, 7, step, rank) == value
        g = step_generator(seed, step, rank, torch.device("cpu"))
        assert g.device.type == "cpu" and _same_torch(g, value)


def test_validation_step_generator_is_the_step_stream_of_seed_plus_1():
    # old DiffusionModule.validation_step: step_generator(self.seed + 1, batch_idx, rank, dev)
    for (seed, batch_idx, rank), value in (((0, 0, 0), 9116529152593677004),
                                           ((123, 5, 1), 1084351027241588046)):
        assert _packed(seed + 1, 7, batch_idx, rank) == value
        g = validation_step_generator(seed, batch_idx, rank, torch.device("cpu"))
        assert _same_torch(g, value)


def test_callback_sample_seed_is_seed_times_1000003_plus_k():
    # old training.callbacks.SampleCallback.sample: self.seed * 1_000_003 + int(k)
    assert callback_sample_seed(0, 0) == 0
    assert callback_sample_seed(0, 7) == 7
    assert callback_sample_seed(3, 5) == 3_000_014
    assert callback_sample_seed(2, np.int64(4)) == 2_000_010
    assert type(callback_sample_seed(2, np.int64(4))) is int
    assert [callback_sample_seed(1, k) for k in np.arange(3)] == [1_000_003, 1_000_004,
                                                                   1_000_005]


# --------------------------------------------------------------------------- evaluation

def test_evaluation_streams():
    # old evaluation.metrics._real_vs_fake: np.random.default_rng(s.seed + 1)
    assert _same_numpy(real_vs_fake_pick_rng(0), 1)
    assert _same_numpy(real_vs_fake_pick_rng(41), 42)
    # old evaluation.two_sample.real_vs_fake: train_classifier(..., seed=seed + f)
    assert [classifier_fold_seed(10, f) for f in range(3)] == [10, 11, 12]
    # old evaluation.distances._matched / physical.histogram_comparison:
    # np.random.default_rng([seed, 1])
    for seed in (0, 7):
        assert _same_numpy(matched_rng(seed), [seed, 1])
    # old data.summary._choose: np.random.default_rng([seed, k])
    assert _same_numpy(class_pick_rng(3, 0), [3, 0])
    assert _same_numpy(class_pick_rng(3, 2), [3, 2])


# --------------------------------------------------------------------------- sky maps

def test_sky_source_seed_is_the_first_state_word_of_seed_id_stream():
    # old skymap.sources.source_seed:
    # int(SeedSequence([int(seed), int(source_id), int(stream)]).generate_state(1, uint32)[0])
    for words, value in (((9, 2, 0), 302313366), ((9, 2, 2), 3974578409),
                         ((0, 0, 3), 198478470), ((4, 0, 1), 2290771359)):
        assert _first_word(*words) == value
        assert sky_source_seed(*words) == value
    assert sky_source_seed(9, 2) == 302313366  # stream 0 by default
    assert sky_source_seed(np.int64(9), np.int64(2), 2) == 3974578409
    assert type(sky_source_seed(9, 2)) is int


def test_sky_streams_are_their_old_sub_streams():
    # old skymap.sources: draw default_rng(source_seed(seed, 0, 1)); PA
    # default_rng(source_seed(seed, id, 2)); old skymap.render: image seed
    # source_seed(seed, id, 3)
    assert _same_numpy(sky_draw_rng(4), 2290771359)
    assert _same_numpy(sky_pa_rng(9, 2), 3974578409)
    assert _same_numpy(sky_pa_rng(9, np.int64(2)), 3974578409)
    assert sky_image_seed(0, 0) == 198478470
    assert sky_image_seed(5, 11) == _first_word(5, 11, 3)


def test_sky_noise_rng_is_the_block_seed_of_stream_4():
    # old skymap.noise.white_noise: default_rng(source_seed(seed,
    # (by + 2**20) * 2**21 + bx + 2**20, 4))
    o = 1 << 20
    assert _first_word(4, (-1 + o) * (2 * o) + 2 + o, 4) == 863185691
    assert _same_numpy(sky_noise_rng(4, -1, 2), 863185691)
    assert _first_word(0, o * (2 * o) + o, 4) == 4019259186
    assert _same_numpy(sky_noise_rng(0, 0, 0), 4019259186)
    for by, bx in ((3, -2), (-5, -5)):
        assert _same_numpy(sky_noise_rng(7, by, bx),
                           _first_word(7, (by + o) * (2 * o) + bx + o, 4))
