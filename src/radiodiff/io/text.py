"""Text inputs (catalogue CSVs): one rule for their encoding and line endings.

Catalogues come from spreadsheets and other people's scripts: UTF-8 with a byte-order mark
(Excel's "CSV UTF-8"), UTF-16, Latin-1 / Windows code pages, CRLF or CR line endings,
gzip. :func:`read_text` turns any of them into text and :func:`read_csv_table` into an
astropy table, so a byte-order mark never becomes part of the first column's name.
"""

from __future__ import annotations

import codecs
import gzip
from pathlib import Path

__all__ = ["read_text", "read_csv_table"]


def read_text(path: str | Path) -> str:
    """The text of ``path`` (gzip-decompressed when its name ends in ``.gz``).

    Decoded as UTF-8 (a byte-order mark dropped), as UTF-16 when it starts with a UTF-16
    byte-order mark, else as Latin-1, where every byte is one character: a file exported in
    a Western code page reads, its non-ASCII names kept byte for byte. Line endings (LF,
    CRLF, CR) are left to the caller (``str.splitlines`` takes them all).
    """
    path = Path(path)
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_csv_table(path: str | Path):
    """An astropy ``Table`` from the CSV file ``path`` (:func:`read_text`'s decoding, any
    line endings).

    Raises
    ------
    ValueError
        The file holds no text (empty or blank), or astropy cannot parse it.
    """
    from astropy.table import Table

    lines = read_text(path).splitlines()
    if not any(line.strip() for line in lines):
        raise ValueError("the file is empty: no header line, no rows")
    return Table.read(lines, format="ascii.csv")
