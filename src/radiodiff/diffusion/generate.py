"""Draw samples from a release and write them as science output.

:func:`generate` turns a loaded :class:`~radiodiff.io.release.Release` into images: one
generator per seed (sample k uses ``seed + k``, so it does not depend on the batch size),
physical conditions (class name, peak flux in Jy/beam, largest angular size in arcsec)
encoded with the release's ``ConditionTransform``, classifier-free guidance via
:func:`radiodiff.diffusion.edm.guided`, and any of the solvers in :mod:`radiodiff.diffusion.sampling`.

:func:`save_samples` writes what :func:`generate` returns: one float32 FITS file per image
with a celestial WCS and provenance cards, one HDF5 bundle ``samples.h5``, and a PNG grid
``preview.png`` (a preview only; the FITS files are the science output).

Flux restoration
----------------
The network works in model space; its output is decoded to data space, [0, 1], by the
release's intensity transform. Images are put back in Jy/beam only when that inverse is known: the training images were in Jy/beam (``image_unit == "Jy/beam"``), each
was divided by its own peak (``scaling == "per_image"`` with zero offset, i.e. negatives
not ``keep``) and a ``peak_flux`` was requested. Then ``physical = image * peak_flux``
(the per-image scale of a training image is its peak, which the model was conditioned
on). In every other case (no peak flux requested, ``dataset`` scaling, arbitrary units)
the images stay normalised and are labelled ``"normalised"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

from radiodiff.io.artifacts import atomic_write, save_image_grid
from radiodiff.config import SamplerConfig
from radiodiff.diffusion.edm import guided
from radiodiff.io.release import Release
from radiodiff.diffusion.sampling import (SAMPLERS, CountingDenoiser, churn_generator,
                                          karras_sigmas, per_image, seeded_noise)

__all__ = ["GenerateResult", "generate", "save_samples", "sample_filename"]

NORMALISED = "normalised"
SAMPLES_FORMAT_VERSION = 2  # 2: attribute `model` (folder name) replaces `model_path`
_PREVIEW_MAX = 64  # images in preview.png


@dataclass
class GenerateResult:
    """Samples from :func:`generate`, one row per image.

    Attributes
    ----------
    images : numpy.ndarray
        (n, 1, H, W) float32 images in data space [0, 1] (model space decoded by the
        release's intensity transform).
    physical : numpy.ndarray or None
        (n, 1, H, W) float32 images in Jy/beam when the flux could be restored (see the
        module docstring), else None.
    unit : str
        ``"Jy/beam"`` when ``physical`` is set, else ``"normalised"``.
    conditions : dict of numpy.ndarray
        The condition each image was drawn with, in physical units: ``label`` (int, -1 =
        none), ``class`` (str, "" = none), ``peak_flux`` (Jy/beam, NaN = none),
        ``las_arcsec`` (arcsec, NaN = none); each shape (n,).
    seeds : numpy.ndarray
        (n,) int64, the seed of each image's initial noise.
    nfe : numpy.ndarray
        (n,) int64, network evaluations spent on each image (Heun: 2 steps - 1; doubled
        with classifier-free guidance, which runs the network with and without condition).
    settings : dict
        Sampler settings (sampler, steps, guidance, sigma_min, sigma_max, rho, S_churn,
        seed, batch_size, projected).
    raw : numpy.ndarray or None
        The decoded images before the output projection (None when none was applied).
    """
    images: np.ndarray
    physical: Optional[np.ndarray]
    unit: str
    conditions: dict[str, np.ndarray]
    seeds: np.ndarray
    nfe: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    raw: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def output(self) -> np.ndarray:
        """The science images: ``physical`` when restored, else ``images``."""
        return self.physical if self.physical is not None else self.images


def _positive(name: str, value: Optional[float], unit: str) -> Optional[float]:
    if value is None:
        return None
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number ({unit}), got {value}")
    return v


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _condition(release: Release, label: Optional[str], scalars: dict[str, Optional[float]],
               n: int) -> tuple[Optional[dict[str, torch.Tensor]], dict[str, np.ndarray]]:
    """The network condition for one batch of ``n`` and the raw values per image."""
    classes = release.classes
    trained = release.scalar_conditions
    raw: dict[str, np.ndarray] = {"label": np.full(n, -1, dtype=np.int64),
                                  "class": np.full(n, "", dtype=object)}
    cond: dict[str, torch.Tensor] = {}
    if label is not None:
        if not classes:
            raise ValueError(f"this model was trained without class labels; got class "
                             f"{label!r}")
        if label not in classes:
            raise ValueError(f"unknown class {label!r}; valid classes: {', '.join(classes)}")
        idx = classes.index(label)
        cond["label"] = torch.full((n,), idx, dtype=torch.long)
        raw["label"][:], raw["class"][:] = idx, label
    for name, value in scalars.items():
        raw[name] = np.full(n, np.nan)
        if value is None:
            continue
        if name not in trained:
            has = ([f"class ({', '.join(classes)})"] if classes else []) + list(trained)
            raise ValueError(f"this model was not trained with the {name} condition "
                             f"(its conditions: {', '.join(has) or 'none'})")
        encoded = np.asarray(release.transform.encode(name, np.full(n, value)), dtype=np.float32)
        if not np.isfinite(encoded).all():
            raise ValueError(f"{name}={value} cannot be encoded by the model's transform")
        cond[name] = torch.from_numpy(encoded.reshape(n).copy())
        raw[name][:] = value
    return (cond or None), raw


def generate(release: Release, n: int, label: Optional[str] = None,
             peak_flux: Optional[float] = None, las_arcsec: Optional[float] = None,
             sampler: str = "heun", steps: int = 25, guidance: float = 1.0, seed: int = 0,
             batch_size: int = 32, sigma_min: float = SamplerConfig.sigma_min,
             sigma_max: float = SamplerConfig.sigma_max, rho: float = SamplerConfig.rho,
             S_churn: float = 0.0, batch_invariant: bool = True,
             progress: Optional[Callable[[Iterable, int], Iterable]] = None,
             project: bool = True) -> GenerateResult:
    """Draw ``n`` images from a release, optionally conditioned and guided.

    Sampling runs the chosen solver over ``karras_sigmas(steps, sigma_min, sigma_max,
    rho)`` (EDM Eq. 5) with the denoiser ``D_w = D_u + w (D_c - D_u)`` (classifier-free
    guidance, Ho & Salimans 2022). Image k starts from ``seeded_noise([seed + k])`` and,
    with ``batch_invariant`` (default), the network is evaluated one image at a time
    (:func:`radiodiff.diffusion.sampling.per_image`), so image k is bit-identical whatever
    ``batch_size``. Without it, batched matrix products round differently with the batch
    size (~1e-5 in the final image). The stochastic solver with ``S_churn > 0`` draws its
    churn noise per image too (:func:`radiodiff.diffusion.sampling.churn_generator`
    of ``seed + k``).

    Parameters
    ----------
    release : Release
        From :func:`radiodiff.io.release.load_release`.
    n : int
        Number of images (>= 1).
    label : str, optional
        Class name (one of ``release.classes``); None = no class condition.
    peak_flux : float, optional
        Peak surface brightness, Jy/beam (> 0); needs a model trained on ``peak_flux``.
    las_arcsec : float, optional
        Largest angular size, arcsec (> 0); needs a model trained on ``las_arcsec``.
    sampler : str
        ``"euler"``, ``"heun"``, ``"stochastic"`` or ``"dpmpp_2m"``.
    steps : int
        Solver steps (>= 1).
    guidance : float
        Guidance weight w >= 0: 0 = unconditional, 1 = plain conditional.
    seed : int
        Seed of image 0; image k uses ``seed + k``.
    batch_size : int
        Images per solver call (>= 1).
    sigma_min, sigma_max, rho : float
        Noise schedule (model-space units), EDM Eq. 5.
    S_churn : float
        Stochasticity of the ``stochastic`` solver (EDM Algorithm 2), >= 0.
    project : bool
        Put the images through the data's last preprocessing steps recorded in the release
        (:func:`radiodiff.data.preprocess.project_like_data`: quantum floor with its halo,
        peak at 1); the unprojected images are kept in ``GenerateResult.raw``.
    batch_invariant : bool
        Evaluate the network image by image (bit-identical results for any batch size;
        ~8 % slower on a CPU). Switch off on a GPU, where batching is what makes it fast.
    progress : callable, optional
        ``progress(iterable, total)`` wrapping the loop over batches (a progress bar at
        the CLI edge).

    Returns
    -------
    GenerateResult
    """
    n = _check_int("n", n, 1)
    steps = _check_int("steps", steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    if not (math.isfinite(float(guidance)) and guidance >= 0):
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
    if not (math.isfinite(float(S_churn)) and S_churn >= 0):
        raise ValueError(f"S_churn must be a finite number >= 0, got {S_churn}")
    scalars = {"peak_flux": _positive("peak_flux", peak_flux, "Jy/beam"),
               "las_arcsec": _positive("las_arcsec", las_arcsec, "arcsec")}
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    cond, raw = _condition(release, label, scalars, 1)  # validates before any sampling

    size = release.image_size
    intensity = release.intensity  # model space -> data space [0, 1]
    counter = CountingDenoiser(per_image(release.denoiser) if batch_invariant
                               else release.denoiser)
    D = guided(counter, guidance)
    solver = SAMPLERS[sampler]
    churn = sampler == "stochastic" and S_churn > 0
    device = next(release.denoiser.parameters()).device
    seeds = np.arange(seed, seed + n, dtype=np.int64)
    # Per-image churn noise needs one solver call per image (one generator per seed).
    chunk = 1 if churn else batch_size
    batches = [seeds[i:i + chunk] for i in range(0, n, chunk)]
    images, nfe = [], []
    with torch.inference_mode():
        for b in (progress(batches, len(batches)) if progress else batches):
            noise = seeded_noise(b.tolist(), (1, size, size), device=device)
            cond_b = None if cond is None else {
                k: v.expand(len(b)).to(device) for k, v in cond.items()}
            counter.nfe = 0
            if churn:
                x = solver(D, noise, sigmas, cond_b, S_churn=S_churn,
                           generator=churn_generator(int(b[0])))
            elif sampler == "stochastic":
                x = solver(D, noise, sigmas, cond_b, S_churn=0.0)
            else:
                x = solver(D, noise, sigmas, cond_b)
            images.append(intensity.decode(x.double()).float().cpu().numpy())
            nfe += [counter.nfe] * len(b)
    out = np.concatenate(images).astype(np.float32)
    unprojected = None
    if project and release.projection:
        from radiodiff.data.preprocess import project_like_data
        unprojected, out = out, project_like_data(out, **release.projection)
    conditions = {k: np.repeat(v, n) for k, v in raw.items()}

    meta = release.meta
    restorable = (meta.get("image_unit") == "Jy/beam" and meta.get("scaling") == "per_image"
                  and meta.get("negatives") != "keep" and scalars["peak_flux"] is not None)
    physical = (out * np.float32(scalars["peak_flux"])).astype(np.float32) if restorable \
        else None
    settings = dict(sampler=sampler, steps=steps, guidance=float(guidance),
                    sigma_min=float(sigma_min), sigma_max=float(sigma_max), rho=float(rho),
                    S_churn=float(S_churn), seed=seed, batch_size=batch_size,
                    batch_invariant=bool(batch_invariant),
                    projected=unprojected is not None)
    return GenerateResult(images=out, physical=physical,
                          unit="Jy/beam" if restorable else NORMALISED,
                          conditions=conditions, seeds=seeds, nfe=np.asarray(nfe, np.int64),
                          settings=settings, raw=unprojected)


# --------------------------------------------------------------------------- output

def sample_filename(k: int) -> str:
    """Name of the FITS file of image ``k`` in an output folder."""
    return f"sample_{k:05d}.fits"


def _provenance(release: Release, result: GenerateResult) -> dict[str, Any]:
    """Run-level provenance shared by the FITS headers and the HDF5 attributes.

    The model is identified by its release folder's name and the SHA-256 of its weights,
    never by a path on the machine that made the samples. The survey telescope and
    observing frequency are ``telescope`` / ``freq_hz`` of the release meta when present;
    otherwise they follow from the training data in the release config: FIRST-based sets
    (``data.name`` or ``data.source`` ``first`` / ``mirabest``, or a 5.4" beam) -> VLA at
    1.4 GHz, LoTSS -> LOFAR at 144 MHz; else unknown (``""`` and NaN).
    """
    import radiodiff
    from omegaconf import OmegaConf

    meta, s = release.meta, result.settings
    surveys = {"first": ("VLA", 1.4e9), "mirabest": ("VLA", 1.4e9),
               "lotss": ("LOFAR", 1.44e8)}
    telescope, freq = meta.get("telescope"), meta.get("freq_hz")
    if telescope is None or freq is None:
        cfg = OmegaConf.create(release.config or {})
        names = [getattr(v, "value", v) for v in (
            OmegaConf.select(cfg, "data.name", default=None),
            OmegaConf.select(cfg, "data.source", default=None))]
        beam = meta.get("beam_arcsec") or OmegaConf.select(cfg, "data.beam_arcsec",
                                                           default=None)
        known = next((surveys[str(n)] for n in names if str(n) in surveys), None)
        if known is None and beam is not None and list(beam) == [5.4, 5.4]:
            known = surveys["first"]  # the FIRST restoring beam
        telescope = known[0] if telescope is None and known else telescope
        freq = known[1] if freq is None and known else freq
    return {
        "model": Path(release.path).resolve().name,
        "model_sha256": release.weights_sha256,
        "model_name": meta.get("model_name", ""),
        "data_sha256": meta.get("data_sha256") or "",
        "model_git_commit": meta.get("git_commit") or "",
        "telescope": str(telescope or ""),
        "freq_hz": float("nan") if freq is None else float(freq),
        "sampler": s["sampler"], "steps": s["steps"], "guidance": s["guidance"],
        "sigma_min": s["sigma_min"], "sigma_max": s["sigma_max"], "rho": s["rho"],
        "S_churn": s["S_churn"], "seed": s["seed"],
        "unit": result.unit,
        "package_version": radiodiff.__version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _fits_cards(prov: dict[str, Any], result: GenerateResult, k: int) -> dict[str, Any]:
    c = result.conditions
    peak, las = float(c["peak_flux"][k]), float(c["las_arcsec"][k])
    return {
        "ORIGIN": "radiodiff",
        "MODEL": (prov["model"], "release folder name"),
        "MODELSHA": (prov["model_sha256"], "SHA-256 of model.safetensors"),
        "MODELNAM": (prov["model_name"], "network preset"),
        "DATASHA": (prov["data_sha256"], "SHA-256 of the training data"),
        "SEED": (int(result.seeds[k]), "seed of the initial noise"),
        "SAMPLER": (prov["sampler"], "ODE/SDE solver"),
        "STEPS": (prov["steps"], "solver steps"),
        "GUIDANCE": (prov["guidance"], "classifier-free guidance weight"),
        "SIGMAMIN": (prov["sigma_min"], "smallest noise level"),
        "SIGMAMAX": (prov["sigma_max"], "largest noise level"),
        "RHO": (prov["rho"], "schedule curvature (EDM Eq. 5)"),
        "SCHURN": (prov["S_churn"], "stochasticity (EDM Alg. 2)"),
        "NFE": (int(result.nfe[k]), "network evaluations"),
        "CLASS": (str(c["class"][k]) or "none", "class condition"),
        "PEAKFLUX": (peak if math.isfinite(peak) else "none", "[Jy/beam] peak condition"),
        "LAS": (las if math.isfinite(las) else "none", "[arcsec] size condition"),
        "IMGUNIT": (result.unit, "pixel unit"),
        "RDVERS": (prov["package_version"], "radiodiff version"),
        "DATE": (prov["created_utc"], "UTC creation time"),
    }


def _write_h5(path: Path, release: Release, result: GenerateResult,
              prov: dict[str, Any]) -> Path:
    import h5py

    meta = release.meta

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("images", data=result.images, compression="gzip", shuffle=True)
            if result.raw is not None:  # before the output projection
                f.create_dataset("images_raw", data=result.raw, compression="gzip",
                                 shuffle=True)
            if result.physical is not None:
                ds = f.create_dataset("physical", data=result.physical, compression="gzip",
                                      shuffle=True)
                ds.attrs["unit"] = result.unit
            f.create_dataset("seeds", data=result.seeds)
            f.create_dataset("nfe", data=result.nfe)
            c = result.conditions
            f.create_dataset("label", data=c["label"].astype(np.int16))
            f.create_dataset("class", data=c["class"].astype(object),
                             dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("peak_flux", data=c["peak_flux"].astype(np.float64))
            f.create_dataset("las_arcsec", data=c["las_arcsec"].astype(np.float64))
            attrs = dict(prov, format_version=SAMPLES_FORMAT_VERSION, n=len(result),
                         batch_size=result.settings["batch_size"],
                         classes=json.dumps(list(meta.get("classes", []))),
                         image_unit=meta.get("image_unit", ""),
                         pixel_scale_arcsec=_num(meta.get("pixel_scale_arcsec")),
                         beam_arcsec=json.dumps(meta.get("beam_arcsec")),
                         scaling=meta.get("scaling", ""))
            for k, v in attrs.items():
                f.attrs[k] = v

    return atomic_write(path, write)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _write_preview(path: Path, result: GenerateResult) -> Path:
    s = result.settings
    n = min(len(result.images), _PREVIEW_MAX)
    return save_image_grid(path, result.images[:n],
                           f"{s['sampler']} {s['steps']} steps, guidance {s['guidance']:g} "
                           "(model space, preview only)",
                           [f"seed {seed}" for seed in result.seeds[:n]],
                           ncols=int(math.ceil(math.sqrt(n))))


def save_samples(out_dir: str | Path, release: Release, result: GenerateResult,
                 ra: Optional[float] = None, dec: Optional[float] = None) -> dict[str, Path]:
    """Write FITS files, ``samples.h5`` and ``preview.png`` for a :class:`GenerateResult`.

    Each FITS file (``sample_00000.fits`` ...) holds ``result.output[k]`` as float32 with a
    SIN-projection WCS of the release's pixel scale centred on (``ra``, ``dec``), and the
    cards of :func:`radiodiff.io.fits.write_fits_image`: BUNIT ``JY/BEAM`` when the flux was
    restored, else dimensionless (``''``) with a COMMENT on the normalisation (peak = 1 for per-image
    scaling) and no flux scale; TELESCOP and FREQ [Hz] of the training survey (see
    :func:`_provenance`); BMAJ/BMIN/BPA [deg] (BPA from ``beam_pa_deg`` of the release meta,
    else 0); RMS [Jy/beam] from ``rms_jy_beam`` of the release meta for restored images,
    else a COMMENT that the noise is unknown; then provenance cards (model folder name and
    SHA-256, seed, sampler, steps, guidance, conditions, NFE). No path of the local machine
    is written. Every file is written atomically.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Output folder (created).
    release : Release
        The release the samples came from.
    result : GenerateResult
        From :func:`generate`.
    ra, dec : float, optional
        Sky position of the image centres, degrees (ICRS); both or neither. Neither writes
        the placeholder (0, 0) and a header COMMENT saying so.

    Returns
    -------
    dict
        ``{"fits": [path, ...], "samples.h5": path, "preview.png": path}``.
    """
    from radiodiff.io.fits import write_fits_image

    if (ra is None) != (dec is None):
        raise ValueError(f"give both ra and dec (deg) or neither, got ra={ra}, dec={dec}")
    out_dir = Path(out_dir)
    prov = _provenance(release, result)
    meta = release.meta
    scale = meta.get("pixel_scale_arcsec")
    if scale is None:
        raise ValueError(f"{release.path}: release has no pixel_scale_arcsec; cannot write "
                         "a celestial WCS")
    restored = result.unit == "Jy/beam"
    bunit, comments = "JY/BEAM", []
    if not restored:
        bunit = None  # write_fits_image: BUNIT = '' (dimensionless)
        scaling = meta.get("scaling") or "unknown"
        if scaling == "per_image" and meta.get("negatives") != "keep":
            how = "peak-normalised (peak = 1)"
        else:
            how = f"normalised to [0, 1] ({scaling} scaling)"
        comments.append(f"Pixel values are {how}: the image has no flux scale.")
    rms = meta.get("rms_jy_beam") if restored else None
    data = result.output
    out_dir.mkdir(parents=True, exist_ok=True)
    fits_files = [write_fits_image(out_dir / sample_filename(k), data[k], float(scale),
                                   beam_arcsec=meta.get("beam_arcsec"), bunit=bunit,
                                   cards=_fits_cards(prov, result, k), ra=ra, dec=dec,
                                   beam_pa_deg=meta.get("beam_pa_deg"),
                                   telescope=prov["telescope"] or None,
                                   freq_hz=None if math.isnan(prov["freq_hz"])
                                   else prov["freq_hz"],
                                   rms=rms, comments=comments)
                  for k in range(len(result))]
    return {"fits": fits_files,
            "samples.h5": _write_h5(out_dir / "samples.h5", release, result, prov),
            "preview.png": _write_preview(out_dir / "preview.png", result)}
