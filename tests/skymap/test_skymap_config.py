"""The skymap presets compose into the typed schema; overrides and typos."""

import pytest
from omegaconf import OmegaConf

from radiodiff.cli import main
from radiodiff.config import ConfigError, conf_dir
from radiodiff.skymap.config import PRESETS_GROUP, load_skymap_config


@pytest.mark.parametrize("preset", sorted(p.stem for p in (conf_dir() / PRESETS_GROUP)
                                          .glob("*.yaml")))
def test_presets_compose_fully(preset):
    cfg = load_skymap_config(preset)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_preset_values():
    first, lotss = load_skymap_config("first"), load_skymap_config("lotss")
    assert (first.survey.pixel_scale_arcsec, list(first.survey.beam_arcsec),
            first.survey.rms_jyb, first.survey.freq_hz, first.survey.telescope) == \
        (1.8, [5.4, 5.4], 1.5e-4, 1.4e9, "VLA")
    assert (lotss.survey.pixel_scale_arcsec, list(lotss.survey.beam_arcsec),
            lotss.survey.rms_jyb, lotss.survey.freq_hz, lotss.survey.telescope) == \
        (1.5, [6.0, 6.0], 8.3e-5, 1.44e8, "LOFAR")


def test_overrides_and_type_errors():
    assert load_skymap_config("first", ["sky.ra_deg=10.5"]).sky.ra_deg == 10.5
    with pytest.raises(ConfigError, match="could not be converted"):
        load_skymap_config("first", ["sky.ra_deg=abc"])


def test_cli_prints_config(capsys):
    assert main(["skymap", "--preset", "lotss", "--cfg", "seed=3"]) == 0
    out = capsys.readouterr().out
    assert "telescope: LOFAR" in out and "seed: 3" in out
