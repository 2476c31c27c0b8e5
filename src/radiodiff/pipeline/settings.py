"""One sampler setting as text, the one syntax of the benchmarks and sweeps:

    solver:steps[:key=value ...]        e.g.  dpmpp_2m:10:guidance=1.5
                                              heun:25:sigma_max=10:S_churn=0
                                              dpmpp_2m:7:islands=false:refine=false

``solver`` and ``steps`` are positional; then, in any order, the
:class:`~radiodiff.diffusion.sampling.SamplerSpec` fields ``guidance``, ``sigma_min``,
``sigma_max``, ``rho``, ``S_churn`` (numbers; the rest are the package defaults,
``conf/sampler/``) and the :func:`~radiodiff.pipeline.generate.generate` switches
``islands``, ``refine`` and ``project`` (``true`` / ``false``; not given: generate's
default, the release's own pipeline). Older spellings in committed records still parse:
``g=``, ``smax=``, ``churn=``, the flags ``raw`` / ``norefine`` / ``noislands`` (the switch
``=false``) and a bare third number (the guidance, ``dpmpp_2m:10:1.5``); ``str()`` writes
the form above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from radiodiff.diffusion.sampling import SamplerSpec

__all__ = ["SamplerSetting", "SPEC_KEYS", "SWITCHES", "FORM"]

SPEC_KEYS = ("guidance", "sigma_min", "sigma_max", "rho", "S_churn")  # numbers
SWITCHES = ("islands", "refine", "project")                          # generate() switches
FORM = ("solver:steps[:key=value ...] with keys " + ", ".join(SPEC_KEYS)
        + " (numbers) and " + ", ".join(SWITCHES) + " (true/false)")
_OLD_KEYS = {"g": "guidance", "smax": "sigma_max", "churn": "S_churn"}
_OLD_FLAGS = {"raw": "project", "norefine": "refine", "noislands": "islands"}
_BOOLS = {"true": True, "false": False}


@dataclass(frozen=True)
class SamplerSetting:
    """A solver, its steps and the options given (``(key, value)`` pairs in the order of
    :data:`SPEC_KEYS` then :data:`SWITCHES`). Checked when made: a bad setting is one
    ValueError naming it."""
    sampler: str
    steps: int
    options: tuple = ()

    def __post_init__(self) -> None:
        keys = [k for k, _ in self.options]
        unknown = sorted(set(keys) - set(SPEC_KEYS) - set(SWITCHES))
        if unknown or len(set(keys)) != len(keys):
            raise ValueError(f"sampler setting {str(self)!r}: "
                             + (f"unknown key(s) {', '.join(unknown)}" if unknown
                                else "a key given twice") + f"; the form is {FORM}")
        for k, v in self.options:
            if k in SWITCHES and not isinstance(v, bool):
                raise ValueError(f"sampler setting {str(self)!r}: {k} must be true or false")
        try:
            self.spec
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sampler setting {str(self)!r}: {exc}") from None

    @classmethod
    def parse(cls, text: str) -> "SamplerSetting":
        """The setting of ``text`` (module docstring); a bad one is one ValueError."""
        sampler, _, rest = str(text).strip().partition(":")
        steps, *parts = rest.split(":") if rest else [""]
        try:
            n = int(steps)
        except ValueError:
            raise ValueError(f"sampler setting {text!r}: steps must be a whole number, got "
                             f"{steps!r}; the form is {FORM}") from None
        given = dict(_option(text, part, i) for i, part in enumerate(parts))
        if len(given) != len(parts):
            raise ValueError(f"sampler setting {text!r}: a key given twice; the form is {FORM}")
        return cls(sampler, n, _ordered(given))

    def with_options(self, **options: Any) -> "SamplerSetting":
        """The same setting with ``options`` given too (replacing those of the same key),
        e.g. ``refine=False``."""
        return SamplerSetting(self.sampler, self.steps, _ordered({**self.given, **options}))

    @property
    def given(self) -> dict[str, Any]:
        """The options given, by key."""
        return dict(self.options)

    @property
    def spec(self) -> SamplerSpec:
        """The :class:`SamplerSpec`: the package defaults with the given numbers replaced."""
        numbers = {k: v for k, v in self.options if k in SPEC_KEYS}
        return SamplerSpec.build(sampler=self.sampler, steps=self.steps, **numbers)

    @property
    def generate_options(self) -> dict[str, bool]:
        """The switches given, as :func:`~radiodiff.pipeline.generate.generate` keywords."""
        return {k: v for k, v in self.options if k in SWITCHES}

    def __str__(self) -> str:
        parts = [self.sampler, str(self.steps)]
        parts += [f"{k}={str(v).lower() if isinstance(v, bool) else _number(v)}"
                  for k, v in self.options]
        return ":".join(parts)


def _ordered(given: dict[str, Any]) -> tuple:
    """``(key, value)`` pairs in the order of :data:`SPEC_KEYS` then :data:`SWITCHES`
    (unknown keys last, for the check to name them)."""
    order = SPEC_KEYS + SWITCHES
    return tuple(sorted(given.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                        else len(order)))


def _option(text: str, part: str, position: int) -> tuple[str, Any]:
    """One ``key=value`` of ``text`` (or an older spelling, module docstring)."""
    if part in _OLD_FLAGS:
        return _OLD_FLAGS[part], False
    key, eq, value = part.partition("=")
    if not eq and position == 0 and _finite(part) is not None:  # "solver:steps:guidance"
        key, value = "guidance", part
    key = _OLD_KEYS.get(key, key)
    if key in SWITCHES and value.lower() in _BOOLS:
        return key, _BOOLS[value.lower()]
    if key in SPEC_KEYS and _finite(value) is not None:
        return key, _finite(value)
    what = (f"{key} must be true or false, got {value!r}" if key in SWITCHES else
            f"{key} must be a finite number, got {value!r}" if key in SPEC_KEYS else
            f"unknown option {part!r}")
    raise ValueError(f"sampler setting {text!r}: {what}; the form is {FORM}")


def _finite(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _number(v: Any) -> str:
    return format(v, "g") if isinstance(v, (int, float)) else repr(v)
