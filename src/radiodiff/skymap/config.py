"""Typed config of ``radiodiff skymap``; presets in ``conf/skymap/<name>.yaml``.

A preset lists ``skymap_base`` (:class:`SkyMapConfig`) first in its defaults, so a
misspelt key or a value of the wrong type fails when the config is composed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

__all__ = ["SurveyConfig", "SkyConfig", "SourcesConfig", "RenderConfig", "NoiseConfig",
           "SkyMapConfig", "load_skymap_config", "PRESETS_GROUP"]

PRESETS_GROUP = "skymap"  # conf/skymap/


@dataclass
class SurveyConfig:
    """The target survey: pixel grid, restoring beam, noise and instrument cards."""
    name: str = MISSING
    pixel_scale_arcsec: float = MISSING
    beam_arcsec: list[float] = MISSING      # [bmaj, bmin] FWHM
    beam_pa_deg: float = 0.0                # east of north
    rms_jyb: float = MISSING                # noise rms per beam, Jy/beam
    freq_hz: float = MISSING
    telescope: str = MISSING


@dataclass
class SkyConfig:
    ra_deg: float = 150.0
    dec_deg: float = 30.0
    size_deg: list[float] = field(default_factory=lambda: [0.25, 0.25])  # [width, height]
    projection: str = "SIN"                 # SIN | TAN


@dataclass
class SourcesConfig:
    """A catalogue (CSV or FITS table), or sources drawn from a source-count model."""
    catalog: Optional[str] = None
    columns: dict[str, str] = field(default_factory=dict)  # our name -> catalogue column
    flux_unit: Optional[str] = None         # null: table unit, else mJy for T-RECS I<MHz>, else Jy
    on_bad: str = "skip"                    # skip (counted) | stop
    density_per_deg2: float = 200.0         # drawn sources: mean number per deg^2 (Poisson)
    draw: str = "auto"                      # auto | power_law | model (training marginals)
    alpha: float = 1.7                      # dN/dS ~ S^-alpha
    s_min_jy: float = 1e-3                  # integrated flux range of the power law
    s_max_jy: float = 1.0
    spectral_index: float = -0.7            # S ~ nu^a, to use the 1.4 GHz LAS-flux rule


@dataclass
class RenderConfig:
    """How sources are placed: model cutouts for resolved sources, Gaussians otherwise."""
    model: Optional[str] = None             # release folder or shipped name; null: Gaussians only
    resolved_min_beams: float = 2.0         # LAS >= this * bmaj -> model cutout
    # auto: a Jy/beam release's own flux where the source has a peak, else the catalogue's
    flux_from: str = "auto"                 # auto | catalogue (integrated) | model (Jy/beam)
    # null: the model's recommended sampler (its meta.json `sampler`)
    sampler: Optional[str] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    batch_size: int = 16                    # model sources per generate() call
    batch_invariant: bool = True            # per-image network calls: the map does not
    #                                         depend on batch size, tiles or devices


@dataclass
class NoiseConfig:
    rms_jyb: Optional[float] = None         # null: survey.rms_jyb
    rms_map: Optional[str] = None           # FITS map of the rms (Jy/beam), reprojected
    enabled: bool = True


@dataclass
class SkyMapConfig:
    survey: SurveyConfig = field(default_factory=SurveyConfig)
    sky: SkyConfig = field(default_factory=SkyConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    seed: int = 0


def load_skymap_config(preset: str = "first", overrides: list[str] | tuple[str, ...] = ()):
    """Compose ``conf/skymap/<preset>.yaml`` with ``key=value`` overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from radiodiff.config import ConfigError, _hydra_message, conf_dir

    ConfigStore.instance().store(name="skymap_base", node=SkyMapConfig)
    folder = conf_dir() / PRESETS_GROUP
    if not (folder / f"{preset}.yaml").is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"unknown skymap preset {preset!r}; presets: {', '.join(known)}")
    try:
        with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
            return compose(config_name=preset, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_hydra_message(exc)) from exc
