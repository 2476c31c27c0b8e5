"""Intensity encoding between data space and model space, saved with the weights (STYLE 5).

The prepared images ``x`` are per-image (or per-set) scaled to [0, 1]. The network works on

    y = lo + (hi - lo) * s(x),

where ``s`` is an intensity stretch and ``[lo, hi]`` the model-space range:

- ``linear``: ``s(x) = x`` (the wave-1 model space);
- ``power``:  ``s(x) = sign(x) |x|^p``; ``p = 0.25`` lifts 1 % of the peak to 0.32, which is
  where an astronomer looks (Drozdova et al. 2024 train on a root-power normalisation);
- ``asinh``:  ``s(x) = asinh(x / a) / asinh(1 / a)``, linear below ``a``, logarithmic above.

All three map 0 to 0 and 1 to 1, so the background stays exactly where the data put it and
the per-image peak stays at the top of the range. :meth:`IntensityTransform.decode` is the
exact inverse on ``[lo, hi]`` and clamps model-space values outside it first (negatives are
clipped in the data, so nothing below ``lo`` can be real).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

__all__ = ["IntensityTransform", "STRETCHES"]

STRETCHES = ("linear", "power", "asinh")


@dataclass(frozen=True)
class IntensityTransform:
    """Data space [0, 1] <-> model space ``[lo, hi]`` through a stretch.

    Parameters
    ----------
    stretch : {"linear", "power", "asinh"}
    param : float
        The power ``p`` (0 < p <= 1) or the asinh softening ``a`` (> 0, in units of the
        peak); ignored for ``linear``.
    lo, hi : float
        Model-space values of data 0 and data 1 (``[0, 1]``; EDM's ``[-1, 1]``).
    """
    stretch: str = "linear"
    param: float = 0.25
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if self.stretch not in STRETCHES:
            raise ValueError(f"stretch must be one of {', '.join(STRETCHES)}, "
                             f"got {self.stretch!r}")
        p = float(self.param)
        if self.stretch == "power" and not (0 < p <= 1):
            raise ValueError(f"power stretch needs 0 < param <= 1, got {self.param}")
        if self.stretch == "asinh" and not (math.isfinite(p) and p > 0):
            raise ValueError(f"asinh stretch needs a softening param > 0, got {self.param}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.hi > self.lo):
            raise ValueError(f"model-space range needs finite lo < hi, got "
                             f"[{self.lo}, {self.hi}]")

    # ------------------------------------------------------------------------ the maps
    def _s(self, x: Tensor) -> Tensor:
        if self.stretch == "power":
            return x.sign() * x.abs().pow(self.param)
        if self.stretch == "asinh":
            return torch.asinh(x / self.param) / math.asinh(1.0 / self.param)
        return x

    def _s_inv(self, s: Tensor) -> Tensor:
        if self.stretch == "power":
            return s.sign() * s.abs().pow(1.0 / self.param)
        if self.stretch == "asinh":
            return torch.sinh(s * math.asinh(1.0 / self.param)) * self.param
        return s

    def encode(self, x: Tensor) -> Tensor:
        """Data-space images (peak-scaled, [0, 1]) -> model space; any shape."""
        if self.is_identity:
            return x
        return self.lo + (self.hi - self.lo) * self._s(x)

    def decode(self, y: Tensor) -> Tensor:
        """Model space -> data space, clamped to [0, 1] (negatives are clipped in the data)."""
        s = ((y - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        return self._s_inv(s)

    @property
    def is_identity(self) -> bool:
        return self.stretch == "linear" and self.lo == 0.0 and self.hi == 1.0

    # ----------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "IntensityTransform":
        """From :meth:`to_dict` output; ``None`` (releases before this field) = identity."""
        if not d:
            return cls()
        return cls(stretch=str(d.get("stretch", "linear")), param=float(d.get("param", 0.25)),
                   lo=float(d.get("lo", 0.0)), hi=float(d.get("hi", 1.0)))

    @classmethod
    def from_config(cls, schedule: Any) -> "IntensityTransform":
        """From the ``schedule`` config group (``stretch``, ``stretch_param``, ``range``)."""
        lo, hi = (float(v) for v in schedule.range)
        return cls(stretch=str(schedule.stretch), param=float(schedule.stretch_param),
                   lo=lo, hi=hi)
