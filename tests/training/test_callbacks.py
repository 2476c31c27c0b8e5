"""The sampling callback takes its sampler from the config group ``sampler``."""

from radiodiff.config import load_config
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.training.callbacks import SampleCallback


def test_sample_callback_reads_cfg_sampler(tmp_path):
    cfg = load_config(["sampler.steps=7", "sampler.name=euler", "sampler.sigma_max=5.0"])
    cb = SampleCallback.from_config(cfg, tmp_path)
    assert cb.spec == SamplerSpec(name="euler", steps=7, sigma_max=5.0)
    assert SampleCallback.from_config(load_config([]), tmp_path).spec == SamplerSpec()


def test_sample_callback_draws_through_the_one_sampling_loop():
    """The callback's samples are sample_batches over the EMA from the callback seeds, the
    conditions of the validation rows encoded by the module."""
    from types import SimpleNamespace

    import torch

    from radiodiff.diffusion.loop import sample_batches
    from radiodiff.diffusion.sampling import seeded_noise
    from radiodiff.seeds import callback_sample_seed

    def ema(x, sigma, cond=None):
        shift = 0 if cond is None else cond["label"].to(x.dtype).reshape(-1, 1, 1, 1)
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2) + shift

    val = [(torch.zeros(1, 4, 4), {"label": torch.tensor(k % 3)}) for k in range(5)]
    trainer = SimpleNamespace(global_rank=0, world_size=1,
                              datamodule=SimpleNamespace(val_dataset=val))
    module = SimpleNamespace(device=torch.device("cpu"), ema=ema,
                             encode_cond=lambda raw: {"label": raw["label"].long()},
                             intensity=SimpleNamespace(decode=lambda y: y * 3))
    spec = SamplerSpec(name="euler", steps=3, sigma_max=5.0, guidance=2.0)
    cb = SampleCallback(10, count=7, spec=spec, batch_size=3, seed=4)
    out = cb.sample(trainer, module)
    seeds = [callback_sample_seed(4, k) for k in range(7)]
    want, _ = sample_batches(ema, spec, lambda lo, hi: seeded_noise(seeds[lo:hi], (1, 4, 4)),
                             7, decode=lambda y: y * 3, batch_size=7,
                             cond={"label": torch.tensor([k % 5 % 3 for k in range(7)])})
    assert torch.equal(out, want)
    trainer.global_rank, trainer.world_size = 7, 8  # a rank with no share
    assert cb.sample(trainer, module).shape == (0, 1, 4, 4)


def test_churned_callback_samples_do_not_depend_on_the_batch_or_the_global_rng():
    from types import SimpleNamespace

    import torch

    def ema(x, sigma, cond=None):
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    val = [(torch.zeros(1, 4, 4), {"label": torch.tensor(0)}) for _ in range(5)]
    trainer = SimpleNamespace(global_rank=0, world_size=1,
                              datamodule=SimpleNamespace(val_dataset=val))
    module = SimpleNamespace(device=torch.device("cpu"), ema=ema,
                             encode_cond=lambda raw: {"label": raw["label"].long()},
                             intensity=SimpleNamespace(decode=lambda y: y))
    spec = SamplerSpec(name="stochastic", steps=4, sigma_max=5.0, S_churn=5.0)
    torch.manual_seed(0)
    a = SampleCallback(10, count=6, spec=spec, batch_size=6, seed=4).sample(trainer, module)
    torch.manual_seed(1)                                   # training moved the global RNG
    b = SampleCallback(10, count=6, spec=spec, batch_size=2, seed=4).sample(trainer, module)
    assert torch.equal(a, b)


def test_sample_callback_runs_once_per_optimizer_step_and_needs_images(tmp_path):
    """Under gradient accumulation the micro-batches of a step do not each sample (before:
    k-1 times at step 0 and k times at every sampling step)."""
    from types import SimpleNamespace

    import pytest

    from radiodiff.config import ConfigError
    cb = SampleCallback(every_steps=2, count=4)
    calls = []
    cb.run = lambda trainer, module: calls.append(trainer.global_step)
    trainer = SimpleNamespace(global_step=0)
    for micro in range(6):  # 3 optimizer steps of 2 micro-batches
        cb.on_train_batch_start(trainer, None, None, micro)
        trainer.global_step += micro % 2
        cb.on_train_batch_end(trainer, None, None, None, micro)
    assert calls == [2]
    cfg = load_config(["train.sample_every_steps=5", "train.sample_count=0"])
    with pytest.raises(ConfigError, match=r"^train.sample_count=0: must be >= 1 while "
                                          r"train.sample_every_steps=5"):
        SampleCallback.from_config(cfg, tmp_path)
