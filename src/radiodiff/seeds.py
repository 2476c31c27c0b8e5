"""Seed words -> random generators: the ground-floor rules every layer draws from.

One hash of seed words (:func:`seed_state`), the 63-bit seed made of it
(:func:`word_seed`), the ``torch.Generator`` of a seed (:func:`seed_generator`) and the
stream of the data's noise islands (:func:`island_rng`). They live below ``data`` and
``diffusion`` (both use them: the datamodule's augmentation and split streams, the
sampler's noise), so neither imports the other for them. The sampler's own streams
(churn, drawn conditions, initial noise) are built on these in
:mod:`radiodiff.diffusion.sampling`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["seed_state", "word_seed", "seed_generator", "ISLAND_STREAM", "island_rng"]


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


ISLAND_STREAM = 0x15_1A4D  # second seed word of an image's noise islands


def island_rng(seed: int) -> np.random.Generator:
    """Generator of the data's noise islands (:mod:`radiodiff.data.islands`) laid under the
    image of seed ``seed``: ``default_rng([seed, ISLAND_STREAM])``, independent of the
    image's diffusion noise, churn and conditions, and of the batch."""
    return np.random.default_rng([int(seed), ISLAND_STREAM])
