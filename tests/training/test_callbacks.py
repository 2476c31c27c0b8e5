"""The sampling callback takes its sampler from the config group ``sampler``."""

from radiodiff.config import load_config
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.training.callbacks import SampleCallback


def test_sample_callback_reads_cfg_sampler(tmp_path):
    cfg = load_config(["sampler.steps=7", "sampler.name=euler", "sampler.sigma_max=5.0"])
    cb = SampleCallback.from_config(cfg, tmp_path)
    assert cb.spec == SamplerSpec(name="euler", steps=7, sigma_max=5.0)
    assert SampleCallback.from_config(load_config([]), tmp_path).spec == SamplerSpec()
