"""Seed words -> random generators: every named random stream of the package, on the ground floor.

One hash of seed words (:func:`seed_state`), the 63-bit seed made of it
(:func:`word_seed`) and the ``torch.Generator`` of a seed (:func:`seed_generator`); on
them, one named stream per purpose. Each rule lives here and nowhere else, so training,
sampling, the data's noise islands, evaluation and sky maps draw from the same module
without importing each other (this module imports only numpy and torch).

The streams (``seed`` is the seed of the stream's owner: an image, a run, an evaluation,
a sky map):

* images (image k of ``generate(seed=s)`` has seed ``s + k``, :func:`image_seeds`): the
  initial noise is ``seed_generator(seed)`` itself; :func:`churn_generator` (word
  :data:`CHURN_STREAM`), :func:`condition_rng` (:data:`CONDITION_STREAM`),
  :func:`refine_seed` (:data:`REFINE_STREAM`), :func:`island_rng` (:data:`ISLAND_STREAM`);
* training: the data's :func:`augment_generator`, :func:`shuffle_generator` and
  :func:`validation_split_rng` (:data:`AUGMENT_STREAM`, :data:`SHUFFLE_STREAM`,
  :data:`SPLIT_STREAM`), the loss noise :func:`step_generator` (:data:`STEP_STREAM`) and
  :func:`validation_step_generator`, the dropout masks' :func:`dropout_seed`
  (:data:`DROPOUT_STREAM`), the in-training samples' :func:`callback_sample_seed`;
* evaluation: :func:`real_vs_fake_pick_rng`, :func:`classifier_fold_seed`,
  :func:`matched_rng` (:data:`MATCHED_STREAM`), the class grids' :func:`class_pick_rng`;
* sky maps: :func:`sky_source_seed` and its sub-streams :func:`sky_draw_rng`,
  :func:`sky_pa_rng`, :func:`sky_image_seed`, :func:`sky_noise_rng`.

Every value is pinned: existing runs, releases and maps continue with these exact streams
(``tests/test_seeds.py``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = [
    "seed_state", "word_seed", "seed_generator",
    "image_seeds", "CHURN_STREAM", "churn_generator", "CONDITION_STREAM", "condition_rng",
    "REFINE_STREAM", "refine_seed", "ISLAND_STREAM", "island_rng",
    "AUGMENT_STREAM", "SHUFFLE_STREAM", "SPLIT_STREAM", "augment_generator",
    "shuffle_generator", "validation_split_rng", "STEP_STREAM", "step_generator",
    "DROPOUT_STREAM", "dropout_seed",
    "validation_step_generator", "CALLBACK_SEED_STRIDE", "callback_sample_seed",
    "real_vs_fake_pick_rng", "classifier_fold_seed", "MATCHED_STREAM", "matched_rng",
    "class_pick_rng",
    "SKY_DRAW_STREAM", "SKY_PA_STREAM", "SKY_IMAGE_STREAM", "SKY_NOISE_STREAM",
    "SKY_BLOCK_OFFSET", "sky_source_seed", "sky_draw_rng", "sky_pa_rng", "sky_image_seed",
    "sky_noise_rng",
]


# --------------------------------------------------------------------------- the hash

def seed_state(*words: int, n: int = 2) -> np.ndarray:
    """The one hash of seed words: ``n`` uint32 words of ``numpy.random.SeedSequence(words)``.

    Each word must be a non-negative integer (``SeedSequence``'s rule). The result is a
    prefix: ``seed_state(*w, n=1)`` is ``seed_state(*w, n=2)[:1]``.
    """
    return np.random.SeedSequence([int(w) for w in words]).generate_state(n, np.uint32)


def word_seed(*words: int) -> int:
    """A 63-bit seed hashed from integer words (each taken modulo 2**64, so any int works).

    The first two :func:`seed_state` words ``w0, w1`` as the uint64 ``w0 + 2**32 * w1``
    shifted right by one bit, ``(w1 << 31) | (w0 >> 1)``: a positive int that
    ``torch.Generator.manual_seed`` and ``numpy.random.default_rng`` both take.
    """
    w0, w1 = (int(w) for w in seed_state(*(int(w) % 2**64 for w in words), n=2))
    return w1 << 31 | w0 >> 1


def seed_generator(*words: int, device: Optional[torch.device | str] = None
                   ) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default: the CPU) seeded from ``words``.

    One word is the seed itself (``torch.Generator().manual_seed(seed)``); several words are
    hashed into one seed by :func:`word_seed`, so ``(seed, purpose, epoch, row)`` streams are
    independent of each other.
    """
    if not words:
        raise ValueError("seed_generator needs at least one seed word")
    g = torch.Generator(device=device) if device is not None else torch.Generator()
    g.manual_seed(int(words[0]) if len(words) == 1 else word_seed(*words))
    return g


# --------------------------------------------------------------------------- images

def image_seeds(seed: int, n: int) -> np.ndarray:
    """The seeds of ``n`` images drawn from ``seed``: image k has seed ``seed + k``
    (``numpy.arange(seed, seed + n)``, int64). An image's initial noise is
    ``seed_generator(seed + k)``; its other streams below hang off the same seed."""
    return np.arange(seed, seed + n, dtype=np.int64)


CHURN_STREAM = 1      # second seed word of an image's churn noise
CONDITION_STREAM = 2  # ... of its drawn conditions
REFINE_STREAM = 3     # ... of its refinement noise
ISLAND_STREAM = 0x15_1A4D  # ... of its noise islands


def churn_generator(seed: int) -> torch.Generator:
    """Churn stream: generator of the stochastic solver's churn noise for the image of seed
    ``seed`` (>= 0), seeded by the first :func:`seed_state` word of
    ``(seed, CHURN_STREAM)``, so the churn noise of image k, like its initial noise, does not
    depend on the batch."""
    return seed_generator(int(seed_state(seed, CHURN_STREAM, n=1)[0]))


def condition_rng(seed: int) -> np.random.Generator:
    """Condition stream: generator of the conditions drawn for the image of seed ``seed``
    (>= 0), ``default_rng(word_seed(seed, CONDITION_STREAM))``, so image k's drawn
    conditions, like its noise, depend on ``seed + k`` alone (not on the batch or the number
    of images)."""
    return np.random.default_rng(word_seed(seed, CONDITION_STREAM))


def refine_seed(seed: int) -> int:
    """Refinement stream: the seed of the refiner's noise for the image of seed ``seed``,
    ``word_seed(seed, REFINE_STREAM)``, so image k's refinement, like its initial noise,
    depends on its own seed alone (the noise is ``seed_generator`` of it)."""
    return word_seed(int(seed), REFINE_STREAM)


def island_rng(seed: int) -> np.random.Generator:
    """Island stream: generator of the data's noise islands (:mod:`radiodiff.data.islands`)
    laid under the image of seed ``seed``: ``default_rng([seed, ISLAND_STREAM])``,
    independent of the image's diffusion noise, churn and conditions, and of the batch."""
    return np.random.default_rng([int(seed), ISLAND_STREAM])


# --------------------------------------------------------------------------- training

# Purpose words mixed into the run seed, so the augmentation, the shuffle order and the
# random validation split are independent streams even though they share one user seed.
AUGMENT_STREAM, SHUFFLE_STREAM, SPLIT_STREAM = 1, 2, 3
STEP_STREAM = 7  # second seed word of the training loss noise
DROPOUT_STREAM = 8  # ... of the network's dropout masks
CALLBACK_SEED_STRIDE = 1_000_003  # in-training sample k of run seed s: s * stride + k


def augment_generator(seed: int, epoch: int, row: int) -> torch.Generator:
    """Augmentation stream: the flip/rot90 draw of file row ``row`` in ``epoch`` of a run of
    seed ``seed``, ``seed_generator(seed, AUGMENT_STREAM, epoch, row)``."""
    return seed_generator(seed, AUGMENT_STREAM, epoch, row)


def shuffle_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffle stream: the generator of epoch ``epoch``'s sample order of a run of seed
    ``seed``, ``seed_generator(seed, SHUFFLE_STREAM, epoch)``."""
    return seed_generator(seed, SHUFFLE_STREAM, epoch)


def validation_split_rng(seed: int) -> np.random.Generator:
    """Split stream: the generator of the random train/validation split of a run of seed
    ``seed`` (``data.loader.random_val_fraction``),
    ``default_rng(word_seed(seed, SPLIT_STREAM))``."""
    return np.random.default_rng(word_seed(seed, SPLIT_STREAM))


def step_generator(seed: int, step: int, rank: int, device: torch.device,
                   micro: int = 0) -> torch.Generator:
    """Training-noise stream: a generator that depends only on (seed, step, rank, micro),
    so a run resumes without RNG state; ``micro`` is the micro-batch within a step of
    gradient accumulation (each its own noise; 0 without accumulation).

    Packs two words of ``seed_state(seed, STEP_STREAM, step, rank)`` (``micro`` > 0: one
    more word) as ``(w0 << 31) | (w1 >> 1)``: runs resumed from existing checkpoints
    continue with this packing, not ``word_seed``'s.
    """
    words = (seed, STEP_STREAM, step, rank) + ((micro,) if micro else ())
    w0, w1 = (int(w) for w in seed_state(*words, n=2))
    return seed_generator(w0 << 31 | w1 >> 1, device=device)


def dropout_seed(seed: int, step: int, rank: int, micro: int = 0) -> int:
    """Dropout stream: the seed of torch's global generator for the training step ``step``
    (micro-batch ``micro``) on ``rank`` of a run of seed ``seed``,
    ``word_seed(seed, DROPOUT_STREAM, step, rank, micro)``: ``nn.Dropout`` draws from the
    global generator, so its masks, too, are a function of the step and a resumed run
    continues them exactly."""
    return word_seed(seed, DROPOUT_STREAM, step, rank, micro)


def validation_step_generator(seed: int, batch_idx: int, rank: int,
                              device: torch.device) -> torch.Generator:
    """Validation-noise stream: the loss noise of validation batch ``batch_idx`` on ``rank``
    of a run of seed ``seed``, the training stream of seed ``seed + 1``
    (``step_generator(seed + 1, batch_idx, rank, device)``): the same draws at every
    validation, so the validation loss is comparable across the run."""
    return step_generator(seed + 1, batch_idx, rank, device)


def callback_sample_seed(seed: int, k: int) -> int:
    """In-training sample stream: the noise seed of sample ``k`` of the sample-and-log
    callback of a run of seed ``seed``, ``seed * 1_000_003 + k``, whatever the number of
    ranks."""
    return seed * CALLBACK_SEED_STRIDE + int(k)


# --------------------------------------------------------------------------- evaluation

MATCHED_STREAM = 1  # second seed word of the matched (real vs generated) subsets


def real_vs_fake_pick_rng(seed: int) -> np.random.Generator:
    """Real-vs-fake pick stream: the generator of the equal-size real and generated picks
    handed to the real-vs-fake classifier by an evaluation of seed ``seed``,
    ``default_rng(seed + 1)`` (apart from the feature picks' ``default_rng(seed)``)."""
    return np.random.default_rng(seed + 1)


def classifier_fold_seed(seed: int, fold: int) -> int:
    """Fold stream: the training seed of the classifier of cross-validation fold ``fold`` of
    a two-sample test of seed ``seed``, ``seed + fold``."""
    return seed + fold


def matched_rng(seed: int) -> np.random.Generator:
    """Matched-subset stream: the generator of the random real and generated subsets whose
    distance is compared with the real-vs-real floor (itself ``default_rng(seed)``),
    ``default_rng([seed, MATCHED_STREAM])``."""
    return np.random.default_rng([seed, MATCHED_STREAM])


def class_pick_rng(seed: int, class_index: int) -> np.random.Generator:
    """Class-grid stream: the generator of the example rows of class ``class_index`` in the
    class grids of seed ``seed``, ``default_rng([seed, class_index])``, so one class's
    choice does not depend on the others."""
    return np.random.default_rng([seed, class_index])


# --------------------------------------------------------------------------- sky maps

# Sub-streams of a sky map's seed.
SKY_DRAW_STREAM, SKY_PA_STREAM, SKY_IMAGE_STREAM, SKY_NOISE_STREAM = 1, 2, 3, 4
SKY_BLOCK_OFFSET = 1 << 20  # noise block indices may be negative (margins): shifted by this


def sky_source_seed(seed: int, source_id: int, stream: int = 0) -> int:
    """The seed of source ``source_id`` (and sub-stream ``stream``) of a sky map of seed
    ``seed``: the first :func:`seed_state` word of ``(seed, source_id, stream)``."""
    return int(seed_state(seed, source_id, stream, n=1)[0])


def sky_draw_rng(seed: int) -> np.random.Generator:
    """Source-draw stream: the generator of a sky map's drawn sources (count, positions,
    fluxes), ``default_rng(sky_source_seed(seed, 0, SKY_DRAW_STREAM))``."""
    return np.random.default_rng(sky_source_seed(seed, 0, SKY_DRAW_STREAM))


def sky_pa_rng(seed: int, source_id: int) -> np.random.Generator:
    """Position-angle stream: the generator of source ``source_id``'s position angle,
    ``default_rng(sky_source_seed(seed, source_id, SKY_PA_STREAM))``."""
    return np.random.default_rng(sky_source_seed(seed, source_id, SKY_PA_STREAM))


def sky_image_seed(seed: int, source_id: int) -> int:
    """Source-image stream: the image seed of source ``source_id``'s generated cutout,
    ``sky_source_seed(seed, source_id, SKY_IMAGE_STREAM)``."""
    return sky_source_seed(seed, source_id, SKY_IMAGE_STREAM)


def sky_noise_rng(seed: int, by: int, bx: int) -> np.random.Generator:
    """Map-noise stream: the generator of the white noise of block ``(by, bx)`` (either may
    be negative) of a sky map of seed ``seed``: ``default_rng`` of the
    :func:`sky_source_seed` of block id ``(by + O) * 2O + bx + O`` (``O`` =
    :data:`SKY_BLOCK_OFFSET`) and :data:`SKY_NOISE_STREAM`."""
    o = SKY_BLOCK_OFFSET
    return np.random.default_rng(sky_source_seed(seed, (by + o) * (2 * o) + bx + o,
                                                 SKY_NOISE_STREAM))
