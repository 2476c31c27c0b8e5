"""The one sampler-setting syntax of the benchmarks: solver:steps[:key=value ...]."""

import pytest

from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.pipeline.settings import SamplerSetting


@pytest.mark.parametrize("text, spec, switches, canonical", [
    ("dpmpp_2m:10", dict(sampler="dpmpp_2m", steps=10), {}, "dpmpp_2m:10"),
    ("dpmpp_2m:10:guidance=1.5", dict(sampler="dpmpp_2m", steps=10, guidance=1.5), {},
     "dpmpp_2m:10:guidance=1.5"),
    ("stochastic:25:S_churn=0.5:sigma_max=20:rho=5:sigma_min=0.01",
     dict(sampler="stochastic", steps=25, S_churn=0.5, sigma_max=20, rho=5, sigma_min=0.01),
     {}, "stochastic:25:sigma_min=0.01:sigma_max=20:rho=5:S_churn=0.5"),
    ("dpmpp_2m:7:islands=false:refine=False:project=true", dict(sampler="dpmpp_2m", steps=7),
     dict(islands=False, refine=False, project=True),
     "dpmpp_2m:7:islands=false:refine=false:project=true"),
    # older spellings in committed records
    ("dpmpp_2m:7:noislands", dict(sampler="dpmpp_2m", steps=7), dict(islands=False),
     "dpmpp_2m:7:islands=false"),
    ("dpmpp_2m:10:g=2:raw:norefine", dict(sampler="dpmpp_2m", steps=10, guidance=2),
     dict(project=False, refine=False), "dpmpp_2m:10:guidance=2:refine=false:project=false"),
    ("stochastic:25:smax=10:churn=1",
     dict(sampler="stochastic", steps=25, sigma_max=10, S_churn=1), {},
     "stochastic:25:sigma_max=10:S_churn=1"),
    ("dpmpp_2m:10:1.5", dict(sampler="dpmpp_2m", steps=10, guidance=1.5), {},
     "dpmpp_2m:10:guidance=1.5"),
])
def test_a_setting_is_a_spec_and_generate_switches(text, spec, switches, canonical):
    s = SamplerSetting.parse(text)
    assert s.spec == SamplerSpec.build(**spec)
    assert s.generate_options == switches
    assert str(s) == canonical and SamplerSetting.parse(str(s)) == s


def test_unset_options_are_the_package_defaults_and_options_can_be_added():
    s = SamplerSetting.parse("euler:4")
    assert s.spec == SamplerSpec(name="euler", steps=4) and s.given == {}
    t = s.with_options(refine=False, guidance=2.0)
    assert str(t) == "euler:4:guidance=2:refine=false" and s.given == {}
    assert t.spec.nfe == SamplerSpec(name="euler", steps=4, guidance=2.0).nfe


@pytest.mark.parametrize("text, message", [
    ("heun", "steps must be a whole number, got ''"),
    ("heun:x", "steps must be a whole number, got 'x'"),
    ("bogus:10", "unknown sampler 'bogus'"),
    ("heun:0", "steps must be an integer >= 1"),
    ("heun:10:foo", "unknown option 'foo'"),
    ("heun:10:steps=3", "unknown option 'steps=3'"),
    ("heun:10:guidance=x", "guidance must be a finite number, got 'x'"),
    ("heun:10:sigma_max=inf", "sigma_max must be a finite number"),
    ("heun:10:islands=maybe", "islands must be true or false, got 'maybe'"),
    ("heun:10:g=1:guidance=2", "a key given twice"),
    ("heun:10:sigma_min=20", "need 0 < sigma_min <= sigma_max"),
    ("heun:10:guidance=-1", "guidance must be a finite number >= 0"),
])
def test_a_bad_setting_is_one_line_naming_it(text, message):
    with pytest.raises(ValueError, match="sampler setting") as err:
        SamplerSetting.parse(text)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert repr(text) in str(err.value) or text in str(err.value)


def test_a_setting_made_directly_is_checked_too():
    with pytest.raises(ValueError, match="unknown key"):
        SamplerSetting("heun", 10, (("churn", 1.0),))
    with pytest.raises(ValueError, match="islands must be true or false"):
        SamplerSetting("heun", 10, (("islands", "no"),))
