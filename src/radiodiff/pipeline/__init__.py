"""The release as a pipeline: how an image is drawn (base network, optional refiner, output
projection, restoration to physical units, recommended sampler) and the functions that run
it: :mod:`~radiodiff.pipeline.release` (load / export / check a release),
:mod:`~radiodiff.pipeline.generate`, :mod:`~radiodiff.pipeline.refine` and
:mod:`~radiodiff.pipeline.checkpoint` (a training checkpoint as a release); and
:mod:`~radiodiff.pipeline.settings`, a sampler setting as text (the benchmarks' syntax)."""
