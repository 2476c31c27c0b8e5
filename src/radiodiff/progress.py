"""Progress of long steps at the command-line edge: a bar on a terminal, short lines else.

Library functions take ``progress(iterable, total)``; :func:`progress_bar` makes one. When
the stream is not a terminal (a log file, a pipe) a redrawn bar would fill it with carriage
returns, so it prints one line every ~10 % instead: ``sampled 60/200 images (30 %) 41 s``.
Sampling counts images: a loop over batches tells it each batch's images
(:func:`chunked`), and loops run one after another share one count (:func:`joined`).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TextIO

__all__ = ["progress_bar", "progress_lines", "chunked", "joined"]

Progress = Optional[Callable[[Iterable, int], Iterable]]


def progress_bar(desc: str, unit: str = "it", stream: Optional[TextIO] = None
                 ) -> Callable[[Iterable, int], Iterable]:
    """``progress(iterable, total)``: tqdm on a terminal, else :func:`progress_lines`
    (``stream`` default: ``sys.stderr`` at the time of the call)."""
    def wrap(iterable: Iterable, total: int) -> Iterable:
        out = stream or sys.stderr
        if getattr(out, "isatty", lambda: False)():
            from tqdm.auto import tqdm
            return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                        file=out)
        return progress_lines(iterable, total, desc, unit, out)
    return wrap


def progress_lines(iterable: Iterable, total: int, desc: str, unit: str, stream: TextIO,
                   fraction: float = 0.1) -> Iterator:
    """Yield from ``iterable``; after each ``fraction`` of ``total`` items (and the last)
    are done, print ``desc k/total unit (p %) t s``."""
    every = max(1, math.ceil(total * fraction)) if total > 0 else 1
    t0 = time.perf_counter()
    for k, item in enumerate(iterable, 1):
        yield item  # item k is done when the next one is asked for
        if k % every == 0 or k == total:
            percent = f" ({100 * k // total} %)" if total > 0 else ""
            print(f"{desc} {k}/{total} {unit}{percent} {time.perf_counter() - t0:.0f} s",
                  file=stream, flush=True)


def chunked(progress: Progress, total: int) -> Callable[[int], None]:
    """``advance(k)``: ``k`` more of ``total`` items are done, told to ``progress`` (None:
    told to nothing); for a loop whose items are done in chunks (images in batches).

    ``progress(range(total), total)`` is stepped on: an item counts as done when the next
    one is asked for, so item 0 is asked for now and each ``advance`` asks for ``k`` more.
    """
    if progress is None:
        return lambda k: None
    ticks = iter(progress(range(total), total))
    next(ticks, None)

    def advance(k: int) -> None:
        for _ in range(k):
            next(ticks, None)
    return advance


def joined(progress: Progress, total: int) -> Progress:
    """One count of ``total`` items over loops run one after another (images sampled class
    by class): a ``progress(iterable, n)`` whose every loop advances the one ``progress``."""
    if progress is None:
        return None
    advance = chunked(progress, total)

    def wrap(iterable: Iterable, n: int) -> Iterator:
        for item in iterable:
            yield item
            advance(1)  # done: the next one is asked for
    return wrap


def announce(step: str, stream: Optional[TextIO] = None) -> None:
    """One line at the start of a long step without a loop to count (``evaluation: …``)."""
    print(step, file=stream or sys.stderr, flush=True)
