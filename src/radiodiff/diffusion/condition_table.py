"""The training rows' conditions: the joint distribution that unset conditions are drawn from.

A :class:`ConditionTable` holds, for each training row whose conditions are all known, the
class index (``label``, when the model takes a class) and the scalar conditions the model
takes in physical units (``peak_flux`` in Jy/beam, ``las_arcsec`` in arcsec). It travels
as a small CSV text (a header line, then one row per training image; floats written with
``repr`` so every value reads back exactly): in the checkpoint's hyper-parameters and as
``train_conditions.csv`` in a release folder.

Drawing (:meth:`ConditionTable.pool`): the candidate rows are those of the class the user
fixed (all rows when none has it); when scalar conditions are fixed too, the candidates
are narrowed to the ``ceil(sqrt(m))`` rows (of ``m``) nearest to the fixed values in the
model's own condition space (log10 or Box-Cox, standardised: the
:class:`~radiodiff.diffusion.conditions.ConditionTransform`), so e.g. a fixed peak flux
gets the sizes and classes that training sources of about that peak had. One row of the
pool is then drawn per image.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

__all__ = ["ConditionTable", "EXTRAPOLATION_FACTOR"]

# A condition more than this factor below the training rows' smallest value or above their
# largest is beyond what the model has seen: generate() refuses it unless told to
# extrapolate (``radiodiff sample --allow-extrapolation``).
EXTRAPOLATION_FACTOR = 10.0
_UNITS = {"peak_flux": "Jy/beam", "las_arcsec": "arcsec"}


@dataclass(frozen=True)
class ConditionTable:
    """Conditions of the training rows, one array per column, all of length N.

    Attributes
    ----------
    columns : dict of numpy.ndarray
        ``label`` (int64 class index >= 0; present when the model takes a class) first,
        then the scalar conditions (float64, finite and > 0, physical units).
    """
    columns: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        if not self.columns or len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"a condition table needs at least one column and one row, got "
                             f"columns {list(self.columns)} of lengths {sorted(lengths)}")

    @classmethod
    def from_rows(cls, columns: Mapping[str, np.ndarray], rows: Sequence[int], label: bool,
                  scalars: Sequence[str]) -> Optional["ConditionTable"]:
        """The table of ``rows`` of a prepared file's ``columns`` (training rows).

        Rows with an unknown condition (label < 0, a scalar NaN, infinite or <= 0) are left
        out: they say nothing about the joint distribution. Returns None when there is
        nothing to record (no condition, or no row with all of them known).
        """
        names = (["label"] if label else []) + list(scalars)
        if not names:
            return None
        rows = np.asarray(rows, dtype=np.int64)
        picked = {}
        for name in names:
            values = np.asarray(columns[name])[rows]
            picked[name] = values.astype(np.int64 if name == "label" else np.float64)
        known = np.ones(len(rows), bool)
        for name, v in picked.items():
            known &= v >= 0 if name == "label" else np.isfinite(v) & (v > 0)
        if not known.any():
            return None
        return cls({k: v[known] for k, v in picked.items()})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    @property
    def scalars(self) -> tuple[str, ...]:
        """The scalar columns (all but ``label``)."""
        return tuple(k for k in self.columns if k != "label")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    # ---------------------------------------------------------------------------- text
    def to_csv(self) -> str:
        """CSV text: a header line, then one line per row (floats as ``repr``: exact)."""
        lines = [",".join(self.columns)]
        cols = [v.tolist() for v in self.columns.values()]
        lines += [",".join(repr(x) for x in row) for row in zip(*cols)]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_csv(cls, text: str, where: str = "train_conditions.csv") -> "ConditionTable":
        """Inverse of :meth:`to_csv`; ``where`` names the source in the one-line errors.

        Raises
        ------
        ValueError
            No header or row, a name twice, a row of the wrong length, a label that is not
            an integer >= 0 or a scalar that is not a finite number > 0.
        """
        reader = list(csv.reader(io.StringIO(text)))
        if len(reader) < 2 or not reader[0]:
            raise ValueError(f"{where}: needs a header line and at least one row")
        names = [n.strip() for n in reader[0]]
        if len(set(names)) != len(names) or "" in names:
            raise ValueError(f"{where}: bad header {reader[0]} (empty or repeated names)")
        values: dict[str, list] = {n: [] for n in names}
        for k, row in enumerate(reader[1:], start=2):
            if len(row) != len(names):
                raise ValueError(f"{where}: line {k} has {len(row)} values, the header "
                                 f"{len(names)}")
            for name, text_value in zip(names, row):
                values[name].append(_parse(name, text_value, f"{where}: line {k}"))
        return cls({n: np.asarray(v, dtype=np.int64 if n == "label" else np.float64)
                    for n, v in values.items()})

    def beyond_range(self, name: str, values: Any, factor: float = EXTRAPOLATION_FACTOR
                     ) -> Optional[str]:
        """Why ``values`` of the scalar condition ``name`` lie beyond the training rows:
        one below ``min / factor`` or above ``max * factor`` (physical units) is named in
        one line; None when all are within (or the table has no column ``name``, or no
        finite value in it). The range is that of the finite rows: one NaN row (a table
        written by hand) must not switch the check off."""
        if name not in self.scalars:
            return None
        col = self.columns[name]
        col = col[np.isfinite(col)]
        if not col.size:
            return None
        lo, hi = float(col.min()), float(col.max())
        v = np.asarray(values, dtype=np.float64).ravel()
        low, high = v[v < lo / factor], v[v > hi * factor]
        if not (low.size or high.size):
            return None
        unit = _UNITS.get(name, "")
        value, side = (float(low.min()), "below") if low.size else (float(high.max()), "above")
        return (f"{name}={value:g} {unit} is more than {factor:g}x {side} the training rows' "
                f"range [{lo:.3g}, {hi:.3g}] {unit}").replace("  ", " ")

    # ---------------------------------------------------------------------------- drawing
    def pool(self, transform: Any, label: Optional[int] = None,
             fixed: Optional[Mapping[str, float]] = None) -> tuple[np.ndarray, bool]:
        """Row indices to draw from, given the conditions the user fixed.

        Parameters
        ----------
        transform : ConditionTransform
            The model's condition transform: distances to ``fixed`` are measured on its
            standardised values.
        label : int, optional
            Fixed class index: only rows of that class (all rows when none has it).
        fixed : mapping of str to float, optional
            Fixed scalar conditions (physical units): the ``ceil(sqrt(m))`` candidate rows
            nearest to them (ties: lower row first).

        Returns
        -------
        (numpy.ndarray, bool)
            The rows, and False when ``label`` was given but no row has it.
        """
        rows = np.arange(len(self))
        matched = True
        if label is not None and "label" in self.columns:
            hit = np.flatnonzero(self.columns["label"] == int(label))
            matched = hit.size > 0
            rows = hit if matched else rows
        fixed = {k: float(v) for k, v in (fixed or {}).items() if k in self.scalars}
        if fixed:
            d2 = np.zeros(len(rows))
            for name, value in fixed.items():
                z = transform.encode(name, self.columns[name][rows])
                d2 += (z - transform.encode(name, value)) ** 2
            rows = rows[np.argsort(d2, kind="stable")[:math.ceil(math.sqrt(len(rows)))]]
        return rows, matched


def _parse(name: str, text: str, where: str) -> int | float:
    try:
        value = int(text) if name == "label" else float(text)
    except ValueError:
        value = None
    if name == "label":
        if value is None or value < 0:
            raise ValueError(f"{where}: label {text!r} is not a class index (an integer >= 0)")
    elif value is None or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} {text!r} is not a finite number > 0")
    return value
