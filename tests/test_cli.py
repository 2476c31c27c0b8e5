"""`radiodiff evaluate` at the command line: one library call, errors as one line."""

import re

import pytest

from helpers import synth

from radiodiff.cli import main


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("cli") / "set.h5")


def test_cli_evaluate_bad_inputs(prepared, tmp_path, capsys, monkeypatch):
    assert main(["evaluate", "--reference", str(prepared), "--samples",
                 str(tmp_path / "none")]) == 2
    assert "no samples.h5" in capsys.readouterr().err
    # no model named: the built-in one, here absent (an empty models folder)
    monkeypatch.setenv("RADIODIFF_MODELS", str(tmp_path))
    assert main(["evaluate", "--reference", str(prepared)]) == 2
    assert "first: no such release folder, checkpoint or shipped model" in \
        capsys.readouterr().err


def test_cli_evaluate_real_vs_real(prepared, tmp_path, capsys):
    assert main(["evaluate", "--reference", str(prepared), "--real-split", "valid",
                 "--no-sourcefinder", "--rvf-folds", "2", "--rvf-epochs", "2",
                 "--classifier-epochs", "2", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert "real valid vs real test" in capsys.readouterr().out




@pytest.mark.parametrize("options, named", [
    (["--rvf-folds", "1"], "rvf_folds (--rvf-folds) must be an integer >= 2, got 1"),
    (["--classifier-epochs", "0"], "classifier_epochs (--classifier-epochs) must be"),
    (["--samples", "s", "--n", "5", "--steps", "9", "--tstr"], "--steps, --n, --tstr: "
     "--samples compares images that exist"),
    (["--real-split", "valid", "--batch-size", "8"], "--batch-size: --real-split compares"),
])
def test_cli_evaluate_refuses_absurd_or_idle_options_before_any_work(
        prepared, tmp_path, capsys, options, named):
    assert main(["evaluate", "--reference", str(prepared), *options,
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err
    assert not (tmp_path / "o").exists()


def test_cli_sample_checks_the_centre_before_drawing(tmp_path, capsys):
    for ra in ("nan", "inf"):
        assert main(["sample", "--ra", ra, "--dec", "0", "--out", str(tmp_path / "s")]) == 2
        assert f"--ra must be a finite angle in deg, got {float(ra)}" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args, message", [
    (["--split", "train", "--real-split", "valid"], "--split train: the model and the class"),
    (["--split", "valid", "--real-split", "valid"], "is the compared split itself"),
])
def test_cli_evaluate_refuses_comparisons_that_say_nothing(tmp_path, capsys, args, message):
    reference = tmp_path / "never-read.h5"  # refused before the reference is opened
    assert main(["evaluate", "--reference", str(reference), *args,
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("radiodiff evaluate: error: ")
    assert message in err and not (tmp_path / "o").exists()


def test_cli_evaluate_real_split_needs_the_reference(tmp_path, capsys, monkeypatch):
    import radiodiff.evaluation.sets as sets

    def no_model(*args, **kwargs):
        raise AssertionError("real-vs-real loaded a model to find its data")

    monkeypatch.setattr(sets, "model_data", no_model)
    assert main(["evaluate", "--real-split", "valid", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("radiodiff evaluate: error: ")
    assert "--real-split valid" in err and "--reference" in err
    assert not (tmp_path / "o").exists()


def test_cli_sampler_line_says_what_came_from_where(tmp_path, capsys):
    from helpers.releases import tiny_release
    from radiodiff.cli import _model_spec, _release_spec, _spec, build_parser
    from radiodiff.pipeline.release import load_release

    def line(*options, model=None, release=None):
        args = build_parser().parse_args(["evaluate", *options])
        spec = _spec(args, *(_release_spec(release) if release is not None
                             else _model_spec(model)))
        return spec, capsys.readouterr().out.strip()

    rel = tiny_release(tmp_path / "rel", ["FRI", "FRII"],
                       sampler={"name": "dpmpp_2m", "steps": 7, "guidance": 1.0})
    spec, out = line("--guidance", "1.5", model=str(rel))
    assert (spec.name, spec.steps, spec.guidance) == ("dpmpp_2m", 7, 1.5)
    assert out == ("sampler: dpmpp_2m, 7 steps, guidance 1.5 (guidance given; the rest the "
                   "model's recommended setting)")
    assert line(release=load_release(rel))[1] == (
        "sampler: dpmpp_2m, 7 steps, guidance 1 (the model's recommended setting)")
    _, out = line("--steps", "3", "--sampler", "euler", model=str(rel))
    assert out.endswith("(sampler and steps given; the rest the model's recommended setting)")
    plain = tiny_release(tmp_path / "plain", ["FRI", "FRII"])  # records no sampler
    assert line(release=load_release(plain))[1].endswith(
        "(the package default: the release records no recommended sampler)")
    ckpt = tmp_path / "run" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.touch()
    assert line(model=str(ckpt))[1].endswith(
        "(the package default: a checkpoint records no recommended sampler)")
    every = ["--sampler", "heun", "--steps", "4", "--guidance", "2", "--sigma-min", "0.01",
             "--sigma-max", "10", "--rho", "7", "--churn", "0"]
    assert line(*every, model=str(ckpt))[1] == "sampler: heun, 4 steps, guidance 2 (as given)"


def test_cli_evaluate_help_shows_the_sampler_spec(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--sampler", "--steps", "--guidance", "--sigma-min", "--sigma-max", "--rho",
                   "--churn"):
        assert option in text


def test_cli_bad_sampler_spec_is_one_line(prepared, tmp_path, capsys):
    assert main(["evaluate", "--reference", str(prepared), "--model", str(tmp_path),
                 "--sigma-min", "20", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "need 0 < sigma_min <= sigma_max" in err and len(err.strip().splitlines()) == 1


def test_cli_evaluate_without_reference_names_the_models_data(tmp_path, capsys, monkeypatch):
    from helpers.releases import tiny_release
    rel = tiny_release(tmp_path / "rel", ["FRI", "FRII"])
    monkeypatch.chdir(tmp_path)  # no data/ here
    assert main(["evaluate", "--model", str(rel), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("radiodiff evaluate: error: release ")
    assert "data/first.h5 is missing" in err and "give --reference" in err


@pytest.mark.parametrize("command", ["prepare", "inspect", "fit-islands", "export",
                                     "attach-refiner",
                                     "sample", "demo", "evaluate", "skymap", "evaluate-map"])
def test_cli_help_says_each_default_once(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text, text
    assert not re.search(r"\(default:[^()]*\) \(default:", text), text


def _small_fit(monkeypatch):
    """`radiodiff fit-islands` over a 2-model grid of synthetic images (not the FIRST set)."""
    import numpy as np

    import radiodiff.data.island_fit as fit_mod
    from radiodiff.data.islands import IslandModel, beam_noise, native_levels

    def fake(settings):
        m = IslandModel(3.0, 0.1, -4.0, 0.5, 0.2, 3.0, 2)
        rng = np.random.default_rng(0)
        levels = [native_levels(m, beam_noise(m, (24, 24), rng), 0.0, 0.0) for _ in range(5)]
        counts, peaks = fit_mod.island_counts(levels, settings.max_area, skip_main=False)
        small = fit_mod.FitSettings(fields=settings.fields, max_area=settings.max_area,
                                    seed=settings.seed, n_boot=5,
                                    grid={"k_mean": (3.0, 3.3), "k_std": (0.1,),
                                          "ln_r_mean": (-4.0,), "ln_r_std": (0.5,)})
        return fit_mod.fit_island_model(counts, peaks, fit_mod.NativeGrid(24, 3.0, 2), small)

    monkeypatch.setattr(fit_mod, "fit_first_islands", fake)


def test_cli_fit_islands_writes_json_and_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    import json
    _small_fit(monkeypatch)
    out = tmp_path / "fit.json"
    assert main(["fit-islands", "--fields", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| real |" in printed and "best:" in printed and f"wrote {out}" in printed
    d = json.loads(out.read_text())
    assert d["fields"] == 3 and len(d["grid"]) == 2 and set(d["best"]) >= {"k_mean", "factor"}
    out.write_text("mine")
    assert main(["fit-islands", "--fields", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists; give --overwrite" in err
    assert out.read_text() == "mine"
    assert main(["fit-islands", "--fields", "3", "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["fields"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name != "fit.json"]  # no temporaries


@pytest.mark.parametrize("argv, message", [
    (["--fields", "0"], "fields must be an integer >= 1, got 0"),
    (["--max-area", "-2"], "max_area must be an integer >= 1"),
    (["--top", "-1"], "--top must be >= 0"),
])
def test_cli_fit_islands_bad_input_is_one_line(argv, message, tmp_path, capsys, monkeypatch):
    _small_fit(monkeypatch)
    out = tmp_path / "fit.json"
    assert main(["fit-islands", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("radiodiff fit-islands: error: ")
    assert message in err and not out.exists()


def test_recommend_leaves_a_shipped_release_alone_unless_forced(tmp_path, capsys):
    """Its model card quotes numbers for the sampler it records (a copy is checked by its
    files' hashes, so the folder's place does not matter)."""
    import json
    import shutil
    from pathlib import Path

    shipped = tmp_path / "first"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "first", shipped)
    before = (shipped / "meta.json").read_bytes()
    assert main(["recommend", str(shipped), "--steps", "50"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the shipped release 'first'" in err
    assert (shipped / "meta.json").read_bytes() == before
    assert main(["recommend", str(shipped), "--steps", "5", "--force"]) == 0
    assert json.loads((shipped / "meta.json").read_text())["sampler"]["steps"] == 5
