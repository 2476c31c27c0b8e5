"""Shared fixtures. Survey data from ../shared/data come through RADIODIFF_SHARED_DATA
(set by `.ci/run` and the Makefile) or ``--shared-data``; tests needing them skip otherwise."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
# Where runs and tools write by default (relative to the working directory, the repo when
# `make test` runs): tests must write to temporary folders instead.
WATCHED = ("outputs", "lightning_logs", "wandb", "multirun")


def pytest_addoption(parser):
    parser.addoption("--shared-data", default=None,
                     help="folder holding mirabest/ and mirabest_raw/ (else $RADIODIFF_SHARED_DATA)")


@pytest.fixture(scope="session")
def shared_data(request) -> Path:
    value = request.config.getoption("--shared-data") or os.environ.get("RADIODIFF_SHARED_DATA")
    if not value:
        pytest.skip("shared survey data not configured: set RADIODIFF_SHARED_DATA or "
                    "--shared-data (`.ci/run` and `make test` do when ../shared/data exists)")
    path = Path(value)
    if not (path / "mirabest" / "catalog.csv").is_file():
        pytest.skip(f"shared survey data not found at {path} (no mirabest/catalog.csv)")
    return path


@pytest.fixture(scope="session")
def first_wheel() -> None:
    """Skip, with the reason, where the FIRST data wheel is not installed (`make setup`
    installs it with --no-deps; `pip install -e .[dev]` alone does not)."""
    import importlib.util
    if importlib.util.find_spec("firstgalaxydata") is None:
        pytest.skip("firstgalaxydata not installed (`make setup` installs it: "
                    "pip install --no-deps firstgalaxydata==0.2.1)")


@pytest.fixture(scope="session")
def shared_raw(shared_data) -> Path:
    """The shared folder of untouched MiraBest originals (skips, with the reason, where it
    holds no FITS)."""
    raw = shared_data / "mirabest_raw"
    if not sorted(raw.glob("*.fits")):
        pytest.skip(f"no untouched originals in {raw} (mirabest_raw/*.fits)")
    return raw


def _watched_files(root: Path) -> dict[Path, int]:
    """Files under the watched folders of ``root`` and their modification times (ns)."""
    files = {}
    for name in WATCHED:
        for path in (root / name).rglob("*"):
            try:
                if path.is_file():
                    files[path] = path.stat().st_mtime_ns
            except OSError:
                pass  # removed meanwhile
    return files


@pytest.fixture(scope="session", autouse=True)
def repo_stays_clean():
    """Fail the session when a test wrote (new or changed files) into the repo's outputs/."""
    before = _watched_files(REPO)
    yield
    after = _watched_files(REPO)
    written = sorted(str(p.relative_to(REPO)) for p, t in after.items() if before.get(p) != t)
    if written:
        pytest.fail(f"tests wrote into the work tree ({len(written)} file(s), e.g. "
                    f"{', '.join(written[:5])}); write to tmp_path instead", pytrace=False)


@pytest.fixture(autouse=True)
def _sigint_handler_is_left_as_it_was():
    """No test may leave Ctrl-C changed (Lightning ignores SIGINT after an interrupted fit):
    a child process started later would inherit SIG_IGN and could not be interrupted. Seen
    at the Python level (the handler) and below it (the kernel's ignore mask, the main
    thread's block mask: a C library). Both are put back either way, then the test that
    changed them fails."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before, state = signal.getsignal(signal.SIGINT), _sigint_state()
    yield
    after, after_state = signal.getsignal(signal.SIGINT), _sigint_state()
    if after is before and after_state == state:
        return
    if state[1] is not None:
        how = signal.SIG_BLOCK if state[1] else signal.SIG_UNBLOCK
        signal.pthread_sigmask(how, [signal.SIGINT])
    if before is not None:  # None: a handler installed outside Python, not restorable
        signal.signal(signal.SIGINT, before)
    pytest.fail(f"the test left SIGINT changed: handler {before!r} -> {after!r}, "
                f"(ignored, blocked) at the C level {state} -> {after_state}")


def _sigint_state() -> tuple:
    """SIGINT as the kernel holds it for this process, (ignored, blocked), each None where
    the platform does not say: a child inherits both across exec whatever Python's handler
    says."""
    import signal

    status, ignored, blocked = Path("/proc/self/status"), None, None
    if status.is_file():
        masks = dict(line.split(":", 1) for line in status.read_text().splitlines()
                     if line.startswith("SigIgn"))
        ignored = bool(int(masks.get("SigIgn", "0"), 16) & 1 << (signal.SIGINT - 1))
    if hasattr(signal, "pthread_sigmask"):
        blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return ignored, blocked
