"""Training progress lines (images/s, finish estimates) and the throughput measurement."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from radiodiff.config import load_config
from radiodiff.training.progress import ProgressLog, duration
from radiodiff.training.throughput import ThroughputSetting, measure_training


def test_duration_words():
    assert duration(45) == "45 s"
    assert duration(750) == "12 m 30 s"
    assert duration(3 * 3600 + 5 * 60 + 9) == "3 h 05 m"
    assert duration(-3) == "0 s"


class _Module:
    def __init__(self):
        self.images_seen = 0
        self.logged = {}

    def log(self, name, value, **kw):
        self.logged[name] = value


def test_progress_log_measures_images_per_second_and_estimates_the_finish(monkeypatch,
                                                                          caplog):
    clock = {"t": 100.0}
    monkeypatch.setattr("radiodiff.training.progress.time.monotonic", lambda: clock["t"])
    cb = ProgressLog(every_minutes=1.0, warmup_steps=2, total_kimg=1.0, max_minutes=10)
    trainer = SimpleNamespace(is_global_zero=True, global_step=0,
                              callback_metrics={"train/loss": 0.5},
                              optimizers=[SimpleNamespace(param_groups=[{"lr": 2.5e-4}])])
    module = _Module()
    cb.on_train_start(trainer, module)
    caplog.set_level(logging.INFO, logger="radiodiff.training.progress")
    for step in range(1, 34):  # 10 images per step, 2 s per step: 5 images/s
        clock["t"] += 2.0
        module.images_seen += 10
        trainer.global_step = step
        cb.on_train_batch_end(trainer, module, None, None, step)
    text = caplog.text
    assert "measured 5.00 images/s: 970 images to go take ~3 m 14 s" in text
    assert "this piece stops after 10 m 00 s (~3,000 images)" in text
    assert ("step 33: 330 / 1,000 images (33.0 %), 5.00 images/s, loss 0.5000, lr 0.00025, "
            "run ends in "
            "~2 m 14 s, piece in ~8 m 56 s") in text
    assert module.logged["train/images_per_s"] == pytest.approx(5.0)


def test_measure_training_reports_images_per_second_of_a_tiny_preset():
    cfg = load_config(["model=unet_tiny"])
    r = measure_training(ThroughputSetting(preset="unet_tiny", batch=4, threads=1), cfg.model,
                         image_size=16, num_classes=2, scalar_conditions=("peak_flux",),
                         steps=1, warmup=1)
    assert r["images_per_s"] > 0 and r["params_M"] > 0 and r["batch"] == 4
    assert r["threads"] == 1
