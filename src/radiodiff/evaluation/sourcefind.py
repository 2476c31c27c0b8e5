"""Source-finder statistics of radio images with PyBDSF (Mohan & Rafferty 2015, ASCL 1502.007).

Each image is written to a temporary FITS file, PyBDSF fits Gaussians to its islands of
emission and groups them into sources, and the catalogue is reduced to a few per-image
numbers (source count, total flux density, the area holding half the model flux) that can
be compared between generated and real images, e.g. with
:func:`~radiodiff.evaluation.histogram_distance`.

Conventions
-----------
* Images are 2-D (H, W), or (1, H, W), brightness per beam: Jy/beam for survey images, or
  model units when the caller passes a fixed ``rms`` in the same units. Fluxes are then in
  Jy (or model units x beam).
* Pixel positions are 0-based; ``x`` is the column index and ``y`` the row index, so a
  source at (x, y) sits on ``image[round(y), round(x)]`` (PyBDSF's own convention).
* Generated and model-space images have no noise model, so callers normally pass ``rms``:
  PyBDSF then uses that constant noise and a zero mean instead of estimating maps.
* PyBDSF is imported lazily, so this module imports without it; the functions raise
  :class:`ImportError` with an install hint when it is missing.
* Each run's FITS file and PyBDSF log live in a work folder named by the package's rule for
  temporaries (``.rdtmp-<pid>@<host>-bdsf-<random>``,
  :func:`radiodiff.io.artifacts.temp_name`) in ``workdir`` or in ``radiodiff-bdsf-<user>``
  of the system temporary folder. One left
  by a killed process (``kill -9`` of a run or of its workers) is removed by the next run
  (:func:`radiodiff.io.artifacts.clear_stale_temps`); those of live processes and of other
  hosts are kept.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from radiodiff.io.artifacts import clear_stale_temps, temp_name
from radiodiff.io.fits import write_fits_image

__all__ = ["SOURCE_KEYS", "find_sources", "find_sources_batch", "source_stats"]

#: Keys of :func:`source_stats`, in order.
SOURCE_KEYS: tuple[str, ...] = ("n_sources", "n_gaussians", "total_flux", "area50")

# Sub-pixels per pixel side when rendering the Gaussian model for ``area50``: a 3-pixel
# beam sampled at whole pixels puts ~7 pixels inside half power, too coarse for a size.
_OVERSAMPLE = 4
# Environment for worker processes: one thread each, so N workers use N cores.
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OMP_WAIT_POLICY": "PASSIVE"}
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _import_bdsf():
    # Importing bdsf calls numpy.seterr(divide="raise") for the whole process: undo it.
    saved = np.geterr()
    try:
        import bdsf
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("find_sources needs PyBDSF: pip install 'bdsf>=1.14'") from exc
    finally:
        np.seterr(**saved)
    return bdsf


def _beam(beam_arcsec: float | Sequence[float]) -> tuple[float, float]:
    """(bmaj, bmin) in arcsec from one number (circular beam) or a pair."""
    values = np.atleast_1d(np.asarray(beam_arcsec, dtype=np.float64))
    if values.shape == (1,):
        values = np.repeat(values, 2)
    if values.shape != (2,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"beam_arcsec must be a positive FWHM or a (bmaj, bmin) pair in "
                         f"arcsec, got {beam_arcsec!r}")
    return float(values[0]), float(values[1])


def _image2d(image: Any) -> np.ndarray:
    data = np.asarray(image, dtype=np.float32)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W) or (1, H, W), got shape {np.shape(image)}")
    return data


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _centroid(gaussians: Sequence[Any]) -> tuple[float, float]:
    """Flux-weighted mean of Gaussian centres [pixels]: the centroid of their model."""
    flux = np.array([g.total_flux for g in gaussians], dtype=np.float64)
    xy = np.array([g.centre_pix[:2] for g in gaussians], dtype=np.float64)
    weight = flux if flux.sum() > 0 else np.ones_like(flux)
    x, y = (weight[:, None] * xy).sum(axis=0) / weight.sum()
    return float(x), float(y)


def _empty_result() -> dict[str, Any]:
    return {"n_sources": 0, "n_gaussians": 0, "total_flux": 0.0, "source_fluxes": [],
            "positions": [], "area50": 0.0, "area50_arcsec2": 0.0}


def _render_gaussians(params: Sequence[tuple[float, ...]], shape: tuple[int, int],
                      oversample: int = _OVERSAMPLE) -> np.ndarray:
    """Sum of elliptical Gaussians on a grid ``oversample`` times finer than ``shape``.

    ``params`` holds PyBDSF's (peak, x, y, fwhm_major, fwhm_minor, pa) per Gaussian: pixel
    units, position angle in degrees counter-clockwise from +y (towards -x). Returns the
    (H * oversample, W * oversample) brightness at sub-pixel centres.
    """
    ny, nx = shape
    sub = (np.arange(nx * oversample) + 0.5) / oversample - 0.5
    x = sub[None, :]
    y = ((np.arange(ny * oversample) + 0.5) / oversample - 0.5)[:, None]
    model = np.zeros((ny * oversample, nx * oversample))
    for peak, cx, cy, fwhm_maj, fwhm_min, pa in params:
        theta = math.radians(pa + 90.0)  # major-axis angle from +x, as bdsf.functions does
        u = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
        v = -(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)
        s_maj = max(fwhm_maj, 1e-6) / _FWHM_PER_SIGMA
        s_min = max(fwhm_min, 1e-6) / _FWHM_PER_SIGMA
        model += peak * np.exp(-0.5 * ((u / s_maj) ** 2 + (v / s_min) ** 2))
    return model


def _area50(model: np.ndarray, oversample: int = _OVERSAMPLE) -> float:
    """Area [pixels] of the brightest sub-pixels of ``model`` that hold half its flux.

    The last sub-pixel counts fractionally, so the area varies smoothly with source size.
    """
    values = np.sort(model[model > 0], axis=None)[::-1]
    total = values.sum()
    if values.size == 0 or not total > 0:
        return 0.0
    cum = np.cumsum(values)
    k = int(np.searchsorted(cum, 0.5 * total))  # first index reaching half the flux
    before = cum[k - 1] if k > 0 else 0.0
    n = k + (0.5 * total - before) / values[k]
    return float(n / oversample**2)


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Capture PyBDSF's console output and keep its log records away from the root logger.

    PyBDSF attaches a log-file handler and two console handlers to the ``PyBDSF`` logger on
    every run; they are closed here so no file handle outlives the temporary folder.
    """
    buffer = io.StringIO()
    logger = logging.getLogger("PyBDSF")
    propagate = logger.propagate
    logger.propagate = False
    # PyBDSF runs gc.collect() after each of its ~17 steps, ~0.1 s each over all the objects
    # of a process that has imported astropy (more with torch): freezing the objects that
    # exist now limits those collections to PyBDSF's own. Left alone if the caller froze.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        # errstate also undoes the numpy.seterr calls PyBDSF makes while it runs.
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), \
                warnings.catch_warnings(), np.errstate(all="ignore"):
            # PyBDSF opens the FITS file without closing it; collected below.
            warnings.simplefilter("ignore", ResourceWarning)
            # Its log calls still use the deprecated Logger.warn.
            warnings.filterwarnings("ignore", message="The 'warn' method is deprecated",
                                    category=DeprecationWarning)
            try:
                yield
            finally:
                gc.collect()
    finally:
        if freeze:
            gc.unfreeze()
        logger.propagate = propagate
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def _work_root(workdir: str | Path | None) -> Path:
    """Where PyBDSF's work folders are made: ``workdir``, else ``radiodiff-bdsf-<user>`` in
    the system temporary folder (one per user, private: a shared one would be another
    user's to clean); made when missing."""
    if workdir is not None:
        root = Path(workdir)
        root.mkdir(parents=True, exist_ok=True)
        return root
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    root = Path(tempfile.gettempdir()) / f"radiodiff-bdsf-{user}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


@contextlib.contextmanager
def _work_folder(workdir: str | Path | None) -> Iterator[str]:
    """A fresh folder for one PyBDSF run, removed afterwards. Named by the one rule for
    temporaries (``.rdtmp-<pid>@<host>-bdsf-<random>``, owned by this process, which may be
    a worker), so that the work folders of killed processes in the same place, removed
    first, are recognised by the one clean-up."""
    root = _work_root(workdir)
    clear_stale_temps(root)
    path = Path(tempfile.mkdtemp(prefix=f"{temp_name(root / 'bdsf').name}-", dir=root))
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def find_sources(image: np.ndarray, pixel_scale_arcsec: float,
                 beam_arcsec: float | Sequence[float], frequency_hz: float = 1.4e9,
                 rms: float | None = None, thresh_isl: float = 3.0, thresh_pix: float = 5.0,
                 workdir: str | Path | None = None,
                 beam_pa_deg: float = 0.0) -> dict[str, Any]:
    """Find and fit the sources of one image with PyBDSF.

    Parameters
    ----------
    image : numpy.ndarray
        Shape (H, W) or (1, H, W); brightness per beam [Jy/beam, or model units with
        ``rms`` in the same units]. NaN pixels are treated as blanked.
    pixel_scale_arcsec : float
        Side of one pixel [arcsec], e.g. 1.8 for FIRST.
    beam_arcsec : float or (float, float)
        Restoring-beam FWHM [arcsec]: one number for a circular beam, or (bmaj, bmin)
        at position angle ``beam_pa_deg``; e.g. 5.4 for FIRST.
    frequency_hz : float
        Observing frequency [Hz]; PyBDSF requires one. Default 1.4e9.
    rms : float, optional
        Constant noise [image units]; the mean is then taken as zero. When None, PyBDSF
        estimates rms and mean from the image (meaningless for noise-free images).
    thresh_isl, thresh_pix : float
        Island boundary and island peak thresholds [multiples of rms]. Defaults 3 and 5
        (PyBDSF's own).
    workdir : str or pathlib.Path, optional
        Folder in which the work folder for the FITS file and PyBDSF's log is made
        (default: ``radiodiff-bdsf-<user>`` in the system temporary folder); it is always
        removed afterwards, and those of dead processes there first.
    beam_pa_deg : float
        Position angle of the beam's major axis [deg, east of north, as FITS BPA].

    Returns
    -------
    dict
        ``n_sources`` (int), ``n_gaussians`` (int), ``total_flux`` (float, sum of Gaussian
        total flux densities [Jy]), ``source_fluxes`` (list of float [Jy], per source),
        ``positions`` (list of (x, y) [0-based pixels] per source: flux-weighted mean of its
        Gaussian centres, i.e. the centroid of its Gaussian model), ``area50`` (float
        [pixels]: smallest area of the Gaussian model image, within the image footprint,
        holding half its flux; for one unresolved source this is the beam's half-power
        area, pi * bmaj * bmin / 4) and ``area50_arcsec2`` (the same in arcsec^2). An image
        without sources gives zeros and empty lists.
    """
    bdsf = _import_bdsf()
    data = _image2d(image)
    scale = _positive("pixel_scale_arcsec", pixel_scale_arcsec)
    bmaj, bmin = _beam(beam_arcsec)
    pa = float(beam_pa_deg)
    if not math.isfinite(pa):
        raise ValueError(f"beam_pa_deg must be finite, got {beam_pa_deg!r}")
    frequency_hz = _positive("frequency_hz", frequency_hz)
    thresh_isl = _positive("thresh_isl", thresh_isl)
    thresh_pix = _positive("thresh_pix", thresh_pix)
    options: dict[str, Any] = {"quiet": True, "frequency": frequency_hz,
                               "beam": (bmaj / 3600.0, bmin / 3600.0, pa),
                               "thresh_isl": thresh_isl, "thresh_pix": thresh_pix,
                               "thresh": "hard",  # always apply thresh_pix, no FDR
                               "ncores": 1}  # no process pool inside a worker
    if rms is not None:
        rms = _positive("rms", rms)
        options.update(rms_map=False, rms_value=rms, mean_map="zero")
        # With a hard threshold and zero mean an island needs a pixel above thresh_pix * rms:
        # skip PyBDSF when there is none.
        if not np.nanmax(data, initial=-np.inf) > thresh_pix * rms:
            return _empty_result()
        # PyBDSF still sigma-clips the image and stops on a zero clipped rms, as model-space
        # images with a background of exact zeros give. A fixed dither of 1e-3 rms keeps
        # the statistics defined and changes fluxes by ~1e-3 rms per pixel.
        dither = np.random.default_rng(0).standard_normal(data.shape).astype(np.float32)
        data = data + np.float32(1e-3 * rms) * dither
    elif not np.any(np.isfinite(data)):
        return _empty_result()

    error = None
    with _work_folder(workdir) as tmp:
        path = write_fits_image(Path(tmp) / "image.fits", data, scale, (bmaj, bmin),
                                bunit="Jy/beam", beam_pa_deg=pa)
        with _silenced():
            try:
                img = bdsf.process_image(str(path), outdir=tmp, **options)
            except RuntimeError as exc:
                # Raised below, without the traceback that keeps PyBDSF's open file alive.
                error = f"PyBDSF failed: {exc}"
                if rms is None:
                    error += " (for images without noise, pass rms)"
            else:
                # No islands is not an error for PyBDSF: the lists are then empty or absent.
                gaussians = list(getattr(img, "gaussians", None) or [])
                sources = list(getattr(img, "sources", None) or [])
                params = [(float(g.peak_flux), float(g.centre_pix[0]), float(g.centre_pix[1]),
                           float(g.size_pix[0]), float(g.size_pix[1]), float(g.size_pix[2]))
                          for g in gaussians]
                source_fluxes = [float(s.total_flux) for s in sources]
                positions = [_centroid(s.gaussians) for s in sources]
                total_flux = float(sum(g.total_flux for g in gaussians))
                del img, gaussians, sources
    if error is not None:
        raise RuntimeError(error)

    if not params:
        return _empty_result()
    area = _area50(_render_gaussians(params, data.shape))
    return {"n_sources": len(source_fluxes), "n_gaussians": len(params),
            "total_flux": total_flux, "source_fluxes": source_fluxes, "positions": positions,
            "area50": area, "area50_arcsec2": area * scale**2}


def _find_sources_star(args: tuple[np.ndarray, dict[str, Any], bool]) -> dict[str, Any] | str:
    image, kwargs, skip = args
    try:
        return find_sources(image, **kwargs)
    except RuntimeError as exc:
        if skip and str(exc).startswith("PyBDSF failed"):
            return str(exc)  # counted by the caller
        raise


def _init_worker() -> None:
    # Inherited through the environment at spawn already; repeated for any child processes.
    os.environ.update(_THREAD_ENV)


@contextlib.contextmanager
def _thread_env() -> Iterator[None]:
    """Set one-thread variables while workers start (spawned children copy os.environ)."""
    saved = {key: os.environ.get(key) for key in _THREAD_ENV}
    os.environ.update(_THREAD_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def find_sources_batch(images: Iterable[np.ndarray] | np.ndarray,
                       pixel_scale_arcsec: float | Sequence[float],
                       beam_arcsec: float | Sequence[float],
                       rms: float | Sequence[float] | None = None, processes: int | None = None,
                       progress: Callable[[Iterable, int], Iterable] | None = None, *,
                       frequency_hz: float = 1.4e9, thresh_isl: float = 3.0,
                       thresh_pix: float = 5.0, skip_failures: bool = False
                       ) -> list[dict[str, Any] | str]:
    """:func:`find_sources` on many images, in parallel worker processes.

    Parameters
    ----------
    images : array_like or iterable of arrays
        (N, H, W), (N, 1, H, W) or a sequence of (H, W) images [Jy/beam or model units].
    pixel_scale_arcsec : float or sequence of float
        As in :func:`find_sources`, one for all images or one per image.
    beam_arcsec, frequency_hz, thresh_isl, thresh_pix
        As in :func:`find_sources`, the same for every image.
    rms : float or sequence of float, optional
        Constant noise [image units], one for all images or one per image.
    processes : int, optional
        Worker processes (``spawn`` context, one thread each). Default
        ``max(1, os.cpu_count() - 1)``; 1 runs in this process.
    progress : callable, optional
        ``progress(iterable, total)`` wrapping the stream of results, e.g.
        ``lambda it, total: tqdm(it, total=total)`` at the command-line edge.
    skip_failures : bool
        An image PyBDSF refuses (e.g. "a region with an unphysical rms value") gives its
        error message (str) in place of a result, instead of stopping the batch.

    Returns
    -------
    list of dict (or str with ``skip_failures``)
        One :func:`find_sources` result per image, in input order.
    """
    _import_bdsf()  # fail here, not once per worker
    images = [_image2d(image) for image in images]
    n = len(images)
    if rms is None or np.ndim(rms) == 0:
        rms_list = [rms] * n
    else:
        rms_list = list(rms)
        if len(rms_list) != n:
            raise ValueError(f"rms has {len(rms_list)} values for {n} images")
    if processes is None:
        processes = max(1, (os.cpu_count() or 1) - 1)
    if int(processes) < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    processes = min(int(processes), max(n, 1))
    scales = ([pixel_scale_arcsec] * n if np.ndim(pixel_scale_arcsec) == 0
              else [float(v) for v in pixel_scale_arcsec])
    if len(scales) != n:
        raise ValueError(f"pixel_scale_arcsec has {len(scales)} values for {n} images")
    common = {"beam_arcsec": beam_arcsec, "frequency_hz": frequency_hz,
              "thresh_isl": thresh_isl, "thresh_pix": thresh_pix}
    tasks = [(image, {**common, "rms": r, "pixel_scale_arcsec": p}, bool(skip_failures))
             for image, r, p in zip(images, rms_list, scales)]
    wrap = progress or (lambda iterable, total: iterable)
    if processes == 1:
        return list(wrap(map(_find_sources_star, tasks), n))
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with _thread_env():
        pool = context.Pool(processes, initializer=_init_worker)
    with pool:
        return list(wrap(pool.imap(_find_sources_star, tasks, chunksize=1), n))


def source_stats(results: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-image arrays of the scalar results, for distribution distances.

    Returns ``{key: (N,) array}`` for the keys in :data:`SOURCE_KEYS`: ``n_sources`` and
    ``n_gaussians`` (int64), ``total_flux`` [Jy] and ``area50`` [pixels] (float64).
    """
    return {key: np.array([r[key] for r in results],
                          dtype=np.int64 if key.startswith("n_") else np.float64)
            for key in SOURCE_KEYS}
