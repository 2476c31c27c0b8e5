"""Normalisation of continuous conditions (peak flux, size ...) fitted on the training set.

The network sees each continuous condition as ``z = (f(x) - mean) / std`` with ``f`` either
``log10`` or a Box-Cox transform whose lambda is fitted on the training values; missing or
unusable raw values (NaN, infinite, <= 0) become NaN, the network's *null* value. The
fitted parameters are plain numbers (:meth:`ConditionTransform.to_dict`), saved next to
the weights so that sampling maps physical values to the same model space.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
from scipy import special, stats

__all__ = ["ConditionTransform", "METHODS"]

METHODS = ("log", "boxcox")
_FORMAT = 1


class ConditionTransform:
    """Per-condition ``log10``/Box-Cox + standardisation, and its inverse.

    Build it with :meth:`fit` (training set) or :meth:`from_dict` (saved model).

    Parameters
    ----------
    params : mapping
        ``name -> {"method": "log"|"boxcox", "lmbda": float or None, "mean": float,
        "std": float}``; mean and std are those of ``f(x)`` on the training set.
    """

    def __init__(self, params: Mapping[str, Mapping[str, Any]]) -> None:
        self._params: dict[str, dict[str, Any]] = {}
        for name, p in params.items():
            method = _check_method(p.get("method"), name)
            lmbda = p.get("lmbda")
            if method == "boxcox" and (lmbda is None or not math.isfinite(lmbda)):
                raise ValueError(f"condition {name!r}: Box-Cox needs a finite 'lmbda', "
                                 f"got {lmbda!r}")
            mean, std = float(p["mean"]), float(p["std"])
            if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
                raise ValueError(f"condition {name!r}: need finite mean and positive std, "
                                 f"got mean={mean}, std={std}")
            self._params[str(name)] = {
                "method": method, "lmbda": None if method == "log" else float(lmbda),
                "mean": mean, "std": std, "n_fit": int(p.get("n_fit", 0))}

    @classmethod
    def fit(cls, columns: Mapping[str, Any], names: Sequence[str],
            method: Union[str, Mapping[str, str]] = "log") -> "ConditionTransform":
        """Fit on training-set columns.

        Parameters
        ----------
        columns : mapping of str to array-like
            Raw values per condition in physical units (e.g. ``peak_flux`` in Jy/beam,
            ``las_arcsec`` in arcsec); may hold NaN or non-positive entries (ignored).
        names : sequence of str
            The conditions to fit (keys of ``columns``).
        method : {"log", "boxcox"} or mapping of name to method
            ``log``: log10; ``boxcox``: scipy.stats.boxcox with maximum-likelihood lambda.

        Raises
        ------
        ValueError
            A name not in ``columns``, fewer than 2 finite positive values, constant
            values, or an unknown method.
        """
        params = {}
        for name in names:
            if name not in columns:
                raise ValueError(f"unknown condition {name!r}: columns has "
                                 f"{sorted(columns)}")
            m = _check_method(method.get(name, "log") if isinstance(method, Mapping)
                              else method, name)
            x = np.asarray(columns[name], dtype=np.float64).ravel()
            x = x[np.isfinite(x) & (x > 0)]
            if x.size < 2:
                raise ValueError(f"condition {name!r} has {x.size} finite positive value(s); "
                                 f"need at least 2 to fit")
            if np.all(x == x[0]):
                raise ValueError(f"condition {name!r} is constant ({x[0]}); cannot "
                                 f"standardise it")
            if m == "boxcox":
                y, lmbda = stats.boxcox(x)
                lmbda = float(lmbda)
            else:
                y, lmbda = np.log10(x), None
            params[name] = {"method": m, "lmbda": lmbda, "mean": float(y.mean()),
                            "std": float(y.std()), "n_fit": int(x.size)}
        return cls(params)

    @property
    def names(self) -> tuple[str, ...]:
        """The fitted condition names, in fit order."""
        return tuple(self._params)

    def _get(self, name: str) -> dict[str, Any]:
        if name not in self._params:
            raise ValueError(f"unknown condition {name!r}; this transform knows "
                             f"{list(self._params)}")
        return self._params[name]

    def encode(self, name: str, values: Any) -> np.ndarray:
        """Raw values (physical units) -> normalised model values, float64.

        NaN, infinite and non-positive raw values map to NaN (null condition).
        """
        p = self._get(name)
        x = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(x) & (x > 0)
        safe = np.where(ok, x, 1.0)
        y = np.log10(safe) if p["method"] == "log" else special.boxcox(safe, p["lmbda"])
        return np.where(ok, (y - p["mean"]) / p["std"], np.nan)

    def decode(self, name: str, z: Any) -> np.ndarray:
        """Normalised values -> raw values (physical units), float64; NaN stays NaN.

        For Box-Cox, ``z`` beyond the transform's range (``lmbda * y + 1 <= 0``) gives NaN.
        """
        p = self._get(name)
        y = np.asarray(z, dtype=np.float64) * p["std"] + p["mean"]
        if p["method"] == "log":
            return np.power(10.0, y)
        with np.errstate(invalid="ignore"):
            return special.inv_boxcox(y, p["lmbda"])

    def encode_batch(self, cond_raw: Mapping[str, Any]) -> dict[str, Any]:
        """Encode a batch's ``cond`` dict: ``"label"`` unchanged, scalars normalised.

        Parameters
        ----------
        cond_raw : mapping of str to torch.Tensor
            ``"label"`` (kept as is) and raw scalar conditions (N,).

        Returns
        -------
        dict
            Same keys; scalars as float32 tensors on the input's device.
        """
        out: dict[str, Any] = {}
        for name, v in cond_raw.items():
            if name == "label":
                out[name] = v
                continue
            t = torch.as_tensor(v)
            z = self.encode(name, t.detach().cpu().double().numpy())
            out[name] = torch.from_numpy(z).to(device=t.device, dtype=torch.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters (for ``transform.json``)."""
        return {"format": _FORMAT, "conditions": {k: dict(v) for k, v in self._params.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConditionTransform":
        """Inverse of :meth:`to_dict`."""
        if data.get("format") != _FORMAT or "conditions" not in data:
            raise ValueError(f"not a ConditionTransform dict (format {_FORMAT} with "
                             f"'conditions'), got keys {sorted(data)}")
        return cls(data["conditions"])

    def __repr__(self) -> str:
        parts = [f"{k}: {v['method']}" + (f"(lmbda={v['lmbda']:.3g})" if v["lmbda"] is not None
                                          else "") for k, v in self._params.items()]
        return f"ConditionTransform({', '.join(parts)})"


def _check_method(method: Any, name: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} for condition {name!r}; "
                         f"expected one of {list(METHODS)}")
    return method
