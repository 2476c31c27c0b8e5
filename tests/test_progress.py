"""Progress at the command-line edge: one line per ~10 % when the stream is not a terminal."""

import io

from radiodiff.progress import chunked, joined, progress_bar


def test_piped_progress_prints_a_line_per_tenth():
    stream = io.StringIO()  # not a terminal
    wrap = progress_bar("sampled", "images", stream=stream)
    assert list(wrap(range(200), 200)) == list(range(200))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[0].startswith("sampled 20/200 images (10 %) ") and lines[0].endswith(" s")
    assert lines[-1].startswith("sampled 200/200 images (100 %) ")


def test_short_loops_print_every_item_and_the_last():
    stream = io.StringIO()
    list(progress_bar("PyBDSF", "images", stream=stream)(iter("abc"), 3))
    assert [line.split(" (")[0] for line in stream.getvalue().splitlines()] == [
        "PyBDSF 1/3 images", "PyBDSF 2/3 images", "PyBDSF 3/3 images"]
    stream = io.StringIO()
    list(progress_bar("x", stream=stream)(range(25), 25))  # every 3: 3, 6, ..., 24, 25
    assert len(stream.getvalue().splitlines()) == 9


def test_a_terminal_gets_a_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    assert list(progress_bar("sampled", "batches", stream=stream)(range(3), 3)) == [0, 1, 2]
    assert "\r" in stream.getvalue() and "3/3" in stream.getvalue()


def test_images_done_in_batches_are_counted_as_images():
    stream = io.StringIO()
    advance = chunked(progress_bar("sampled", "images", stream=stream), 7)
    assert stream.getvalue() == ""  # nothing done yet
    advance(3)
    assert [line.split(" (")[0] for line in stream.getvalue().splitlines()] == [
        "sampled 1/7 images", "sampled 2/7 images", "sampled 3/7 images"]
    advance(3)
    advance(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 7 and lines[-1].startswith("sampled 7/7 images (100 %) ")
    chunked(None, 7)(7)  # no progress: nothing told


def test_loops_one_after_another_share_one_count():
    stream = io.StringIO()
    wrap = joined(progress_bar("sampled", "images", stream=stream), 5)
    assert list(wrap(iter("ab"), 2)) == ["a", "b"]  # class 1: 2 images, then class 2: 3
    assert list(wrap(iter("cde"), 3)) == ["c", "d", "e"]
    assert [line.split(" (")[0] for line in stream.getvalue().splitlines()] == [
        f"sampled {k}/5 images" for k in range(1, 6)]
    assert joined(None, 5) is None
