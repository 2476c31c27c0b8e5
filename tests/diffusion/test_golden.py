"""Seeded outputs of the shipped releases, bit for bit against tests/golden (recorded by
tests/golden/record.py before the generation pipeline was restructured, issue 25): the
refiner with and without the noise islands, the base network alone, no projection, and the
physical model conditioned in Jy/beam. On another torch or CPU kernel set, where bit
identity cannot be asked, the outputs must still agree to float32 rounding."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
_spec = importlib.util.spec_from_file_location("golden_record", GOLDEN / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)
CASES = json.loads((GOLDEN / "cases.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(record.CASES))
def test_seeded_outputs_are_unchanged(name):
    release_dir, kwargs = record.CASES[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as recorded
    try:
        out = record.draw(release_dir, kwargs)
    finally:
        torch.set_num_threads(threads)
    expected = CASES["cases"][name]
    assert sorted(out) == sorted(expected), "which arrays the result carries changed"
    got = {k: record.sha(v) for k, v in out.items()}
    if got == expected:
        return
    assert CASES["machine"] != record.machine(), (
        f"{name}: seeded outputs changed on the machine they were recorded on "
        f"({record.machine()}): {sorted(k for k in got if got[k] != expected[k])}")
    reference = np.load(GOLDEN / "outputs.npz")[name]
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(out["output"], reference, rtol=0, atol=1e-4 * scale)
