"""Hydra composition: every preset composes, typos and unknown options fail at start-up."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from radiodiff.config import ConfigError, conf_dir, load_config

GROUPS = ("data", "model", "schedule", "sampler", "trainer", "logger")


def _options(group):
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_preset_composes_and_resolves(group, tmp_path, monkeypatch):
    monkeypatch.setenv("RADIODIFF_SHARED_DATA", str(tmp_path))
    options = _options(group)
    assert options, f"conf/{group} has no presets"
    for option in options:
        cfg = load_config([f"{group}={option}"])
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_defaults_and_paths(monkeypatch):
    monkeypatch.setenv("RADIODIFF_SHARED_DATA", "/somewhere/shared")
    cfg = load_config(["data=mirabest"])
    assert cfg.data.name == "mirabest"
    assert cfg.data.fields_dir == "/somewhere/shared/mirabest"
    assert cfg.data.catalog == "/somewhere/shared/mirabest/catalog.csv"
    assert cfg.data.out == "data/mirabest.h5"
    assert load_config().data.name == "first"


@pytest.mark.parametrize("override, message", [
    (["data=foo"], r"Could not find 'data/foo'.*first.*lotss.*mirabest"),
    (["data.imagesize=3"], r"Key 'imagesize' not in 'DataConfig'"),
    (["data.negatives=bogus"], r"expected one of \[clip, abs, keep\]"),
    (["data.cuts.snr_min=abc"], r"could not be converted"),
    (["model=nope"], r"Could not find 'model/nope'"),
])
def test_bad_options_fail_at_composition(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(override)


def test_misspelt_key_in_yaml_fails(tmp_path, monkeypatch):
    import shutil
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    text = (conf / "data" / "first.yaml").read_text().replace("image_size:", "imagesize:")
    (conf / "data" / "first.yaml").write_text(text)
    monkeypatch.setenv("RADIODIFF_CONF", str(conf))
    with pytest.raises(ConfigError, match="imagesize"):
        load_config()


def test_conf_dir_is_the_repo_conf():
    assert conf_dir() == Path(__file__).resolve().parents[1] / "conf"
