"""Training: loss goes down, resume equals uninterrupted, loggers, DDP on CPU, multirun."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from helpers.fitwarnings import TINY_FIT_WARNINGS
from radiodiff.config import load_config
from radiodiff.diffusion.edm import edm_loss
from radiodiff.seeds import step_generator
from radiodiff.training.fit import train

REPO = Path(__file__).resolve().parents[2]
pytestmark = TINY_FIT_WARNINGS


def cfg_for(tmp_path, tiny_h5, *extra):
    return load_config([
        "data=tiny", "model=unet_tiny", "logger=csv", "trainer.precision=32",
        f"data.out={tiny_h5}", f"paths.output_dir={tmp_path}/out",
        f"paths.ckpt_root={tmp_path}/ckpt", "train.lr_rampup_kimg=0",
        "train.sample_every_steps=0", "train.val_every_steps=1000", "train.val_batches=1",
        "train.ckpt_every_minutes=0", *extra])


class StopAt(Callback):
    """Simulate a session that ends after ``step`` steps."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _state(ckpt):
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def test_step_generator_depends_only_on_seed_step_rank():
    # resumed runs continue exactly only while this rule stays the same
    for seed, step, rank in ((0, 0, 0), (123, 999, 3), (2**33, 10**7, 1)):
        w = np.random.SeedSequence([seed, 7, step, rank]).generate_state(2, np.uint32)
        expected = torch.Generator().manual_seed(int(w[0]) << 31 | int(w[1]) >> 1)
        g = step_generator(seed, step, rank, torch.device("cpu"))
        assert g.initial_seed() == expected.initial_seed()
        assert torch.equal(torch.randn(5, generator=g), torch.randn(5, generator=expected))
        # the micro-batches of an accumulated step: one more word, each its own noise
        w = np.random.SeedSequence([seed, 7, step, rank, 1]).generate_state(2, np.uint32)
        micro = step_generator(seed, step, rank, torch.device("cpu"), micro=1)
        assert micro.initial_seed() == int(w[0]) << 31 | int(w[1]) >> 1 != g.initial_seed()


def test_a_few_steps_lower_the_loss(tmp_path, tiny_h5):
    from radiodiff.data.datamodule import CutoutDataModule
    cfg = cfg_for(tmp_path, tiny_h5, "train.total_kimg=0.48", "train.lr=2e-3",
                  "train.ckpt_every_steps=0")
    captured = {}

    class Probe(Callback):
        def _loss(self, module):
            x0 = captured["x0"].to(module.device)
            g = step_generator(123, 0, 0, x0.device)
            with torch.no_grad():
                return float(edm_loss(module.net, x0, None, generator=g)[0].mean())

        def on_train_start(self, trainer, module):
            captured["before"] = self._loss(module)

        def on_train_end(self, trainer, module):
            captured["after"] = self._loss(module)

    dm = CutoutDataModule.from_config(cfg.data, seed=0)
    dm.setup("fit")
    captured["x0"] = torch.stack([dm.train_dataset[i][0] for i in range(32)])
    summary = train(cfg, extra_callbacks=[Probe()])
    assert summary["steps"] == 60
    assert captured["after"] < 0.8 * captured["before"]


def test_resume_equals_uninterrupted(tmp_path, tiny_h5):
    # with a warm-up and a cool-down the session ends within (the rate is a function of the
    # images seen: the resumed piece computes the same floats); with dropout (its masks are
    # seeded per step too)
    common = ("train.total_kimg=0.096", "train.ckpt_every_steps=4", "train.val_every_steps=5",
              "train.sample_every_steps=0", "model.label_dropout=0.2", "model.dropout=0.1",
              "train.lr_rampup_kimg=0.024", "train.lr_decay_start_kimg=0.04",
              "train.lr_decay_kimg=0.056")
    whole = train(cfg_for(tmp_path / "a", tiny_h5, *common))
    assert whole["steps"] == 12 and whole["resumed_from"] is None

    cfg_b = cfg_for(tmp_path / "b", tiny_h5, *common)
    first = train(cfg_b, extra_callbacks=[StopAt(7)])  # a session killed after step 7
    assert first["steps"] == 7
    second = train(cfg_b)                                # next session: auto-resume
    assert second["resumed_from"] == first["checkpoint"] and second["steps"] == 12

    a, b = _state(whole["checkpoint"]), _state(second["checkpoint"])
    assert a["global_step"] == b["global_step"] == 12
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key  # net and EMA, bit for bit
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for i in opt_a:
        assert torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"])


def test_gradient_accumulation_resumes_exactly(tmp_path, tiny_h5, monkeypatch):
    """Accumulating 2 micro-batches per step: each micro-batch draws its own noise; a piece
    that runs out of time stops at the end of a step, not between its micro-batches; a run
    killed between them (a checkpoint due at every batch) resumes exactly."""
    from radiodiff.training import module as module_mod
    drawn = []

    def recording(seed, step, rank, device, micro=0):
        drawn.append((step, micro))
        return step_generator(seed, step, rank, device, micro)
    monkeypatch.setattr(module_mod, "step_generator", recording)
    common = ("train.total_kimg=0.064", "train.ckpt_every_steps=0",
              "train.ckpt_every_minutes=1e-9", "trainer.accumulate_grad_batches=2",
              "data.loader.batch_size=4")
    whole = train(cfg_for(tmp_path / "a", tiny_h5, *common))
    assert whole["steps"] == 8 and drawn == [(k // 2, k % 2) for k in range(16)]

    class KillMidStep(Callback):  # after the first micro-batch of step 6
        def on_train_batch_start(self, trainer, *args):
            self.step = trainer.global_step

        def on_train_batch_end(self, trainer, *args):
            if self.step == trainer.global_step == 5:
                raise RuntimeError("killed")
    timed = train(cfg_for(tmp_path / "b", tiny_h5, *common, "train.max_minutes=1e-9"))
    assert timed["steps"] == 1  # out of time after the first micro-batch: ends the step
    cfg_b = cfg_for(tmp_path / "b", tiny_h5, *common)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_b, extra_callbacks=[KillMidStep()])
    assert _state(Path(cfg_b.train.ckpt_dir) / "last.ckpt")["global_step"] == 5
    assert train(cfg_b)["steps"] == 8
    a, b = _state(whole["checkpoint"]), _state(cfg_b.train.ckpt_dir + "/last.ckpt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key

    class StopMidStep(Callback):  # as Lightning's max_time timer: after any batch
        def on_train_batch_start(self, trainer, *args):
            self.step = trainer.global_step

        def on_train_batch_end(self, trainer, *args):
            if self.step == trainer.global_step == 3:   # first micro-batch of step 4
                trainer.should_stop = True
    cfg_c = cfg_for(tmp_path / "c", tiny_h5, *common)
    assert train(cfg_c, extra_callbacks=[StopMidStep()])["steps"] == 4  # held to the end
    assert _state(cfg_c.train.ckpt_dir + "/last.ckpt")["global_step"] == 4
    assert train(cfg_c)["steps"] == 8
    c = _state(cfg_c.train.ckpt_dir + "/last.ckpt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, c["state_dict"][key]), key


def test_resume_with_another_batch_size_counts_images(tmp_path, tiny_h5):
    # A CPU piece at batch 4, then e.g. a GPU piece at batch 8: images seen, the remaining
    # length and the data stream all continue from the images already seen.
    common = ("train.total_kimg=0.044", "train.ckpt_every_steps=0")
    first = train(cfg_for(tmp_path, tiny_h5, *common, "data.loader.batch_size=4"),
                  extra_callbacks=[StopAt(3)])
    assert _state(first["checkpoint"])["images_seen"] == 12
    starts = []

    class Start(Callback):
        def on_train_start(self, trainer, module):
            starts.append((trainer.train_dataloader.sampler.start, module.images_seen))

    second = train(cfg_for(tmp_path, tiny_h5, *common, "data.loader.batch_size=8"),
                   extra_callbacks=[Start()])
    assert starts == [(12, 12)]
    ckpt = _state(second["checkpoint"])
    assert ckpt["global_step"] == 3 + 4 and ckpt["images_seen"] == 12 + 4 * 8 == 44
    assert second["images_seen"] == 44


def test_lr_warmup_counts_images_across_batch_sizes(tmp_path, tiny_h5):
    # warm-up over 80 images: 3 steps at batch 4 (12 images), then 2 at batch 8 (28):
    # the rate after the last step is lr * (28 + 8) / 80, not lr * (5 + 1) * 8 / 80
    common = ("train.total_kimg=0.028", "train.ckpt_every_steps=0", "train.lr=0.001",
              "train.lr_rampup_kimg=0.08")
    train(cfg_for(tmp_path, tiny_h5, *common, "data.loader.batch_size=4"),
          extra_callbacks=[StopAt(3)])
    second = train(cfg_for(tmp_path, tiny_h5, *common, "data.loader.batch_size=8"))
    ckpt = _state(second["checkpoint"])
    assert ckpt["images_seen"] == 28
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.001 * 36 / 80)


def test_lr_cooldown_branches_from_a_constant_rate_checkpoint(tmp_path, tiny_h5):
    # warmup-stable-decay: 3 steps of 4 images at the constant rate, then a branch (its own
    # run name, train.resume=<ckpt>, resume_force) cools down over 32 images from image 12
    common = ("train.total_kimg=0.044", "train.ckpt_every_steps=0", "train.lr=0.001",
              "data.loader.batch_size=4")
    first = train(cfg_for(tmp_path, tiny_h5, *common), extra_callbacks=[StopAt(3)])
    lrs, starts = [], []

    class Rate(Callback):
        def on_train_batch_start(self, trainer, *args):
            if not starts:
                starts.append(trainer.optimizers[0].param_groups[0]["lr"])

        def on_train_batch_end(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    # the branch also doubles the peak rate (the restored scheduler's own is replaced)
    branch = train(cfg_for(tmp_path, tiny_h5, *common, "train.run_name=cool",
                           f"train.resume={first['checkpoint']}", "train.resume_force=true",
                           "train.lr=0.002", "train.lr_decay_start_kimg=0.012",
                           "train.lr_decay_kimg=0.032"),
                   extra_callbacks=[Rate()])
    # the step that brings the count to n images runs at lr * factor(n); read after each
    # step, the rate is the next step's: n = 16 (the branch's first step, set at its start,
    # not the checkpoint's constant rate), then 20, ..., 48 (0 from 44 on)
    assert starts == [pytest.approx(0.002 * (1 - 4 / 32))]
    assert lrs == pytest.approx([0.002 * max(0.0, 1 - (n - 12) / 32) for n in range(20, 52, 4)])
    ckpt = _state(branch["checkpoint"])
    assert ckpt["images_seen"] == 44 and Path(branch["checkpoint"]).parent.name == "cool"
    assert ckpt["hyper_parameters"]["cfg"]["train"]["lr_decay_kimg"] == 0.032
    assert _state(first["checkpoint"])["images_seen"] == 12  # the constant-rate run is untouched


def test_lr_factor_warms_up_holds_and_cools_down_in_images():
    from radiodiff.training.module import OptimSettings
    o = OptimSettings(lr=1e-3, lr_rampup_kimg=2, lr_decay_start_kimg=10, lr_decay_kimg=4)
    assert [o.factor(n) for n in (0, 1000, 2000, 5000, 10_000, 12_000, 14_000, 20_000)] == \
        pytest.approx([0, 0.5, 1, 1, 1, 0.5, 0, 0])
    assert o.decay_end_kimg == 14 and OptimSettings().decay_end_kimg is None
    assert OptimSettings(lr_rampup_kimg=0).factor(0) == 1.0
    overlap = OptimSettings(lr_rampup_kimg=2, lr_decay_start_kimg=1, lr_decay_kimg=2)
    assert overlap.factor(1500) == pytest.approx(0.75 * 0.75)  # the two multiply


def test_a_run_past_the_end_of_its_cool_down_is_warned_of(caplog):
    from radiodiff.training.fit import check_schedule
    ok = load_config(["train.total_kimg=14", "train.lr_decay_start_kimg=10",
                      "train.lr_decay_kimg=4"])
    with caplog.at_level("WARNING", logger="radiodiff.training.fit"):
        check_schedule(ok.train)
        assert caplog.text == ""
        check_schedule(load_config(["train.total_kimg=20", "train.lr_decay_start_kimg=10",
                                    "train.lr_decay_kimg=4"]).train)
    assert "train.total_kimg=20 goes past the end of the cool-down at 14 kimg" in caplog.text


@pytest.mark.parametrize("override, message", [
    ("train.lr_decay_kimg=-1", "train.lr_decay_kimg=-1.0: must be a finite number >= 0"),
    ("train.lr_decay_kimg=5", "train.lr_decay_start_kimg=None: a cool-down"),
    ("train.lr_decay_start_kimg=5", "train.lr_decay_start_kimg=5.0: no cool-down length"),
    ("train.lr=nan", "train.lr=nan: must be a finite number >= 0"),
])
def test_absurd_learning_rate_schedules_are_refused_in_one_line(tmp_path, tiny_h5, override,
                                                                message):
    from radiodiff.config import ConfigError
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(cfg_for(tmp_path, tiny_h5, "train.total_kimg=0.008", override))
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "out").exists()  # no folder


def test_checkpoint_is_code_free_and_records_the_run(tmp_path, tiny_h5):
    summary = train(cfg_for(tmp_path, tiny_h5, "train.total_kimg=0.016"))
    ckpt = _state(summary["checkpoint"])  # weights_only=True: no pickled code
    hp = ckpt["hyper_parameters"]
    assert hp["cfg"]["model"]["name"] == "unet_tiny" and hp["num_classes"] == 4
    assert hp["dataset"]["data_sha256"] and 0 < hp["sigma_data"] < 1
    assert any(k.startswith("ema.") for k in ckpt["state_dict"])
    assert (Path(summary["checkpoint"]).parent / "config.yaml").is_file()
    names = sorted(p.name for p in Path(summary["checkpoint"]).parent.iterdir())
    # hashes beside the checkpoint(s), no temporary (.rdtmp-<pid>-last.ckpt, *.tmp-*)
    assert [n for n in names if n != "prev.ckpt"] == ["SHA256SUMS", "config.yaml", "last.ckpt"]


def test_sample_callback_logs_metrics_and_grid(tmp_path, tiny_h5):
    summary = train(cfg_for(tmp_path, tiny_h5, "train.total_kimg=0.032",
                            "train.sample_every_steps=2", "train.sample_count=6",
                            "sampler.steps=3", "train.sample_batch_size=4",
                            "trainer.log_every_n_steps=2"))
    run = Path(summary["run_dir"])
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step_00000002.png", "step_00000004.png"]
    metrics = next(run.glob("csv/*/metrics.csv")).read_text()
    for key in ("sample/w1_mean", "sample/w1_cx", "sample/w1_orientation", "train/loss",
                "train/loss_sigma_0.2-0.5"):
        assert key in metrics


def test_tensorboard_logger_gets_histograms(tmp_path, tiny_h5):
    summary = train(cfg_for(tmp_path, tiny_h5, "logger=tensorboard", "train.total_kimg=0.016",
                            "train.sample_every_steps=2", "train.sample_count=4",
                            "sampler.steps=2"))
    events = list(Path(summary["run_dir"]).glob("tensorboard/*/events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000


def _run(args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               WANDB_MODE="offline", WANDB_SILENT="true")
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _cli_args(tmp_path, tiny_h5, *extra):
    return ["data=tiny", "model=unet_tiny", "trainer.precision=32", f"data.out={tiny_h5}",
            f"paths.output_dir={tmp_path}/out", f"paths.ckpt_root={tmp_path}/ckpt",
            "train.sample_every_steps=0", "train.val_every_steps=1000",
            "train.val_batches=1", *extra]


@pytest.mark.slow
def test_wandb_offline_multirun_two_jobs(tmp_path, tiny_h5):
    # The default logger (W&B) in offline mode: no account, no network.
    proc = _run(["-m", "seed=0,1", *_cli_args(tmp_path, tiny_h5, "train.total_kimg=0.016")],
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for seed in (0, 1):
        assert (tmp_path / "ckpt" / f"tiny-unet_tiny-s{seed}" / "last.ckpt").is_file()
    runs = list((tmp_path / "out" / "multirun").glob("*/*/*/wandb/offline-run-*"))
    assert len(runs) == 2, proc.stdout[-2000:]
    # after each job: where its offline run is and how to upload it
    synced = re.findall(r"wandb sync (\S+)", proc.stdout)
    assert sorted(Path(d).resolve() for d in synced) == sorted(r.resolve() for r in runs)


def test_wandb_offline_dir_is_the_run_folder_sync_takes():
    from types import SimpleNamespace

    from radiodiff.training.fit import wandb_offline_dir
    files = "/r/wandb/offline-run-20260101_000000-abc/files"
    assert wandb_offline_dir(SimpleNamespace(offline=True, dir=files)) == str(Path(files).parent)
    assert wandb_offline_dir(SimpleNamespace(offline=False, dir=files)) is None
    assert wandb_offline_dir(None) is None


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, tiny_h5):
    # devices as a string, as Lightning takes it: the length in steps follows the world
    # size Lightning resolves (counted as 1 device, the run would go on twice as long)
    proc = _run(_cli_args(tmp_path, tiny_h5, "trainer=ddp", "trainer.accelerator=cpu",
                          "trainer.devices='2'", "trainer.precision=32", "logger=csv",
                          "train.total_kimg=0.064", "train.sample_every_steps=2",
                          "train.sample_count=4", "sampler.steps=2",
                          "trainer.log_every_n_steps=2"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = _state(tmp_path / "ckpt" / "tiny-unet_tiny-s0" / "last.ckpt")
    # 64 images / (8 per rank * 2 ranks) = 4 steps: both ranks consumed data
    assert ckpt["global_step"] == 4 and ckpt["images_seen"] == 64
    assert "trained 4 steps (64 images)" in proc.stdout


def test_training_with_flux_and_size_conditions(tmp_path):
    import numpy as np
    from radiodiff.data.prepared import FLOAT_COLUMNS, data_sha256, write_prepared
    rng = np.random.default_rng(0)
    n = 48
    y, x = np.mgrid[:16, :16]
    images = np.exp(-((x - 7.5) ** 2 + (y - 7.5) ** 2)[None] / (2 * rng.uniform(1, 3, n)[:, None,
                                                                                     None] ** 2))
    cols = {c: rng.uniform(0.5, 2.0, n) for c in FLOAT_COLUMNS}
    cols["peak_flux"] = 10 ** rng.uniform(-3, -1, n)
    cols["las_arcsec"] = rng.uniform(10, 100, n)
    cols.update(label=(np.arange(n) % 2).astype(np.int16),
                split=np.array(["train"] * 36 + ["valid"] * 12, dtype=object),
                source_id=np.array([f"s{i}" for i in range(n)], dtype=object),
                flags=np.zeros(n, np.uint8), beam_arcsec=np.full((n, 2), 6.0))
    images = images[:, None].astype(np.float32)
    path = write_prepared(tmp_path / "cond.h5", images, cols,
                          {"name": "cond", "classes": ["A", "B"],
                           "data_sha256": data_sha256(images, cols)})
    cfg = cfg_for(tmp_path, path, "data.loader.conditions=[label,peak_flux,las_arcsec]",
                  "data.loader.random_val_fraction=null", "train.total_kimg=0.024",
                  "train.condition_transform=boxcox")
    summary = train(cfg)
    hp = _state(summary["checkpoint"])["hyper_parameters"]
    assert hp["scalar_conditions"] == ["peak_flux", "las_arcsec"] and hp["num_classes"] == 2
    assert hp["transform"]["conditions"]["peak_flux"]["method"] == "boxcox"
    # evaluation requests the reference rows' flux and size and measures them back
    from radiodiff.cli import main
    assert main(["evaluate", "--reference", str(path), "--split", "valid", "--model",
                 summary["checkpoint"], "--n", "6", "--steps", "2", "--no-sourcefinder",
                 "--rvf-folds", "2", "--rvf-epochs", "1", "--classifier-epochs", "1",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(m["conditioning"]) == {"peak_flux", "las_arcsec"}
    assert m["conditioning"]["las_arcsec"]["n"] == 6 and m["conditioning"]["peak_flux"]["n"] == 6


def test_export_then_sample_gives_identical_images(tmp_path, tiny_h5):
    from radiodiff.cli import main
    from radiodiff.pipeline.release import load_release
    from radiodiff.pipeline.checkpoint import export_checkpoint
    from radiodiff.diffusion.sampling import (heun_sample, karras_sigmas, seeded_noise,
                                              start_state)
    from radiodiff.diffusion.unet import build_unet
    from radiodiff.diffusion.edm import EDMDenoiser
    summary = train(cfg_for(tmp_path, tiny_h5, "train.total_kimg=0.024"))
    release = load_release(export_checkpoint(summary["checkpoint"], tmp_path / "rel"))
    assert release.classes == ["FRI", "FRII", "Compact", "Bent"]
    assert release.meta["step"] == 3 and release.meta["images_seen"] == 24
    assert release.meta["negatives"] == "clip" and release.meta["data_sha256"]
    # the same EMA weights straight from the checkpoint
    ckpt = _state(summary["checkpoint"])
    hp = ckpt["hyper_parameters"]
    cfg = hp["cfg"]
    from omegaconf import OmegaConf
    ref = EDMDenoiser(build_unet(OmegaConf.create(cfg).model, 16, 1, 4), hp["sigma_data"])
    ref.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items()
                         if k.startswith("ema.")})
    sigmas = karras_sigmas(4)
    x = start_state(seeded_noise([0, 1, 2], (1, 16, 16)), float(sigmas[0]))
    cond = {"label": torch.tensor([0, 1, 3])}
    with torch.no_grad():
        a = heun_sample(ref.eval(), x, sigmas, cond, dtype=torch.float32)
        b = heun_sample(release.denoiser, x, sigmas, cond, dtype=torch.float32)
    assert torch.equal(a, b)
    assert main(["sample", "--model", str(tmp_path / "rel"), "--n", "3", "--class", "FRII",
                 "--steps", "3", "--out", str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s").glob("sample_*.fits"))) == 3
    assert main(["export", "--ckpt", str(tmp_path / "nope.ckpt"), "--out", "x"]) == 2


def test_max_minutes_limits_each_piece_not_the_total(tmp_path, tiny_h5):
    cfg = cfg_for(tmp_path, tiny_h5, "train.total_kimg=100", "train.max_minutes=0.04",
                  "train.ckpt_every_steps=0")
    first = train(cfg)
    assert 0 < first["steps"] < 12500
    second = train(cfg)  # a new piece gets its own 2.4 s, whatever the first one used
    assert second["resumed_from"] and second["steps"] > first["steps"]


def test_max_time_stops_and_checkpoints(tmp_path, tiny_h5):
    summary = train(cfg_for(tmp_path, tiny_h5, "train.total_kimg=100",
                            "trainer.max_time=00:00:00:03", "train.ckpt_every_steps=0"))
    assert 0 < summary["steps"] < 12500  # stopped by the clock, not by total_kimg
    assert _state(summary["checkpoint"])["global_step"] == summary["steps"]


def test_evaluate_a_checkpoint_end_to_end(tmp_path, tiny_h5, capsys):
    from radiodiff.cli import main
    summary = train(cfg_for(tmp_path, tiny_h5, "train.total_kimg=0.016"))
    # no --reference: the run's own data (its data.out, checked by the data_sha256)
    rc = main(["evaluate", "--model", summary["checkpoint"],
               "--n", "12", "--steps", "2", "--rvf-folds", "2", "--rvf-epochs", "1",
               "--classifier-epochs", "1", "--no-sourcefinder",
               "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "eval")])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert f"reference set: {tiny_h5} (the data of checkpoint " in printed.out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["sets"]["fake"]["n"] == 12 and "fake_accuracy" in metrics["class_fidelity"]
    assert (tmp_path / "eval" / "release" / "model.safetensors").is_file()
    title = (tmp_path / "eval" / "report.md").read_text().splitlines()[0]
    assert f"generated (checkpoint {Path(summary['checkpoint']).parent.name}/" in title


def test_warm_start_from_a_release(tmp_path, tiny_h5, caplog):
    caplog.set_level("WARNING", logger="radiodiff.training.fit")
    from radiodiff.pipeline.release import load_release
    from radiodiff.pipeline.checkpoint import export_checkpoint
    first = train(cfg_for(tmp_path / "a", tiny_h5, "train.total_kimg=0.016"))
    rel = export_checkpoint(first["checkpoint"], tmp_path / "rel")
    seen = {}

    class Grab(Callback):
        def on_train_start(self, trainer, module):
            seen["net"] = {k: v.clone() for k, v in module.net.state_dict().items()}

    second = train(cfg_for(tmp_path / "b", tiny_h5, "train.total_kimg=0.008",
                           f"train.init_from={rel}"), extra_callbacks=[Grab()])
    start = load_release(rel)
    expected = start.denoiser.state_dict()
    assert all(torch.equal(seen["net"][k], v) for k, v in expected.items())
    # the lineage reaches the next release: start weights and images seen before this run
    meta = load_release(export_checkpoint(second["checkpoint"], tmp_path / "rel2")).meta
    assert meta["warm_start"] == {"weights_sha256": start.weights_sha256,
                                  "images_seen_total": start.meta["images_seen"],
                                  "data_seen": ["tiny"]}
    assert meta["images_seen"] == second["images_seen"] and "warm_start" not in start.meta
    resumed = train(cfg_for(tmp_path / "b", tiny_h5, "train.total_kimg=0.016",
                            f"train.init_from={rel}"))  # a later piece resumes the run
    assert resumed["resumed_from"] == second["checkpoint"]
    again = load_release(export_checkpoint(resumed["checkpoint"], tmp_path / "rel3")).meta
    assert again["warm_start"] == meta["warm_start"]
    assert "has seen data=" not in caplog.text  # same set: no warning
    # the code that trained it, piece by piece (one entry: the same code resumed)
    from radiodiff.io.provenance import git_commit
    assert again["training_code"] == meta["training_code"] == [dict(
        git_commit=git_commit(), package_version=meta["package_version"], from_images=0)]

    other = train(cfg_for(tmp_path / "d", tiny_h5, "data.name=tiny2", "train.total_kimg=0.004",
                          f"train.init_from={rel}"))
    assert f"train.init_from={rel} has seen data=tiny, this run trains on data=tiny2" \
        in caplog.text and "Shared sources" in caplog.text
    # the chain remembers: tiny -> tiny2 -> back to a tiny2 run still warns of tiny
    caplog.clear()
    rel_other = export_checkpoint(other["checkpoint"], tmp_path / "rel_other")
    assert load_release(rel_other).meta["warm_start"]["data_seen"] == ["tiny"]
    train(cfg_for(tmp_path / "e", tiny_h5, "data.name=tiny2", "train.total_kimg=0.004",
                  f"train.init_from={rel_other}"))
    assert f"train.init_from={rel_other} has seen data=tiny, this run trains on data=tiny2" \
        in caplog.text and "not recorded" not in caplog.text
    # a warm-started release exported before data_seen was recorded: the chain is unknown
    import json
    import shutil
    from radiodiff.io.artifacts import write_manifest
    from radiodiff.io.integrity import read_manifest
    old = shutil.copytree(rel_other, tmp_path / "rel_old")
    meta_old = json.loads((old / "meta.json").read_text())
    del meta_old["warm_start"]["data_seen"]
    (old / "meta.json").write_text(json.dumps(meta_old))
    write_manifest(old, list(read_manifest(old)))
    caplog.clear()
    train(cfg_for(tmp_path / "f", tiny_h5, "data.name=tiny2", "train.total_kimg=0.004",
                  f"train.init_from={old}"))
    assert f"train.init_from={old} was warm-started itself" in caplog.text
    assert "has seen data=" not in caplog.text  # its own data is tiny2's: nothing else known
    with pytest.raises(ValueError, match="do not fit model=unet_small"):
        train(cfg_for(tmp_path / "c", tiny_h5, "model=unet_small", "model.attn_resolutions=[8]",
                      "train.total_kimg=0.008", f"train.init_from={rel}"))
    assert not (tmp_path / "c" / "ckpt").exists()  # refused before the run's folder is made


def test_the_code_of_each_piece_is_recorded_when_it_changes(monkeypatch):
    import radiodiff.io.provenance as provenance
    from radiodiff.training.module import record_training_code
    pieces = []
    for commit, seen in (("aaa", 0), ("aaa", 64), ("bbb-dirty", 128), ("bbb-dirty", 192)):
        monkeypatch.setattr(provenance, "git_commit", lambda: commit)
        record_training_code(pieces, seen)
    assert [(p["git_commit"], p["from_images"]) for p in pieces] == [("aaa", 0),
                                                                     ("bbb-dirty", 128)]


def test_sigma_data_is_measured_in_memory_or_lazily(tmp_path, tiny_h5):
    from radiodiff.data.datamodule import CutoutDataModule
    from radiodiff.training.fit import _measure_sigma_data
    cfg = cfg_for(tmp_path, tiny_h5)
    values = []
    for in_memory in (True, False):
        dm = CutoutDataModule.from_config(cfg.data, seed=0)
        dm.in_memory = in_memory
        dm.setup("fit")
        values.append(_measure_sigma_data(dm))
    assert 0 < values[0] < 0.5 and values[1] == pytest.approx(values[0], rel=1e-6)


def test_stretched_run_with_an_ema_bank_exports_each_ema(tmp_path, tiny_h5):
    """schedule=stretch: sigma_data measured on the stretched images, noise relative to it,
    the intensity transform and the chosen EMA recorded in the release."""
    import math

    from radiodiff.data.datamodule import CutoutDataModule
    from radiodiff.diffusion.intensity import IntensityTransform
    from radiodiff.pipeline.release import load_release
    from radiodiff.pipeline.checkpoint import export_checkpoint
    from radiodiff.training.fit import _measure_sigma_data
    cfg = cfg_for(tmp_path, tiny_h5, "schedule=stretch", "train.total_kimg=0.024",
                  "train.ema_bank_kimg=[0.01,1]", "train.val_every_steps=2",
                  "train.ema_rampup_ratio=null")
    res = train(cfg)
    state = _state(res["checkpoint"])
    hp = state["hyper_parameters"]
    assert hp["intensity"]["stretch"] == "power"
    dm = CutoutDataModule.from_config(cfg.data, seed=0)
    dm.setup("fit")
    sd = _measure_sigma_data(dm, IntensityTransform("power", 0.25))
    assert hp["sigma_data"] == pytest.approx(sd) and sd > _measure_sigma_data(dm)
    assert any(k.startswith("ema_bank.1.") for k in state["state_dict"])
    assert "val/loss_ema0.01k" in res["metrics"]
    rels = {h: load_release(export_checkpoint(res["checkpoint"], tmp_path / f"r{h}",
                                              ema_halflife_kimg=h)) for h in (0.01, 1.0)}
    assert rels[1.0].meta["ema_halflife_kimg"] == 1.0 and rels[1.0].intensity.stretch == "power"
    assert rels[1.0].meta["model_args"] == hp["model_args"]  # one factory, stored arguments
    w = {h: r.denoiser.state_dict()["net.conv_out.weight"] for h, r in rels.items()}
    assert not torch.equal(w[0.01], w[1.0])  # two different averages
    with pytest.raises(ValueError, match=r"no EMA with a half-life of 7 kimg.*kept 5, 0.01, 1"):
        export_checkpoint(res["checkpoint"], tmp_path / "r7", ema_halflife_kimg=7)
    # the module trains at ln sigma ~ N(ln sigma_data - 0.51, 1.2^2)
    from radiodiff.diffusion.edm import noise_distribution
    assert noise_distribution(-0.51, 1.2, sd, True)[0] == pytest.approx(math.log(sd) - 0.51)


def test_auto_precision_follows_the_hardware(monkeypatch):
    from radiodiff.training import fit
    assert fit.resolve_precision("32", "cpu") == "32"
    monkeypatch.setattr(fit, "cpu_has_bf16", lambda: False)
    assert fit.resolve_precision("auto", "cpu") == "32"
    monkeypatch.setattr(fit, "cpu_has_bf16", lambda: True)
    assert fit.resolve_precision("auto", "cpu") == "bf16-mixed"
    assert fit.resolve_precision("auto", "gpu") == "bf16-mixed"


# ------------------------------------------------------------ trainer, logger, callbacks
def test_trainer_logger_and_callbacks_come_from_the_config(tmp_path):
    from lightning.pytorch.callbacks import LearningRateMonitor, Timer
    from lightning.pytorch.loggers import CSVLogger

    from radiodiff.training.fit import ResumeCheckpoint, TimeBox, build_callbacks, build_trainer
    from radiodiff.training.progress import ProgressLog
    cfg = load_config(["model=unet_attn", "data=lotss", "trainer.precision=bf16-mixed",
                       "trainer.max_time=00:01:00:00", "logger.kind=csv",
                       "train.val_every_steps=7", f"paths.ckpt_root={tmp_path}/ckpt",
                       "+callbacks.lr={_target_:lightning.pytorch.callbacks.LearningRateMonitor}"])
    callbacks = build_callbacks(cfg)
    assert [type(c) for c in callbacks] == [ResumeCheckpoint, TimeBox, ProgressLog,
                                            LearningRateMonitor]
    assert callbacks[0].dirpath == tmp_path / "ckpt" / "lotss-unet_attn-s0"
    trainer = build_trainer(cfg, tmp_path / "run", 5, callbacks)
    assert trainer.max_steps == 5 and trainer.val_check_interval == 7
    assert trainer.precision == "bf16-mixed"
    assert isinstance(trainer.logger, CSVLogger) and trainer.logger.save_dir == str(
        tmp_path / "run")
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    assert timer._duration == 3600
    cfg = load_config(["callbacks.time_box=null"])
    assert [type(c) for c in build_callbacks(cfg)] == [ResumeCheckpoint, ProgressLog]
    # validation every 7 optimizer steps of 3 accumulated batches (Lightning counts batches)
    cfg = load_config(["train.val_every_steps=7", "trainer.accumulate_grad_batches=3",
                       "logger.kind=csv"])
    assert build_trainer(cfg, tmp_path / "run3", 5, []).val_check_interval == 21


@pytest.mark.parametrize("override, message", [
    ("logger.kind=nope", r"^logger.kind='nope': expected wandb \| csv \| tensorboard$"),
    ("+trainer.bogus=1", r"^trainer: .*bogus"),
    ("+logger.kinds.csv.bogus=1", r"^logger.kinds.csv: .*bogus"),
    ("trainer.accumulate_grad_batches=0", r"^trainer.accumulate_grad_batches=0: must be >= 1$"),
    ("callbacks.time_box._target_=radiodiff.Nope", r"^callbacks.time_box: .*radiodiff.Nope"),
])
def test_bad_trainer_logger_callback_values_are_one_line(tmp_path, override, message):
    from radiodiff.config import ConfigError
    from radiodiff.training.fit import build_callbacks, build_trainer
    cfg = load_config([override, "logger=csv"])
    with pytest.raises(ConfigError, match=message):
        build_trainer(cfg, tmp_path, 2, build_callbacks(cfg))


def test_a_run_refuses_a_file_prepared_with_other_data_options(tmp_path, tiny_h5):
    """A changed cut or split seed on the same data.out: the file holds the old preparation,
    so the run stops before training, naming the options (a loader option does not count),
    and creates no checkpoint."""
    from radiodiff.config import ConfigError
    cfg = cfg_for(tmp_path, tiny_h5, "data.crop_arcsec=200", "data.split.seed=5",
                  "data.loader.batch_size=4", "train.total_kimg=0.016")
    with pytest.raises(ConfigError, match=r"was prepared with other data options than this "
                       r"run's: data.crop_arcsec=288.0 \(now 200.0\); data.split.seed=0 "
                       r"\(now 5\); prepare it again") as err:
        train(cfg)
    assert "loader" not in str(err.value) and str(tiny_h5) in str(err.value)
    assert not any((tmp_path / "ckpt").rglob("*.ckpt"))


def test_a_short_run_logs_the_loss_by_sigma(tmp_path, tiny_h5, caplog):
    import logging
    with caplog.at_level(logging.INFO, logger="radiodiff.training.module"):
        summary = train(cfg_for(tmp_path, tiny_h5, "train.total_kimg=0.032",
                                "train.val_every_steps=2"))
    lines = [r.getMessage() for r in caplog.records if "loss by sigma" in r.getMessage()]
    # after each validation (steps 2 and 4), then over the whole run
    assert [line.split(":")[0] for line in lines] == [
        "loss by sigma (since last validation, step 2)",
        "loss by sigma (since last validation, step 4)", "loss by sigma (this run, step 4)"]
    bins = lines[-1].split(": ", 1)[1].split(" | ")
    assert bins and all(re.fullmatch(r"\[[0-9.e-]+,([0-9.e-]+|inf)\) [0-9.e-]+", b)
                        for b in bins), lines[-1]
    metrics = next(Path(summary["run_dir"]).glob("csv/*/metrics.csv")).read_text()
    assert "loss_sigma/0.2-0.5" in metrics or "loss_sigma/0.05-0.2" in metrics
