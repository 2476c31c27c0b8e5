"""Fixtures of the pipeline tests: a tiny 16x16 release conditioned on class, peak flux and LAS
(defined in helpers.releases, shared with the io tests)."""

from helpers.releases import config, denoiser, meta, release, release_dir, transform

__all__ = ["config", "denoiser", "meta", "release", "release_dir", "transform"]
