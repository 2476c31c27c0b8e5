"""Release trust: is a release folder one of the models radiodiff ships, unchanged?

A release's ``SHA256SUMS`` only says its files are as they were written: whoever replaces
the weights can recompute it. The hashes of the shipped releases (``models/first`` with its
``refiner/``, ``models/mirabest``) are therefore also recorded inside the package, in
``radiodiff/trusted_releases.json`` (:data:`TRUSTED_FILE`), and travel with the code.
:func:`verify_release` compares a folder with that record (``radiodiff verify MODEL``);
:func:`note_untrusted` is what :func:`radiodiff.pipeline.release.load_release` calls: one warning
line for a release that cannot be vouched for, never a refusal, and none for a release this
process exported itself (:func:`radiodiff.io.artifacts.made_here`: a checkpoint exported to
a temporary folder to be evaluated or sampled).

A copy of a shipped release is recognised by its weights (``model.safetensors``) alone: a
release of one's own named ``first`` is unknown, not a modified copy.

A release is identified by the files that decide what it draws (:data:`RELEASE_FILES`, and
those of its ``refiner/``), not by its model card or benchmark notes. After re-exporting a
shipped model, regenerate the record with :func:`record_trusted_releases`
(``python -m radiodiff.io.trust``); ``tests/faults/test_trust.py`` fails until then.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from radiodiff.io.artifacts import KINDS, made_here
from radiodiff.io.integrity import sha256_file
from radiodiff.io.release_files import (CONFIG_FILE, META_FILE, REFINER_DIR, TABLE_FILE,
                                        WEIGHTS_FILE, models_dir)

__all__ = ["TRUSTED_FILE", "RELEASE_FILES", "TrustReport", "release_hashes",
           "trusted_releases", "verify_release", "note_untrusted", "record_trusted_releases"]

TRUSTED_FILE = Path(__file__).resolve().parents[1] / "trusted_releases.json"
# What a release draws with.
RELEASE_FILES = (CONFIG_FILE, WEIGHTS_FILE, META_FILE, TABLE_FILE)
_REFINER = REFINER_DIR
_WEIGHTS = WEIGHTS_FILE  # what identifies a copy
_MARKS = KINDS["release"]  # what every release folder has: meta.json, model.safetensors
_FORMAT = 1

log = logging.getLogger(__name__)
_noted: set[tuple[str, str]] = set()  # (folder, status): one line per process


@dataclass(frozen=True)
class TrustReport:
    """The verdict on one release folder.

    status: ``ok`` (byte for byte a shipped release), ``modified`` (has the weights of a
    shipped release but other files differ), ``unknown`` or ``not_release`` (no
    ``meta.json`` / ``model.safetensors``: not a release folder at all); ``name``: that
    shipped release; ``differing``: its files that are changed, missing or extra;
    ``known``: the recorded releases.
    """
    path: Path
    status: str
    name: Optional[str] = None
    differing: tuple[str, ...] = ()
    known: tuple[str, ...] = ()

    @property
    def vouched(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        """One line for the command line and the log."""
        if self.status == "ok":
            return (f"{self.path}: OK, the shipped release {self.name!r} unchanged (SHA-256 "
                    f"of its files as recorded in radiodiff's {TRUSTED_FILE.name})")
        if self.status == "modified":
            shown = ", ".join(self.differing[:4]) + (" ..." if len(self.differing) > 4 else "")
            return (f"{self.path}: MODIFIED copy of the shipped release {self.name!r} "
                    f"({shown} differ from the recorded SHA-256): it cannot be vouched for")
        if self.status == "not_release":
            return (f"{self.path}: not a release folder (no {'/'.join(_MARKS)})")
        return (f"{self.path}: UNKNOWN release, not one of the shipped releases "
                f"({', '.join(self.known) or 'none recorded'}): it cannot "
                "be vouched for")


def release_hashes(path: str | Path) -> dict[str, str]:
    """``{file: sha256}`` of the release files in ``path`` and in its ``refiner/``
    (as ``refiner/<file>``)."""
    path = Path(path)
    out = {n: sha256_file(path / n) for n in RELEASE_FILES if (path / n).is_file()}
    if (path / _REFINER).is_dir():
        out.update({f"{_REFINER}/{n}": sha for n, sha in release_hashes(path / _REFINER).items()})
    return out


def trusted_releases(record: Path = TRUSTED_FILE) -> dict[str, dict[str, str]]:
    """The recorded releases, ``{name: {file: sha256}}`` (empty when there is no record)."""
    try:
        data = json.loads(Path(record).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{record}: unreadable record of the shipped releases ({exc}); "
                         "reinstall radiodiff") from exc
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{record}: not a format-{_FORMAT} record of the shipped releases")
    return dict(data.get("releases") or {})


def verify_release(path: str | Path, record: Path = TRUSTED_FILE) -> TrustReport:
    """Compare the release folder ``path`` with the recorded shipped releases: ``ok``, a
    ``modified`` copy (the weights of a shipped release, other files changed), ``unknown``
    (other weights, whatever the folder is called) or ``not_release``."""
    path = Path(path)
    known = trusted_releases(record)
    names = tuple(sorted(known))
    if not all((path / f).is_file() for f in _MARKS):
        return TrustReport(path, "not_release", known=names)
    have = release_hashes(path)
    for name, want in known.items():
        if have == want:
            return TrustReport(path, "ok", name, known=names)

    def shared(name: str) -> int:
        return sum(have.get(f) == sha for f, sha in known[name].items())
    # a copy has the same weights; the folder name or a shared train_conditions.csv (a new
    # export of the same data) say nothing
    candidates = [n for n in known if have[_WEIGHTS] == known[n].get(_WEIGHTS)]
    if not candidates:
        return TrustReport(path, "unknown", known=names)
    name = max(candidates, key=lambda n: (shared(n), n))
    want = known[name]
    differing = sorted(f for f in set(want) | set(have) if want.get(f) != have.get(f))
    return TrustReport(path, "modified", name, tuple(differing), names)


def note_untrusted(path: str | Path) -> Optional[TrustReport]:
    """Log one warning line when the release at ``path`` cannot be vouched for (once per
    folder and verdict in a process); returns the report. A ``refiner/`` inside a release
    is vouched for with its base, and a release this process exported
    (:func:`~radiodiff.io.artifacts.made_here`) is the user's own: neither is reported
    (None)."""
    path = Path(path)
    if path.name == _REFINER and (path.parent / "meta.json").is_file():
        return None
    if made_here(path, "release"):
        return None
    report = verify_release(path)
    key = (str(path.resolve()), report.status)
    if not report.vouched and key not in _noted:
        _noted.add(key)
        log.warning("%s (radiodiff verify %s)", report.line(), path)
    return report


def record_trusted_releases(models: str | Path | None = None,
                            out: str | Path = TRUSTED_FILE) -> Path:
    """Write the record of the shipped releases: every release folder in ``models``
    (default :func:`radiodiff.io.release_files.models_dir`) and its refiner, as they are now.
    Run after re-exporting a shipped model: ``python -m radiodiff.io.trust``."""
    from radiodiff.io.artifacts import atomic_text

    root = Path(models) if models is not None else models_dir()
    releases = {}
    for folder in sorted(p for p in root.iterdir() if (p / "model.safetensors").is_file()):
        releases[folder.name] = release_hashes(folder)
        if (folder / _REFINER / "model.safetensors").is_file():
            releases[f"{folder.name}/{_REFINER}"] = release_hashes(folder / _REFINER)
    if not releases:
        raise FileNotFoundError(f"{root}: no release folder to record")
    text = json.dumps({"format": _FORMAT, "about": "SHA-256 of the shipped releases' files "
                       "(radiodiff.io.trust); regenerate: python -m radiodiff.io.trust",
                       "releases": releases}, indent=2, sort_keys=False)
    return atomic_text(out, text + "\n")


def main(argv: list[str] | None = None) -> Path:
    """``python -m radiodiff.io.trust [--models DIR]``: rewrite the record (``--help`` only
    prints how)."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m radiodiff.io.trust",
                                description="Record the SHA-256 of the shipped releases in "
                                f"the package ({TRUSTED_FILE.name}); run after re-exporting "
                                "a shipped model.")
    p.add_argument("--models", help="folder of release folders (default: the shipped models/)")
    out = record_trusted_releases(p.parse_args(argv).models)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
