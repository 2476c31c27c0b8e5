"""IntensityTransform: exact inverses, fixed points, storage, and bad parameters."""

import pytest
import torch

from radiodiff.diffusion.intensity import IntensityTransform


@pytest.mark.parametrize("kw", [dict(), dict(stretch="power", param=0.25),
                                dict(stretch="asinh", param=0.01),
                                dict(stretch="power", param=0.5, lo=-1.0, hi=1.0)])
def test_decode_inverts_encode_and_keeps_zero_and_peak(kw):
    t = IntensityTransform(**kw)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0
    y = t.encode(x)
    assert y[0, 0, 0, 0] == t.lo and y[0, 0, 0, 1] == pytest.approx(t.hi, abs=1e-12)
    torch.testing.assert_close(t.decode(y), x, rtol=1e-9, atol=1e-12)
    assert IntensityTransform.from_dict(t.to_dict()) == t


def test_power_stretch_lifts_the_faint_end_and_decode_clamps():
    t = IntensityTransform("power", 0.25)
    assert float(t.encode(torch.tensor(0.01))) == pytest.approx(0.01 ** 0.25)
    # model-space values outside [lo, hi] are clamped: nothing negative, peak at most 1
    out = t.decode(torch.tensor([-0.3, 0.1, 1.7]))
    assert out[0] == 0 and out[2] == 1 and out[1] == pytest.approx(1e-4)


def test_missing_field_is_identity_and_bad_parameters_fail():
    assert IntensityTransform.from_dict(None).is_identity
    with pytest.raises(ValueError, match="stretch must be one of"):
        IntensityTransform("log")
    with pytest.raises(ValueError, match="0 < param <= 1"):
        IntensityTransform("power", 2.0)
    with pytest.raises(ValueError, match="lo < hi"):
        IntensityTransform(lo=1.0, hi=0.0)
