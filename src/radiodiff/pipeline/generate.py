"""Draw samples from a release and write them as science output.

:func:`generate` turns a loaded :class:`~radiodiff.pipeline.release.Release` into images: one
generator per seed (sample k uses ``seed + k``, so it does not depend on the batch size),
physical conditions (class name, peak flux in Jy/beam, largest angular size in arcsec)
encoded with the release's ``ConditionTransform``, classifier-free guidance via
:func:`radiodiff.diffusion.edm.guided`, and any of the solvers in
:mod:`radiodiff.diffusion.sampling`.

Conditions the caller does not fix are, by default, drawn image by image from the training
rows' joint distribution the release records (``train_conditions.csv``, see
:mod:`radiodiff.diffusion.condition_table`): ``n`` images then look like a population of
the survey. ``conditions="null"`` leaves them null (unconditional), as releases without
the table always do. A fixed peak flux or LAS more than ``EXTRAPOLATION_FACTOR`` (10) times
beyond the table's range is refused unless ``allow_extrapolation``; every condition must be
within float32's range, and the images are checked finite before they are returned.

:func:`generate` validates the call's arguments and conditions, narrows the release's
pipeline (``Release.pipeline``, :meth:`radiodiff.pipeline.spec.PipelineSpec.for_call`:
sampler, refiner on or off, projection, islands) and runs it
(:func:`radiodiff.pipeline.run.run_pipeline`: base sampling, refinement, final projection,
Jy/beam).

:func:`radiodiff.io.samples.save_samples` writes what :func:`generate` returns (FITS,
``samples.h5``, ``preview.png``); :func:`radiodiff.io.samples.sample_images` gives the same
images with their FITS headers in memory.

Flux restoration
----------------
The network works in model space; its output is decoded to data space, [0, 1], by the
release's intensity transform. Images are put back in Jy/beam only when that inverse is
known: the training images were in Jy/beam (``image_unit == "Jy/beam"``), each was divided
by its own peak (``scaling == "per_image"`` with zero offset, i.e. negatives not ``keep``)
and every image has a peak flux (requested or drawn). Then ``physical = image * peak_flux``
with each image's own peak flux (the per-image scale of a training image is its peak,
which the model was conditioned on). In every other case (no peak flux, ``dataset``
scaling, arbitrary units) the images stay normalised and are labelled ``"normalised"``.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from radiodiff.diffusion.sampling import SamplerSpec, check_sample_memory, check_seed_range
from radiodiff.io.release_files import TABLE_FILE
# the words saying where conditions came from ("draw", "null"; "given"), as samples record
# them, and the images with their conditions (written by radiodiff.io.samples)
from radiodiff.io.samples import CONDITION_MODES, GIVEN, GenerateResult
from radiodiff.pipeline.release import Release
from radiodiff.pipeline.run import run_pipeline
from radiodiff.pipeline.spec import restores_jy_per_beam
from radiodiff.seeds import condition_rng, image_seeds

__all__ = ["GenerateResult", "generate", "CONDITION_MODES", "restores_jy_per_beam"]

NORMALISED = "normalised"


_F32 = np.finfo(np.float32)


def _positive(name: str, value: Optional[float], unit: str) -> Optional[float]:
    """A condition in physical units: a positive number within float32's normal range (the
    network's conditions and the restored images are float32: 1e-320 would vanish, 1e308
    overflow)."""
    if value is None:
        return None
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number ({unit}), got {value}")
    if not float(_F32.tiny) <= v <= float(_F32.max):
        raise ValueError(f"{name}={value:g} {unit} is outside float32's range "
                         f"[{float(_F32.tiny):.3g}, {float(_F32.max):.3g}], in which the "
                         "conditions and images are computed")
    return v


def _check_trained_range(release: Release, raw: dict[str, np.ndarray]) -> None:
    """Refuse conditions more than ``EXTRAPOLATION_FACTOR`` beyond the release's training
    rows (``train_conditions.csv``; releases without it are not checked)."""
    table = release.train_conditions
    for name in (table.scalars if table is not None else ()):
        values = raw[name][np.isfinite(raw[name])]
        why = table.beyond_range(name, values) if values.size else None
        if why:
            raise ValueError(f"{release.path}: {why}; the model cannot vouch for such "
                             "images (--allow-extrapolation / allow_extrapolation=True "
                             "samples them anyway)")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _fixed(release: Release, label: Optional[str], scalars: dict[str, Optional[float]]
           ) -> tuple[Optional[int], dict[str, float]]:
    """The conditions the user fixed, checked against the model: (class index or None,
    {scalar name: value in physical units})."""
    classes = release.classes
    trained = release.scalar_conditions
    idx = None
    if label is not None:
        if not classes:
            raise ValueError(f"this model was trained without class labels; got class "
                             f"{label!r}")
        if label not in classes:
            raise ValueError(f"unknown class {label!r}; valid classes: {', '.join(classes)}")
        idx = classes.index(label)
    fixed = {}
    for name, value in scalars.items():
        if value is None:
            continue
        if name not in trained:
            has = ([f"class ({', '.join(classes)})"] if classes else []) + list(trained)
            raise ValueError(f"this model was not trained with the {name} condition "
                             f"(its conditions: {', '.join(has) or 'none'})")
        if not np.isfinite(release.transform.encode(name, value)):
            raise ValueError(f"{name}={value} cannot be encoded by the model's transform")
        fixed[name] = value
    return idx, fixed


def _mode(release: Release, conditions: Optional[str]) -> str:
    """``draw`` or ``null``; None: ``draw`` when the release has its training conditions."""
    table = release.train_conditions
    if conditions is None:
        return "draw" if table is not None else "null"
    if conditions not in CONDITION_MODES:
        raise ValueError(f"conditions must be one of {', '.join(CONDITION_MODES)}, "
                         f"got {conditions!r}")
    if conditions == "draw" and table is None:
        raise ValueError(f"{release.path}: conditions='draw' needs the training rows' "
                         f"conditions ({TABLE_FILE}), which this release lacks; re-export it "
                         "(radiodiff export --data <prepared .h5>) or use conditions='null'")
    return conditions


def _draw_rows(release: Release, seeds: np.ndarray, idx: Optional[int],
               fixed: dict[str, float]) -> np.ndarray:
    """The training-condition table's row drawn for each image: uniform over the rows that
    fit the fixed conditions (:meth:`ConditionTable.pool`), one generator per seed."""
    pool, matched = release.train_conditions.pool(release.transform, idx, fixed)
    if not matched:
        warnings.warn(f"{release.path}: {TABLE_FILE} has no row of class "
                      f"{release.classes[idx]!r}; its other conditions are drawn from the "
                      "rows of all classes", stacklevel=5)
    return np.array([pool[condition_rng(int(s)).integers(len(pool))] for s in seeds],
                    dtype=np.int64)


def _raw_conditions(release: Release, seeds: np.ndarray, idx: Optional[int],
                    fixed: dict[str, float], mode: str) -> dict[str, np.ndarray]:
    """Each image's conditions in physical units (``GenerateResult.conditions``): the fixed
    ones, then (mode ``draw``) the others the model takes from one drawn training row."""
    n = len(seeds)
    label = np.full(n, -1 if idx is None else idx, dtype=np.int64)
    names = dict.fromkeys(["peak_flux", "las_arcsec", *release.scalar_conditions])
    scalars = {k: np.full(n, fixed.get(k, np.nan)) for k in names}
    table = release.train_conditions
    unset = [k for k in table.names if (idx is None if k == "label" else k not in fixed)
             ] if mode == "draw" else []
    if unset:
        rows = _draw_rows(release, seeds, idx, fixed)
        for k in unset:
            (label if k == "label" else scalars[k])[:] = table.columns[k][rows]
    classes = release.classes
    return {"label": label,
            "class": np.array([classes[i] if i >= 0 else "" for i in label], dtype=object),
            **scalars}


def _per_image(name: str, value: Any, n: int) -> list:
    """``value`` for each of ``n`` images: a single value (or None) repeated, or a
    sequence of ``n`` values (``label``: str or None each; scalars: number or None each)."""
    if value is None or isinstance(value, str) or np.ndim(value) == 0:
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for n={n} images")
    return values


def _image_seeds(seed: int, seeds: Optional[Iterable[int]], n: int) -> np.ndarray:
    """Each image's seed: ``seed + k`` (:func:`~radiodiff.seeds.image_seeds`), or ``seeds``
    (n integers in the int64 range)."""
    if seeds is None:
        seed = _check_int("seed", seed, 0)
        check_seed_range(seed, n)
        return image_seeds(seed, n)
    values = [_check_int("seeds", s, 0) for s in seeds]
    if len(values) != n:
        raise ValueError(f"seeds has {len(values)} values for n={n} images")
    for s in values:
        check_seed_range(s, 1)
    return np.asarray(values, dtype=np.int64)


def _image_conditions(release: Release, seeds: np.ndarray, label: Any, peak_flux: Any,
                      las_arcsec: Any, conditions: Optional[str]
                      ) -> tuple[dict[str, np.ndarray], str]:
    """(each image's conditions in physical units, mode): :func:`_raw_conditions` of each
    group of images with the same fixed conditions, so image k gets what a call for it
    alone (seed ``seeds[k]``, its own fixed conditions) would give. Validates everything
    before anything is drawn."""
    n = len(seeds)
    peaks = [_positive("peak_flux", v, "Jy/beam") for v in _per_image("peak_flux", peak_flux, n)]
    sizes = [_positive("las_arcsec", v, "arcsec") for v in _per_image("las_arcsec", las_arcsec, n)]
    groups: dict[tuple, list[int]] = {}
    for k, key in enumerate(zip(_per_image("label", label, n), peaks, sizes)):
        groups.setdefault(key, []).append(k)
    fixed = {key: _fixed(release, key[0], {"peak_flux": key[1], "las_arcsec": key[2]})
             for key in groups}
    mode = _mode(release, conditions)
    parts = {key: _raw_conditions(release, seeds[ks], *fixed[key], mode)
             for key, ks in groups.items()}
    raw = {name: np.empty(n, dtype=v.dtype) for name, v in next(iter(parts.values())).items()}
    for key, ks in groups.items():
        for name, values in raw.items():
            values[ks] = parts[key][name]
    return raw, mode if any(_unset(release, *fixed[key]) for key in groups) else GIVEN


def _unset(release: Release, idx: Optional[int], fixed: dict[str, float]) -> list[str]:
    """The model's conditions a call leaves to the ``conditions`` mode (drawn or null)."""
    label = ["label"] if release.classes and idx is None else []
    return label + [k for k in release.scalar_conditions if k not in fixed]


def _network_conditions(release: Release, raw: dict[str, np.ndarray]
                        ) -> Optional[dict[str, torch.Tensor]]:
    """The network's condition for all images (label -1 and NaN: null), or None when no
    image has any condition (then guidance has nothing to guide)."""
    cond: dict[str, torch.Tensor] = {}
    if (raw["label"] >= 0).any():
        cond["label"] = torch.from_numpy(raw["label"].copy())
    for name in release.scalar_conditions:
        if np.isfinite(raw[name]).any():
            z = np.asarray(release.transform.encode(name, raw[name]), dtype=np.float32)
            cond[name] = torch.from_numpy(z.copy())
    return cond or None


def generate(release: Release, n: int, label: Optional[str | Sequence] = None,
             peak_flux: Optional[float | Sequence] = None,
             las_arcsec: Optional[float | Sequence] = None,
             spec: Optional[SamplerSpec] = None, seed: int = 0, batch_size: int = 32,
             batch_invariant: bool = True,
             progress: Optional[Callable[[Iterable, int], Iterable]] = None,
             project: bool = True, conditions: Optional[str] = None,
             seeds: Optional[Sequence[int]] = None, refine: Optional[bool] = None,
             islands: bool = True, allow_extrapolation: bool = False,
             **sampler_options: Any) -> GenerateResult:
    """Draw ``n`` images from a release, optionally conditioned and guided.

    Sampling runs ``spec``'s solver over its ``karras_sigmas`` (EDM Eq. 5) with the
    denoiser ``D_w = D_u + w (D_c - D_u)`` (classifier-free guidance, Ho & Salimans 2022).
    Image k starts from ``seeded_noise([seed + k])`` (or ``seeds[k]``) and, with
    ``batch_invariant`` (default), the network is evaluated one image at a time
    (:func:`radiodiff.diffusion.sampling.per_image`), so image k is bit-identical whatever
    ``batch_size`` and whatever the other images of the call: ``generate(release, n,
    label=[...], peak_flux=[...], seeds=[...])`` gives image k exactly as
    ``generate(release, 1, label=label[k], peak_flux=peak_flux[k], seed=seeds[k])`` does
    (an image with no condition at all in a batch of conditioned ones is evaluated
    conditionally on its null condition: the same network output, but it counts the
    guided evaluations in ``nfe``). Without ``batch_invariant``, batched matrix products
    round differently with the batch size (~1e-5 in the final image). The stochastic
    solver with ``S_churn > 0`` draws its churn noise per image too
    (:func:`radiodiff.seeds.churn_generator` of ``seed + k``).

    Parameters
    ----------
    release : Release
        From :func:`radiodiff.pipeline.release.load_release`.
    n : int
        Number of images (>= 1).
    label : str or sequence, optional
        Class name (one of ``release.classes``); None = not fixed (see ``conditions``). A
        sequence of ``n`` (str or None each) gives each image its own.
    peak_flux : float or sequence, optional
        Peak surface brightness, Jy/beam (> 0); needs a model trained on ``peak_flux``.
        None = not fixed. A sequence of ``n`` (number or None each): one per image.
    las_arcsec : float or sequence, optional
        Largest angular size, arcsec (> 0); needs a model trained on ``las_arcsec``.
        None = not fixed. A sequence of ``n`` (number or None each): one per image.
    spec : SamplerSpec, optional
        Solver, schedule and guidance weight (default: ``release.sampler``, the setting
        the release recommends and its quoted numbers are for).
    seed : int
        Seed of image 0; image k uses ``seed + k``. Ignored when ``seeds`` is given.
    seeds : sequence of int, optional
        ``n`` seeds (each in [0, 2**63 - 1]), one per image, instead of ``seed + k``: the
        seed of the initial noise, of the drawn conditions and of the churn noise of each
        image.
    batch_size : int
        Images per solver call (>= 1).
    project : bool
        Put the images through the data's last preprocessing steps recorded in the release
        (:func:`radiodiff.data.projection.project_like_data`: quantum floor with its halo,
        peak at 1; :func:`radiodiff.data.projection.apply_projection`); the unprojected
        images are kept in ``GenerateResult.raw``.
    batch_invariant : bool
        Evaluate the network image by image (bit-identical results for any batch size;
        ~8 % slower on a CPU). Switch off on a GPU, where batching is what makes it fast.
    progress : callable, optional
        ``progress(iterable, total)`` told the ``n`` images, each when its batch is done
        (a progress bar at the CLI edge).
    conditions : {"draw", "null"}, optional
        What the model's conditions that are not fixed become. ``draw``: image k takes them
        from one training row (``release.train_conditions``) drawn with
        :func:`~radiodiff.seeds.condition_rng` of ``seed + k`` among the rows
        that fit the fixed ones (:meth:`ConditionTable.pool`: the fixed class; the rows
        nearest to a fixed peak flux or LAS), so n images follow the training set's joint
        distribution. ``null``: the null condition (unconditional). Default: ``draw``
        when the release has its training conditions, else ``null``.
    refine : bool, optional
        Re-draw the faint end with the release's refiner (:mod:`radiodiff.pipeline.refine`:
        the base image, projected like the data, noised to the refiner's ``sigma`` in its
        stretched space and integrated back to 0 in its ``steps``, unguided; ``nfe``
        counts both networks). Default: when the release has a refiner. True without one
        is an error.
    islands : bool
        When the release's output projection records the data's noise islands
        (:mod:`radiodiff.data.islands`; ``models/first``: the FIRST images' 3-rms cut and
        8-bit quantisation), lay them under each image, drawn from its seed. False: a clean
        sky, e.g. to inject the sources into one's own noise maps.
    allow_extrapolation : bool
        Sample peak flux / LAS conditions more than
        :data:`~radiodiff.diffusion.condition_table.EXTRAPOLATION_FACTOR` (10) times below
        the smallest or above the largest of the release's training rows
        (``train_conditions.csv``); without it they are refused (ValueError). Every
        condition must be within float32's range either way.
    **sampler_options
        ``sampler``, ``steps``, ``guidance``, ``sigma_min``, ``sigma_max``, ``rho``,
        ``S_churn``: replace those of ``spec`` (:meth:`SamplerSpec.build`).

    Returns
    -------
    GenerateResult
    """
    spec = SamplerSpec.build(spec or release.sampler, **sampler_options)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    n = _check_int("n", n, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seeds = _image_seeds(seed, seeds, n)
    check_sample_memory(n, release.image_size)
    pipe = release.pipeline.for_call(spec, refine, bool(project), islands, release.path)
    raw, mode = _image_conditions(release, seeds, label, peak_flux, las_arcsec, conditions)
    if not allow_extrapolation:
        _check_trained_range(release, raw)
    drawn = run_pipeline(release, pipe, seeds, _network_conditions(release, raw),
                         raw["peak_flux"], batch_size=batch_size,
                         batch_invariant=batch_invariant, progress=progress)
    settings = dict(spec.settings(), seed=int(seeds[0]), batch_size=batch_size,
                    batch_invariant=bool(batch_invariant), projected=drawn.raw is not None,
                    islands=pipe.projection is not None and pipe.projection.islands is not None,
                    conditions=mode,
                    refine=None if pipe.refine is None else pipe.refine.to_dict())
    return GenerateResult(images=drawn.images, physical=drawn.physical,
                          unit=NORMALISED if drawn.physical is None else "Jy/beam",
                          conditions=raw, seeds=seeds, nfe=drawn.nfe, settings=settings,
                          raw=drawn.raw, created_utc=created)
