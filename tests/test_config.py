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


def test_projection_keys_are_typed_and_keep_their_names():
    """data.projection_islands is an IslandConfig (a misspelt field fails at compose), the
    floor keeps its values (number, "data", null) and overrides; the halo default is
    ProjectionConfig's."""
    import pytest
    from omegaconf import OmegaConf

    from radiodiff.config import ConfigError, IslandConfig, ProjectionConfig, load_config
    from radiodiff.data.projection import check_floor, check_projection_config
    first = load_config(["data=first"]).data
    assert OmegaConf.get_type(first.projection_islands) is IslandConfig
    assert first.projection_floor == "data" and first.projection_islands.levels == 255
    check_projection_config(first)
    cfg = load_config(["data=first", "data.projection_floor=0.001",
                       "data.projection_islands=null"]).data
    assert check_floor(cfg.projection_floor, "data.projection_floor", data_ok=True) == 0.001
    assert cfg.projection_islands is None
    assert load_config(["data=tiny"]).data.projection_halo_px == ProjectionConfig.halo_px
    with pytest.raises(ConfigError, match="k_meen"):
        load_config(["data=first", "data.projection_islands.k_meen=1"])
    with pytest.raises(ConfigError, match="projection_halo_px"):
        load_config(["data=first", "data.projection_halo_px=two"])


# ----------------------------------------------------------------- experiments (ablations)

# Each ablation: its arms (conf/experiment/<name>.yaml) and the config keys (prefixes) they
# may differ in besides their run names. Every ablation_* experiment is an arm or a base here.
ABLATIONS = {
    "capacity": (("ablation_capacity_small", "ablation_capacity_deep"), ("model.",)),
    "noise schedule": (("ablation_noise_edm", "ablation_noise_relative",
                        "ablation_noise_reference", "ablation_noise_stretch"), ("schedule.",)),
    "noise start, stretch": (("ablation_noise_stretch", "ablation_noise_stretch_scratch"),
                             ("train.init_from", "train.ema_rampup_ratio")),
    "noise start, edm": (("ablation_noise_edm", "ablation_noise_edm_scratch"),
                         ("train.init_from", "train.ema_rampup_ratio")),
}
BASES = ("ablation_noise", "ablation_noise_warm")  # shared recipes the arms build on
BUDGET = ("train.total_kimg", "data.loader.batch_size", "seed", "data.name",
          "trainer.precision", "train.ema_halflife_kimg")


def _flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes_and_resolves(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("RADIODIFF_SHARED_DATA", str(tmp_path))
    cfg = load_config([f"+experiment={experiment}"])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_every_ablation_experiment_is_declared():
    declared = {a for arms, _ in ABLATIONS.values() for a in arms} | set(BASES)
    assert {e for e in _options("experiment") if e.startswith("ablation")} == declared


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablation_arms_differ_only_in_what_is_ablated(ablation, tmp_path, monkeypatch):
    monkeypatch.setenv("RADIODIFF_SHARED_DATA", str(tmp_path))
    arms, varied = ABLATIONS[ablation]
    # unresolved: what follows from the run name (checkpoint folder, logger name) stays
    # "${train.run_name}" in every arm
    flat = {a: _flat(OmegaConf.to_container(load_config([f"+experiment={a}"]), resolve=False))
            for a in arms}
    first = flat[arms[0]]
    names = {f["train.run_name"] for f in flat.values()}
    assert len(names) == len(arms)  # each arm its own checkpoint folder
    for arm in arms[1:]:
        differ = {k for k in set(first) | set(flat[arm]) if first.get(k) != flat[arm].get(k)}
        differ.discard("train.run_name")
        assert differ and all(k.startswith(varied) for k in differ), (arm, sorted(differ))
        for key in BUDGET:  # the same compute and data for every arm
            assert flat[arm][key] == first[key], (arm, key)
