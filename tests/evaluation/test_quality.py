"""Benchmark rows of sampler settings (radiodiff.evaluation.quality): the row's head, the
refiner's evaluations, the argparse types and the Markdown table."""

import argparse

import pytest

from radiodiff.evaluation.quality import (REAL_HEAD, add_generation_args, markdown_table,
                                          quality_row, recall_ratio_min, refine_nfe,
                                          setting_head, spec_arg)
from radiodiff.pipeline.refine import RefineSpec
from radiodiff.pipeline.settings import SamplerSetting


class _Release:
    def __init__(self, refine):
        self.refine = refine


def _metrics():
    acc = {"mean_accuracy": 0.6, "std_accuracy": 0.05}
    dist = {"pixel_value": {"wasserstein1": {"ratio": 2.0}, "n_real": 10, "n_fake": 10}}
    return {"distances": dist, "faint_distances": dist, "real_vs_fake": acc,
            "real_vs_fake_faint": acc, "background": {"real": {"zero": 0.9, "faint": 0.02},
                                                      "fake": {"zero": 0.8, "faint": 0.03}},
            "class_fidelity": {"fidelity_ratio": 0.9, "real_confusion": [[9, 1], [2, 8]],
                               "fake_confusion": [[8, 2], [4, 6]]},
            "features": {"frechet": 1.5, "frechet_floor": 0.5},
            "verdict": {"alike": False},
            "memorisation": {"pixel": {"copy_fraction": 0.0, "gen_median": 2.0,
                                       "test_median": 1.0}}}


def test_the_head_counts_guidance_and_the_refiner():
    s = SamplerSetting.parse("dpmpp_2m:7:guidance=2:islands=false")
    rel = _Release(RefineSpec(sigma=0.45, steps=3))
    assert refine_nfe(rel, s) == 3 and refine_nfe(_Release(None), s) == 0
    assert refine_nfe(rel, s.with_options(refine=False)) == 0
    head = setting_head(s, refine_nfe(rel, s))
    assert head == {"sampler": "dpmpp_2m", "steps": 7, "guidance": 2.0, "islands": False,
                    "refine_nfe": 3, "nfe": 2 * 7 + 3}


def test_rows_and_table():
    m = _metrics()
    rows = [quality_row(m, dict(REAL_HEAD), 10, 0.0),
            quality_row(m, setting_head(SamplerSetting.parse("heun:4:sigma_max=5:islands=false"),
                                        3), 10, 1.23)]
    assert rows[1]["nfe"] == 2 * 4 - 1 + 3 and rows[1]["sample_s"] == 1.2
    assert rows[1]["nn_median_ratio"] == 2.0 and rows[1]["w1_ratios"] == {"pixel_value": 2.0}
    assert rows[1]["class_recall_ratio_min"] == pytest.approx(0.6 / 0.8)
    lines = markdown_table(rows, first_column=None).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| real | – | – | 0.600 ± 0.050")
    assert "| heun sigma_max=5 no islands + refiner 3 | 4 | 10 |" in lines[3]
    assert recall_ratio_min({}) is None


def test_argparse_types_give_the_parser_line(capsys):
    ap = argparse.ArgumentParser(prog="x")
    add_generation_args(ap)
    assert str(ap.parse_args([]).config) == "dpmpp_2m:7"
    assert ap.parse_args(["--config", "heun:4:g=2"]).config.spec.guidance == 2.0
    with pytest.raises(SystemExit):
        ap.parse_args(["--config", "heun:4:bad"])
    assert "unknown option 'bad'" in capsys.readouterr().err
    assert str(spec_arg("heun:4:guidance=2")) == "heun:4:guidance=2"
    with pytest.raises(argparse.ArgumentTypeError, match="islands cannot be switched here"):
        spec_arg("heun:4:islands=false")


def test_draw_setting_uses_the_spec_and_passes_the_switches(tmp_path, monkeypatch):
    import numpy as np

    import radiodiff.pipeline.generate as gen
    from helpers.releases import tiny_release
    from radiodiff.evaluation.quality import draw_setting
    from radiodiff.pipeline.release import load_release

    release = load_release(tiny_release(tmp_path / "r", ["a", "b"], busy=True))
    labels = np.array([0, 1, 1])
    seen = []
    real_generate = gen.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(gen, "generate", spy)
    plain = draw_setting(release, "tiny", labels, SamplerSetting.parse("euler:2"))
    guided = draw_setting(release, "tiny", labels,
                          SamplerSetting.parse("euler:2:guidance=0:project=false"))
    assert plain.labels.tolist() == guided.labels.tolist() == [0, 1, 1]
    assert plain.images.shape == (3, 1, 16, 16)
    assert not np.array_equal(plain.images, guided.images)
    assert seen[0]["spec"].steps == 2 and "project" not in seen[0]
    assert seen[-1]["spec"].guidance == 0.0 and seen[-1]["project"] is False
