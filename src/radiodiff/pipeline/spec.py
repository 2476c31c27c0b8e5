"""The release as one pipeline description: what is drawn, how, and what it goes through.

The idea of a diffusers ``model_index.json``: a release's top-level ``meta.json`` says, in
one place, how an image is drawn, and :class:`PipelineSpec` is that description typed and
validated once when the release is loaded (:func:`radiodiff.pipeline.release.load_release`
sets ``Release.pipeline``):

- ``sampler``: the recommended solver setting (meta ``sampler``; the package default when
  the release records none);
- ``base_projection``: the base network's output projection (meta ``projection``: floor,
  halo, noise islands; :mod:`radiodiff.data.projection`), what the refiner is fed;
- ``refine``: the faint-end refinement (meta ``refine``: sigma, steps, sampler, rho;
  :mod:`radiodiff.pipeline.refine`) and ``refiner_sha256``, the refiner's weights;
- ``projection``: the FINAL output projection, with the data's noise islands. With a
  refiner it is stored once in the base's meta ``refine.projection``; releases written
  before (``models/first``) kept it in
  ``refiner/meta.json`` ``projection`` (else the base's), which is still read;
- ``restores_jy_per_beam``: whether images go back to Jy/beam as ``image * peak_flux``.

:meth:`PipelineSpec.for_call` narrows it to one :func:`~radiodiff.pipeline.generate.generate`
call (another sampler, refine off, no projection, no islands) and
:mod:`radiodiff.pipeline.run` runs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

from radiodiff.config import ProjectionConfig
from radiodiff.data.projection import projection_dict, projection_from
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.io.release_files import META_FILE
from radiodiff.pipeline.refine import RefineSpec

log = logging.getLogger(__name__)

__all__ = ["PipelineSpec", "recommended_spec", "restores_jy_per_beam", "refine_entry",
           "SAMPLER_KEYS"]

#: meta ``sampler`` keys: the SamplerSpec fields a release may recommend.
SAMPLER_KEYS = ("name", "steps", "guidance", "sigma_min", "sigma_max", "rho", "S_churn")


def recommended_spec(meta: Mapping[str, Any], where: Any = "release") -> SamplerSpec:
    """The SamplerSpec of meta ``sampler`` (missing fields: the package defaults), or the
    package default when the release recommends none. A bad entry is one ValueError."""
    entry = meta.get("sampler")
    if entry is None:
        return SamplerSpec()
    unknown = sorted(set(entry) - set(SAMPLER_KEYS)) if isinstance(entry, dict) else None
    if unknown is None or unknown:
        raise ValueError(f"{where}: {META_FILE} `sampler` must be an object with keys from "
                         f"{', '.join(SAMPLER_KEYS)}; got {str(entry)[:80]}")
    if entry.get("name", SamplerSpec.name) != "stochastic" and entry.get("S_churn"):
        # recorded before churn on a deterministic solver was refused; it never had an effect
        log.warning("%s: %s `sampler` gives S_churn=%s to the deterministic %s solver, which "
                    "ignores it: read as 0", where, META_FILE, entry["S_churn"],
                    entry.get("name", SamplerSpec.name))
        entry = dict(entry, S_churn=0.0)
    try:
        return SamplerSpec(**entry)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {META_FILE} `sampler`: {exc}") from exc


def restores_jy_per_beam(meta: Mapping[str, Any]) -> bool:
    """Whether images of this data (release or prepared-file metadata) go back to Jy/beam
    as ``image * peak_flux``: Jy/beam images, each divided by its own peak (``scaling ==
    "per_image"``), zero offset (negatives not ``keep``). See
    :mod:`radiodiff.pipeline.generate`, "Flux restoration"."""
    return (meta.get("image_unit") == "Jy/beam" and meta.get("scaling") == "per_image"
            and meta.get("negatives") != "keep")


def refine_entry(spec: RefineSpec, weights_sha256: str,
                 projection: Optional[ProjectionConfig]) -> dict:
    """The base's meta ``refine`` as written now: the refinement, the refiner's weights and
    the final output projection (stored here once, not in ``refiner/meta.json``)."""
    return dict(spec.to_dict(), weights_sha256=weights_sha256,
                projection=projection_dict(projection))


@dataclass(frozen=True)
class PipelineSpec:
    """How a release draws an image (module docstring), typed and validated."""
    sampler: SamplerSpec
    base_projection: Optional[ProjectionConfig] = None
    refine: Optional[RefineSpec] = None
    refiner_sha256: Optional[str] = None
    projection: Optional[ProjectionConfig] = None
    restores_jy_per_beam: bool = False

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], refiner_meta: Optional[Mapping] = None,
                  where: Any = "release") -> "PipelineSpec":
        """From a release's ``meta.json`` (and, for a refiner attached before the final
        projection moved into ``refine``, its ``refiner/meta.json``); a bad entry is a
        ValueError naming ``where``."""
        base = projection_from(meta.get("projection"), f"{where}: {META_FILE}")
        entry = meta.get("refine")
        refine = None if entry is None else RefineSpec.from_dict(entry, f"{where}: refine")
        final = base
        if refine is not None and "projection" in entry:
            final = projection_from(entry["projection"], f"{where}: {META_FILE} refine")
        elif refine is not None and refiner_meta is not None:  # written before: its own
            final = projection_from(refiner_meta.get("projection"),
                                    f"{where}: refiner {META_FILE}") or base
        return cls(sampler=recommended_spec(meta, where), base_projection=base,
                   refine=refine, refiner_sha256=None if entry is None
                   else entry.get("weights_sha256"), projection=final,
                   restores_jy_per_beam=restores_jy_per_beam(meta))

    def for_call(self, sampler: SamplerSpec, refine: Optional[bool] = None,
                 project: bool = True, islands: bool = True, where: Any = "release"
                 ) -> "PipelineSpec":
        """This pipeline as one call runs it: ``sampler``; ``refine`` None (when there is a
        refiner), True (there must be one) or False (the base alone, projected as the base);
        without ``project`` no final projection (and no Jy/beam: the images' peak is 1 only
        after it), without ``islands`` no noise islands."""
        if not isinstance(islands, bool):
            raise ValueError(f"islands must be True or False, got {islands!r}")
        if refine is not None and not isinstance(refine, bool):
            raise ValueError(f"refine must be True, False or None, got {refine!r}")
        if refine and self.refine is None:
            raise ValueError(f"{where}: this release has no refiner (refine=True); attach "
                             "one with radiodiff.pipeline.release.attach_refiner")
        call = self if refine is not False else replace(
            self, refine=None, refiner_sha256=None, projection=self.base_projection)
        final = call.projection if project else None
        if final is not None and not islands:
            final = replace(final, islands=None)
        restores = call.restores_jy_per_beam and (project or call.projection is None)
        return replace(call, sampler=sampler, projection=final, restores_jy_per_beam=restores)
