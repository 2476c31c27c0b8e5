"""Sample writers: what :func:`radiodiff.pipeline.generate.generate` returns, on disk.

:class:`GenerateResult` holds the images with their conditions and settings.
:func:`save_samples` writes one float32 FITS file per image with a celestial WCS and
provenance cards, one HDF5 bundle ``samples.h5``, and a PNG grid ``preview.png`` (a
preview only; the FITS files are the science output). :func:`sample_images` gives the
same images with the same headers in memory (both are built by :func:`_sample_hdus`).
The release the images came from is read through :class:`ReleaseInfo` (what
:class:`radiodiff.pipeline.release.Release` offers): io imports nothing above it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Protocol

import numpy as np

from radiodiff.io.artifacts import artifact_dir, atomic_write, relocated, save_image_grid
from radiodiff.io.integrity import open_h5
from radiodiff.io.provenance import git_commit

if TYPE_CHECKING:
    from astropy.io import fits

__all__ = ["GenerateResult", "ReleaseInfo", "save_samples", "sample_images", "sample_filename",
           "samples_nbytes", "read_samples", "SAMPLES_FORMAT_VERSION", "CONDITION_MODES",
           "GIVEN"]

# Where the conditions of drawn images came from, as generate() records it and the samples
# files carry it (HDF5 attribute and FITS card CONDS): the conditions the caller did not set
# were drawn from the training rows or left null (generate's `conditions`) ...
CONDITION_MODES = ("draw", "null")
# ... or the caller set every condition the model takes (none drawn or left null).
GIVEN = "given"

SAMPLES_FORMAT_VERSION = 2  # 2: attribute `model` (folder name) replaces `model_path`
_PREVIEW_MAX = 64  # images in preview.png


@dataclass
class GenerateResult:
    """Samples from :func:`radiodiff.pipeline.generate.generate`, one row per image.

    Attributes
    ----------
    images : numpy.ndarray
        (n, 1, H, W) float32 images in data space [0, 1] (model space decoded by the
        release's intensity transform).
    physical : numpy.ndarray or None
        (n, 1, H, W) float32 images in Jy/beam when the flux could be restored
        (:mod:`radiodiff.pipeline.generate`, "Flux restoration"), else None.
    unit : str
        ``"Jy/beam"`` when ``physical`` is set, else ``"normalised"``.
    conditions : dict of numpy.ndarray
        The condition each image was drawn with (fixed by the caller or drawn from the
        training rows), in physical units: ``label`` (int, -1 = none), ``class`` (str, "" =
        none), ``peak_flux`` (Jy/beam, NaN = none), ``las_arcsec`` (arcsec, NaN = none);
        each shape (n,).
    seeds : numpy.ndarray
        (n,) int64, the seed of each image's initial noise.
    nfe : numpy.ndarray
        (n,) int64, network evaluations spent on each image (Heun: 2 steps - 1; doubled
        with classifier-free guidance, which runs the network with and without condition).
    settings : dict
        Sampler settings (sampler, steps, guidance, sigma_min, sigma_max, rho, S_churn,
        seed, batch_size, projected) and ``conditions``: the mode that filled the
        conditions not given (``draw`` / ``null``), or ``given`` (:data:`GIVEN`) when every
        condition the model takes was given.
    raw : numpy.ndarray or None
        The decoded images before the output projection (None when none was applied).
    created_utc : str
        When the images were made (UTC, ISO 8601 to the second): the DATE of their headers.
    """
    images: np.ndarray
    physical: Optional[np.ndarray]
    unit: str
    conditions: dict[str, np.ndarray]
    seeds: np.ndarray
    nfe: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    raw: Optional[np.ndarray] = None
    created_utc: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def output(self) -> np.ndarray:
        """The science images: ``physical`` when restored, else ``images``."""
        return self.physical if self.physical is not None else self.images


class ReleaseInfo(Protocol):
    """What the writers read of the release the images came from
    (:class:`radiodiff.pipeline.release.Release`)."""
    meta: dict
    config: Any
    path: Path
    weights_sha256: str
    refiner: Any  # a ReleaseInfo (its weights_sha256) or None

    def pixel_scale(self, las_arcsec: float = math.nan) -> float | None: ...



def sample_filename(k: int) -> str:
    """Name of the FITS file of image ``k`` in an output folder."""
    return f"sample_{k:05d}.fits"


def samples_nbytes(n: int, image_size: int) -> int:
    """Upper estimate of the bytes :func:`save_samples` writes for ``n`` images of
    ``image_size``² pixels: per image a float32 FITS file (2880-byte blocks, two header
    blocks) and up to three float32 copies in ``samples.h5`` (images, raw, physical; before
    compression), plus 2 MiB for the preview."""
    pixels = 4 * int(image_size) ** 2
    fits = 2880 * (2 + math.ceil(pixels / 2880))
    return int(n) * (fits + 3 * pixels + 64) + 2 * 2**20


def _provenance(release: ReleaseInfo, result: GenerateResult) -> dict[str, Any]:
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
        "git_commit": git_commit() or "",  # of the code drawing the samples ("": unknown)
        "telescope": str(telescope or ""),
        "freq_hz": float("nan") if freq is None else float(freq),
        "sampler": s["sampler"], "steps": s["steps"], "guidance": s["guidance"],
        "sigma_min": s["sigma_min"], "sigma_max": s["sigma_max"], "rho": s["rho"],
        "S_churn": s["S_churn"], "seed": s["seed"],
        "conditions": s.get("conditions", "null"),
        **_refine_provenance(release, s.get("refine")),
        "projected": bool(s.get("projected", False)),
        "islands": bool(s.get("islands", False)),
        "unit": result.unit,
        "package_version": radiodiff.__version__,
        "created_utc": result.created_utc
        or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _refine_provenance(release: ReleaseInfo, refine: Optional[dict]) -> dict[str, Any]:
    """The refinement a result went through (radiodiff.pipeline.refine), or 0 / "" when none."""
    if not refine:
        return {"refine_sigma": 0.0, "refine_steps": 0, "refine_rho": 0.0, "refiner_sha256": ""}
    return {"refine_sigma": float(refine["sigma"]), "refine_steps": int(refine["steps"]),
            "refine_rho": float(refine["rho"]),
            "refiner_sha256": release.refiner.weights_sha256}


def _fits_cards(prov: dict[str, Any], result: GenerateResult, k: int) -> dict[str, Any]:
    c = result.conditions
    peak, las = float(c["peak_flux"][k]), float(c["las_arcsec"][k])
    return {
        "ORIGIN": "radiodiff",
        "SYNTHETI": (True, "drawn by a generative model, not observed"),
        "GITCOMMT": (prov["git_commit"] or None, "commit of the code used"),
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
        "REFSIGMA": (prov["refine_sigma"], "faint-end refiner sigma (0: not refined)"),
        "REFSTEPS": (prov["refine_steps"], "faint-end refiner steps"),
        "REFRHO": (prov["refine_rho"], "faint-end refiner schedule curvature"),
        "REFSHA": (prov["refiner_sha256"], "SHA-256 of refiner/model.safetensors"),
        "NFE": (int(result.nfe[k]), "network evaluations (base + refiner)"),
        "PROJECTD": (prov["projected"], "through the data's last preprocessing steps"),
        "ISLANDS": (prov["islands"], "the data's noise islands laid under it"),
        "CLASS": (str(c["class"][k]) or "none", "class condition"),
        # numeric cards: left out when not applicable (None), never a string
        "PEAKFLUX": (peak if math.isfinite(peak) else None, "[Jy/beam] peak condition"),
        "LAS": (las if math.isfinite(las) else None, "[arcsec] size condition"),
        "CONDS": (None if prov["conditions"] == GIVEN else prov["conditions"],
                  "unset conditions: draw = from training rows"),
        "IMGUNIT": (result.unit, "pixel unit"),
        "RDVERS": (prov["package_version"], "radiodiff version"),
        "DATE": (prov["created_utc"], "UTC creation time"),
    }


def _write_h5(path: Path, release: ReleaseInfo, result: GenerateResult,
              prov: dict[str, Any], scales: list[float]) -> Path:
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
            f.create_dataset("pixel_scale_arcsec", data=np.asarray(scales, np.float64))
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
    # two short lines: one line was cut off by the two-panel-wide grid of --n 2 to 4
    return save_image_grid(path, result.images[:n],
                           f"{s['sampler']} {s['steps']} steps, guidance {s['guidance']:g}\n"
                           "model space, preview only",
                           [f"seed {seed}" for seed in result.seeds[:n]],
                           ncols=int(math.ceil(math.sqrt(n))))


def _sample_hdus(release: ReleaseInfo, result: GenerateResult, ra: Optional[float],
                 dec: Optional[float]) -> tuple[Iterator[fits.PrimaryHDU], dict, list[float]]:
    """The one rule for the FITS form of generated images: (a generator of one
    :func:`radiodiff.io.fits.image_hdu` per image, the run provenance, the pixel scales).

    Image k has pixels of ``release.pixel_scale(las_k)`` (its LAS condition; see
    :meth:`~radiodiff.pipeline.release.Release.pixel_scale`) and the cards listed in
    :func:`save_samples`.
    """
    from radiodiff.io.fits import image_hdu

    if (ra is None) != (dec is None):
        raise ValueError(f"give both ra and dec (deg) or neither, got ra={ra}, dec={dec}")
    meta = release.meta
    if meta.get("pixel_scale_arcsec") is None:
        raise ValueError(f"{release.path}: release has no pixel_scale_arcsec; cannot write "
                         "a celestial WCS")
    prov = _provenance(release, result)
    restored = result.unit == "Jy/beam"
    bunit, comments = "Jy/beam", []
    if not restored:
        bunit = None  # image_hdu: BUNIT = '' (dimensionless)
        scaling = meta.get("scaling") or "unknown"
        if scaling == "per_image" and meta.get("negatives") != "keep":
            how = "peak-normalised (peak = 1)"
        else:
            how = f"normalised to [0, 1] ({scaling} scaling)"
        comments.append(f"Pixel values are {how}: the image has no flux scale.")
    elif meta.get("negatives", "clip") == "clip":
        noise = "of rms RMS (give a source finder a zero mean and RMS" if meta.get(
            "rms_jy_beam") else "(give a source finder a zero mean"
        comments.append("Negatives clipped to 0 as in the training images: the background is "
                        f"not Gaussian noise {noise}; sum flux within islands only).")
    kw = dict(beam_arcsec=meta.get("beam_arcsec"), bunit=bunit, ra=ra, dec=dec,
              beam_pa_deg=meta.get("beam_pa_deg"), telescope=prov["telescope"] or None,
              freq_hz=None if math.isnan(prov["freq_hz"]) else prov["freq_hz"],
              rms=meta.get("rms_jy_beam") if restored else None, comments=comments)
    scales = [float(release.pixel_scale(las)) for las in result.conditions["las_arcsec"]]
    data = result.output
    hdus = (image_hdu(data[k], scales[k], cards=_fits_cards(prov, result, k), **kw)
            for k in range(len(result)))
    return hdus, prov, scales


def sample_images(release: ReleaseInfo, result: GenerateResult, ra: Optional[float] = None,
                  dec: Optional[float] = None) -> list[tuple[np.ndarray, fits.Header]]:
    """The science images of a :class:`GenerateResult` with their FITS headers, in memory.

    For building training sets without files: each pair is ``result.output[k]`` as a
    (H, W) float32 array (Jy/beam when restored) and the ``astropy.io.fits.Header`` that
    :func:`save_samples` writes to ``sample_<k>.fits``, card for card (the same function
    builds both): celestial WCS (SIN, centred on ``ra``, ``dec``) with the pixel scale of
    the image's LAS condition, BUNIT, beam, FREQ, TELESCOP, RMS, conditions and
    provenance. ``astropy.wcs.WCS(header)`` gives each image's WCS.

    Parameters
    ----------
    release : ReleaseInfo
        The release the images came from.
    result : GenerateResult
        From :func:`radiodiff.pipeline.generate.generate`.
    ra, dec : float, optional
        Sky position of the image centres, degrees (ICRS); both or neither (neither: the
        placeholder (0, 0), said so in a COMMENT).

    Returns
    -------
    list of (numpy.ndarray, astropy.io.fits.Header)
    """
    hdus, _, _ = _sample_hdus(release, result, ra, dec)
    return [(hdu.data, hdu.header) for hdu in hdus]


def save_samples(out_dir: str | Path, release: ReleaseInfo, result: GenerateResult,
                 ra: Optional[float] = None, dec: Optional[float] = None,
                 overwrite: bool = False) -> dict[str, Path]:
    """Write FITS files, ``samples.h5`` and ``preview.png`` for a :class:`GenerateResult`.

    Each FITS file (``sample_00000.fits`` ...) holds ``result.output[k]`` as float32 with a
    SIN-projection WCS centred on (``ra``, ``dec``) whose pixel scale is the one
    :meth:`radiodiff.pipeline.release.Release.pixel_scale` gives the image's LAS condition (the
    cutout rule for data cut out around each source's LAS, else the release's), and the
    cards of :func:`radiodiff.io.fits.image_hdu`: BUNIT ``Jy/beam`` when the flux was
    restored, else dimensionless (``''``) with a COMMENT on the normalisation (peak = 1 for
    per-image scaling) and no flux scale; TELESCOP and FREQ [Hz] of the training survey (see
    :func:`_provenance`); BMAJ/BMIN/BPA [deg] (BPA from ``beam_pa_deg`` of the release meta,
    else 0); RMS [Jy/beam] from ``rms_jy_beam`` of the release meta for restored images,
    else a COMMENT that the noise is unknown; then ``SYNTHETI = T`` (the image is drawn by a
    model, not observed), the git commit of the code that drew it (GITCOMMT) and provenance
    cards (model folder name and SHA-256, seed, sampler, steps, guidance, conditions, with
    the numeric PEAKFLUX / LAS left out when not set, and whether unset ones were drawn
    (CONDS, left out when every condition was given), NFE). No path of the local machine
    is written. :func:`sample_images` gives the
    same images and headers in memory. The folder is written whole and atomically
    (:func:`radiodiff.io.artifacts.artifact_dir`, kind ``samples``: recognised by its
    ``samples.h5``): it never mixes files of two runs, and a failed run (full disk, kill)
    leaves an earlier folder as it was.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Output folder (created).
    release : ReleaseInfo
        The release the samples came from.
    result : GenerateResult
        From :func:`radiodiff.pipeline.generate.generate`.
    ra, dec : float, optional
        Sky position of the image centres, degrees (ICRS); both or neither. Neither writes
        the placeholder (0, 0) and a header COMMENT saying so.
    overwrite : bool
        Replace an existing samples folder (else :class:`~radiodiff.io.artifacts.OutputError`;
        a non-empty folder that is not a samples folder is always refused).

    Returns
    -------
    dict
        ``{"fits": [path, ...], "samples.h5": path, "preview.png": path}``.
    """
    from radiodiff.io.fits import write_hdu

    out_dir = Path(out_dir)
    hdus, prov, scales = _sample_hdus(release, result, ra, dec)
    nbytes = samples_nbytes(len(result), result.images.shape[-1])
    with artifact_dir(out_dir, "samples", overwrite, nbytes) as tmp:
        fits_files = [write_hdu(tmp / sample_filename(k), hdu) for k, hdu in enumerate(hdus)]
        paths = {"fits": fits_files,
                 "samples.h5": _write_h5(tmp / "samples.h5", release, result, prov, scales),
                 "preview.png": _write_preview(tmp / "preview.png", result)}
    return relocated(paths, tmp, out_dir)


CONDITION_COLUMNS = ("peak_flux", "las_arcsec")


def _version(value) -> int | None:
    """A format_version attribute as an integer (None when absent or not a whole number)."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        return None
    return v if v == value else None


def read_samples(path: str | Path) -> dict[str, np.ndarray]:
    """The one validating reader of ``samples.h5`` (or the folder holding it).

    Returns ``{"images": (N, 1, H, W) float32, "label": (N,) int64}`` and, when the file
    holds them, the (N,) float64 conditions ``peak_flux`` and ``las_arcsec``, after checking the
    format version, the presence, shape and length of both datasets, that every chunk
    decompresses, and that the images are finite.

    Raises
    ------
    FileNotFoundError
        No ``samples.h5`` there.
    ValueError
        Truncated, corrupt or malformed (one line naming the file and the problem).
    """
    import h5py

    path = Path(path)
    path = path / "samples.h5" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no samples.h5 (write one with `radiodiff sample`)")
    redo = "write it again with `radiodiff sample`"
    f = open_h5(path, redo)
    with f:
        version = _version(f.attrs.get("format_version"))
        images, label = f.get("images"), f.get("label")
        if version is None or version > SAMPLES_FORMAT_VERSION or \
                not isinstance(images, h5py.Dataset) or not isinstance(label, h5py.Dataset):
            raise ValueError(f"{path}: not a radiodiff samples file (format_version="
                             f"{f.attrs.get('format_version')!r}, datasets {sorted(f)}); "
                             f"{redo}")
        if images.ndim != 4 or images.shape[1] != 1 or label.shape != images.shape[:1] \
                or images.dtype.kind != "f" or label.dtype.kind not in "iu":
            raise ValueError(f"{path}: malformed samples file: images {images.dtype}"
                             f"{list(images.shape)}, label {label.dtype}{list(label.shape)}, "
                             "expected float (N, 1, H, W) and integer (N,)")
        try:
            out = {"images": images[()].astype(np.float32),
                   "label": label[()].astype(np.int64)}
            for name in CONDITION_COLUMNS:  # the conditions each image was drawn with
                if name in f and f[name].shape == images.shape[:1]:
                    out[name] = f[name][()].astype(np.float64)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{path}: unreadable data, a corrupt chunk "
                             f"({' '.join(str(exc).split())[:120]}); {redo}") from exc
    if not np.isfinite(out["images"]).all():
        raise ValueError(f"{path}: images hold NaN or inf; {redo}")
    return out
