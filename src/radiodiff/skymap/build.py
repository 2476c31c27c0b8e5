"""``radiodiff skymap``: one map, one shard of it, or the merge of its shards.

A run resolves the config into a :class:`Plan` (grid, sources with their PAs, the model
cutouts, noise), renders rows [r0, r1) of the map (shard K of N: horizontal strips; a
single run is shard 0 of 1) and writes either the final folder or ``shards/shard-K-of-N.fits``.
:func:`merge_shards` stacks the strips: the result is bit-identical to a single run,
because every stamp and every noise pixel depends only on (seed, source id / pixel).
:mod:`radiodiff.skymap.distributed` runs the shards on several devices under Lightning.

The final files are written as every output folder is
(:func:`radiodiff.io.artifacts.artifact_dir`, kind ``skymap``, recognised by its
``skymap_config.yaml``): whole and atomically, one writer at a time (checked before any
rendering), listed in ``SHA256SUMS``; an earlier map is replaced only with ``overwrite``
and then only its own files (the shards, an ``evaluation/`` and the user's files stay).
Shards are written file by file, each atomically (several writers at once); a shard run
is checked before any rendering, without the lock (:func:`check_shard_output`): into a
folder that holds a merged map only with ``overwrite``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from radiodiff.io.artifacts import (WRITES, OutputError, artifact_dir, atomic_text,
                                    check_output, relocated, unlock_output)
from radiodiff.skymap import output as io
from radiodiff.skymap.noise import noise_tile
from radiodiff.skymap.render import ModelCutouts, RenderSettings, render_tile
from radiodiff.skymap.sky import Beam, MapGrid, make_grid, tile_rows
from radiodiff.skymap.sources import (Sources, draw_sources, fill_position_angles,
                                      read_catalogue, select_on_map)

__all__ = ["Plan", "plan_skymap", "render_rows", "render_into", "build_skymap",
           "merge_shards", "parse_shard", "map_grid", "check_map_output",
           "check_shard_output"]

log = logging.getLogger(__name__)

CONFIG_FILE = "skymap_config.yaml"  # the composed config; it marks a skymap folder (KINDS)
# The config as the merge needs it (local paths of the catalogue, rms map and model): the
# shards' working file; the map's own CONFIG_FILE names those files as provenance does.
SHARD_CONFIG = "shards/skymap_config.yaml"


@dataclass
class Plan:
    cfg: DictConfig
    grid: MapGrid
    sources: Sources
    cutouts: Optional[ModelCutouts]
    settings: RenderSettings
    rms: float
    provenance: dict


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), 0-based K."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must be K/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def map_grid(cfg: DictConfig) -> MapGrid:
    """The map's grid from the ``survey`` and ``sky`` config."""
    bmaj, bmin = sorted((float(b) for b in cfg.survey.beam_arcsec), reverse=True)
    return make_grid(cfg.sky.ra_deg, cfg.sky.dec_deg, list(cfg.sky.size_deg),
                     cfg.survey.pixel_scale_arcsec, Beam(bmaj, bmin, cfg.survey.beam_pa_deg),
                     cfg.sky.projection)


def _release(cfg: DictConfig):
    if cfg.render.model is None:
        return None, None
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import load_release

    release = load_release(resolve_model(cfg.render.model))
    spec = SamplerSpec.build(release.sampler, sampler=cfg.render.sampler,
                             steps=cfg.render.steps, guidance=cfg.render.guidance)
    given = cfg.render.sampler or cfg.render.steps or cfg.render.guidance is not None
    from radiodiff.progress import announce
    how = "render.* given" if given else "the model's recommended setting"
    announce(f"sampler: {spec.name}, {spec.steps} steps, guidance {spec.guidance:g} ({how})")
    return release, ModelCutouts(release, spec, cfg.render.batch_invariant)


def _sources(cfg: DictConfig, grid: MapGrid, release) -> Sources:
    sc = cfg.sources
    if sc.catalog:
        cat = read_catalogue(sc.catalog, dict(sc.columns), sc.flux_unit, cfg.survey.freq_hz)
    else:
        cat = draw_sources(grid, cfg.seed, sc.density_per_deg2, sc.alpha, sc.s_min_jy,
                           sc.s_max_jy, cfg.survey.freq_hz, sc.spectral_index, release,
                           sc.draw)
    return fill_position_angles(select_on_map(cat, grid, sc.on_bad), cfg.seed)


def plan_skymap(cfg: DictConfig) -> Plan:
    """Everything a shard needs, the same in every shard (sources drawn for the whole map)."""
    settings = RenderSettings(cfg.render.resolved_min_beams, cfg.render.flux_from,
                              cfg.render.batch_size).check()
    grid = map_grid(cfg)
    release, cutouts = _release(cfg)
    if cfg.render.flux_from == "model" and (cutouts is None or cutouts.shape_only
                                            or release.meta.get("image_unit") != "Jy/beam"):
        raise ValueError("render.flux_from=model needs a release conditioned on peak_flux "
                         "whose images are in Jy/beam; use render.flux_from=catalogue")
    rms = _check_noise(cfg, grid)  # before the sources are drawn and generated
    sources = _sources(cfg, grid, release)
    import radiodiff
    from radiodiff.io.provenance import git_commit

    plain = OmegaConf.to_container(cfg, resolve=True)
    if plain["sources"]["catalog"]:  # no local paths: the file name and its hash
        plain["sources"]["catalog"] = Path(cfg.sources.catalog).name
    if plain["noise"]["rms_map"]:
        plain["noise"]["rms_map"] = Path(cfg.noise.rms_map).name
    if plain["render"]["model"]:
        plain["render"]["model"] = release.path.name
    provenance = {
        "config": plain, "seed": int(cfg.seed),
        "catalog_sha256": _sha256(cfg.sources.catalog) if cfg.sources.catalog else None,
        "model": None if release is None else {
            "name": release.path.name, "weights_sha256": release.weights_sha256,
            "network": release.meta.get("model_name"),
            "conditions": ["class"] * bool(release.classes) + release.scalar_conditions,
            "shape_only": cutouts.shape_only,
            "las_rule": cutouts.las_rule},
        "code": {"package_version": radiodiff.__version__, "git_commit": git_commit()},
        "n_sources": len(sources), "skipped": sources.skipped,
        "map_shape": list(grid.shape)}
    return Plan(cfg, grid, sources, cutouts, settings, rms, provenance)


def _check_noise(cfg: DictConfig, grid: MapGrid) -> float:
    """The survey rms (Jy/beam), refused unless positive; an rms map is read and checked to
    cover the map now, not after hours of generating the sources."""
    key = "noise.rms_jyb" if cfg.noise.rms_jyb is not None else "survey.rms_jyb"
    rms = float(OmegaConf.select(cfg, key))
    if not (math.isfinite(rms) and rms > 0):
        raise ValueError(f"{key} must be a positive number (Jy/beam), got {rms}")
    if cfg.noise.enabled and cfg.noise.rms_map:  # in strips: memory as a shard's rendering
        ny = grid.shape[0]
        strips = max(1, math.ceil(ny / 512))
        for k in range(strips):
            _rms_rows(cfg, grid, tile_rows(ny, k, strips))
    return rms


def _rms_rows(cfg: DictConfig, grid: MapGrid, rows: tuple[int, int]) -> Optional[np.ndarray]:
    """The rms map reprojected onto map rows [r0, r1), or None. Its pixels go to Jy/beam
    by its BUNIT as catalogue fields do (:func:`radiodiff.io.fits.jy_per_beam_factor`: a
    map in mJy/beam does not give 1000x the noise); a map without BUNIT is taken to be in
    the default of ``data.assume_bunit``."""
    if not cfg.noise.rms_map:
        return None
    from reproject import reproject_interp

    from radiodiff.config import DataConfig
    from radiodiff.io.fits import InputError, jy_per_beam_factor, read_fits_image

    img = read_fits_image(cfg.noise.rms_map)
    try:
        factor = jy_per_beam_factor(img, DataConfig.assume_bunit)
    except InputError as exc:
        raise ValueError(f"noise.rms_map: {exc}") from None
    out, _ = reproject_interp((img.data * factor, img.wcs), grid.sub_wcs(rows[0], 0),
                              shape_out=(rows[1] - rows[0], grid.shape[1]))
    if not np.all(np.isfinite(out) & (out > 0)):
        raise ValueError(f"{cfg.noise.rms_map}: the rms map must cover the whole sky map "
                         "with positive values")
    return out


def render_rows(plan: Plan, rows: tuple[int, int],
                progress: Optional[Callable] = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(map float32, model float32, truth rows) of map rows [r0, r1)."""
    model, truth = render_tile(plan.grid, plan.sources, rows, plan.cutouts, plan.cfg.seed,
                               plan.settings, progress)
    image = model
    if plan.cfg.noise.enabled:
        image = model + noise_tile(plan.grid, rows, plan.rms, plan.cfg.seed,
                                   _rms_rows(plan.cfg, plan.grid, rows))
    return image.astype(np.float32), model.astype(np.float32), truth


def _config_hash(cfg: DictConfig) -> str:
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()


def _replaces(out: Path, overwrite: bool) -> bool:
    """Whether writing the final files may replace what is at ``out``: with ``overwrite``, or
    when no map is there yet (a folder of shards is the merge's to complete)."""
    return overwrite or not (Path(out) / io.MAP_FILE).exists()


def check_map_output(out: str | Path, overwrite: bool = False, lock: bool = True) -> Path:
    """Before any rendering: refuse ``out`` for a map's final files, or hold its lock
    (:func:`radiodiff.io.artifacts.check_output`; given back by the write, or by
    :func:`~radiodiff.io.artifacts.unlock_output`). Refused: an earlier map there without
    ``overwrite``, a non-empty folder that is not a skymap folder, a file, a folder that
    another run is writing (its pid named; only with ``lock``). ``lock=False``: the
    processes of a ``--devices`` run other than the one that merges."""
    return check_output(out, "skymap", _replaces(Path(out), overwrite), lock=lock)


def check_shard_output(out: str | Path, overwrite: bool = False) -> Path:
    """Before rendering a shard: refuse a file at ``out``, without ``overwrite`` a folder
    that holds a merged map (its merge would be refused), and a folder that is not a sky
    map's (no ``skymap_config.yaml``) holding a file of a name the merge writes (the user's
    ``model.fits``: the merge would replace it). No lock (several shard runs write at once)
    and nothing else is refused: other shards, a half-written config of a shard starting
    beside it, a scheduler's log files are the merge's business."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; refusing to write shards there")
    if not _replaces(out, overwrite):
        raise OutputError(f"{out}: is already a skymap folder; give --overwrite to replace it")
    if out.is_dir() and not (out / CONFIG_FILE).is_file():
        theirs = sorted(p.name for p in out.iterdir() if p.is_file() and any(
            re.fullmatch(rule, p.name) for rule in WRITES["skymap"]))
        if theirs:
            raise OutputError(f"{out}: holds {', '.join(theirs)} but is not a skymap folder; "
                              "refusing to write shards there (the merge would replace "
                              "them): choose another --out")
    return out


def _write_final(plan: Plan, out: Path, image: np.ndarray, model: np.ndarray,
                 table, overwrite: bool = False) -> dict[str, Path]:
    cfg = plan.cfg
    meta = plan.provenance["model"]
    code = plan.provenance["code"]
    cards = {"SEED": (int(cfg.seed), "skymap seed"),
             "MODEL": (meta["name"] if meta else "gaussian", "release of resolved sources"),
             "MODELSHA": meta["weights_sha256"] if meta else None,  # no room for a comment
             "NSRC": (len(table), "sources in truth.fits"),
             "SYNTHETI": (True, "simulated by radiodiff skymap, not observed"),
             "RDVERS": (code["package_version"], "radiodiff version"),
             "GITCOMMT": (code["git_commit"] or None, "code commit")}
    rms = plan.rms if cfg.noise.enabled and not cfg.noise.rms_map else None
    header = io.map_header(plan.grid, cfg.survey, rms, cards)
    plan.provenance["rendered"] = {k: int(np.sum(table["kind"] == k))
                                   for k in ("gaussian", "model", "fallback")}
    provenance = plan.provenance
    title = (f"{cfg.survey.name} {cfg.sky.size_deg[0]}x{cfg.sky.size_deg[1]} deg, "
             f"{len(table)} sources" + (" (model: shape-only, scaled to catalogue flux)"
                                        if meta and meta["shape_only"] else ""))
    marks = table[np.asarray(table["kind"]).astype(str) == "model"]
    label = f"generated by {meta['name']}" if meta else ""
    nbytes = image.nbytes + model.nbytes + 2**20
    with artifact_dir(out, "skymap", _replaces(out, overwrite), nbytes) as tmp:
        paths = {
            "map": io.write_map(tmp / io.MAP_FILE, image, header),
            "model": io.write_map(tmp / io.MODEL_FILE, model, io.model_header(header)),
            "truth": io.write_truth(tmp / io.TRUTH_FILE, table),
            "preview": io.write_preview(tmp / io.PREVIEW_FILE, image, plan.rms, title,
                                        io.preview_marks(marks, plan.grid), label),
            "provenance": io.write_provenance(tmp / io.PROVENANCE_FILE, provenance),
            "config": _write_config(tmp / CONFIG_FILE, provenance["config"])}
    return relocated(paths, tmp, out)


def _write_config(path: Path, cfg: DictConfig | dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_text(path, OmegaConf.to_yaml(OmegaConf.create(cfg) if isinstance(cfg, dict)
                                               else cfg, resolve=True))


def build_skymap(cfg: DictConfig, out: str | Path, shard: Optional[tuple[int, int]] = None,
                 progress: Optional[Callable] = None, overwrite: bool = False) -> dict[str, Any]:
    """Render the map (or shard K of N) into ``out``; returns the paths and the plan.

    ``out`` is checked (:func:`check_map_output`, :func:`check_shard_output` for a shard)
    before the plan loads the model: an earlier map there is replaced only with
    ``overwrite``, and a shard is not rendered into a folder that holds a merged map
    without it (its merge would be refused).
    """
    if shard is not None:
        check_shard_output(out, overwrite)
        plan = plan_skymap(cfg)
        return {"paths": render_into(plan, out, shard, progress), "plan": plan}
    check_map_output(out, overwrite)
    try:
        plan = plan_skymap(cfg)
        return {"paths": render_into(plan, out, None, progress, overwrite), "plan": plan}
    finally:
        unlock_output(out)  # written, or failed before the write


def render_into(plan: Plan, out: str | Path, shard: Optional[tuple[int, int]] = None,
                progress: Optional[Callable] = None, overwrite: bool = False) -> dict[str, Path]:
    """Render ``plan``'s map into the final files of ``out`` (an earlier map there replaced
    only with ``overwrite``), or its shard (K, N) into ``out/shards`` (with the config
    :func:`merge_shards` reads); returns the paths."""
    out, cfg = Path(out), plan.cfg
    k, n = shard or (0, 1)
    rows = tile_rows(plan.grid.shape[0], k, n)
    image, model, truth = render_rows(plan, rows, progress)
    if shard is None:
        return _write_final(plan, out, image, model, io.truth_table(truth), overwrite)
    return {"config": _write_config(out / CONFIG_FILE, plan.provenance["config"]),
            "shard_config": _write_config(out / SHARD_CONFIG, cfg),
            "shard": io.write_shard(io.shard_path(out, k, n), rows, k, n, _config_hash(cfg),
                                    image, model, truth)}


def merge_shards(out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Assemble ``out/shards/shard-*-of-N.fits`` into the final files of ``out``; an earlier
    merged map there is replaced only with ``overwrite`` (the shards are kept)."""
    out = Path(out)
    if _shard_config(out) is None:
        raise FileNotFoundError(f"{out}: no {SHARD_CONFIG}; run `radiodiff skymap --shard K/N "
                                f"--out {out}` first")
    check_map_output(out, overwrite)
    try:
        return _merge(out, overwrite)
    finally:
        unlock_output(out)


def _shard_config(out: Path) -> Optional[Path]:
    """The config the shards were rendered with: ``shards/skymap_config.yaml``, or for
    shards rendered before it existed the folder's ``skymap_config.yaml``; None: neither."""
    for path in (out / SHARD_CONFIG, out / CONFIG_FILE):
        if path.is_file():
            return path
    return None


def _newest_shard_set(folder: Path) -> list[Path]:
    """The shard files of the N of the newest shard (``shard-K-of-N.fits``): a run with
    another N into the same folder (``--devices 2``, then ``--devices 4 --overwrite``)
    leaves the older set, which is named in a warning and left alone."""
    found = [(f, re.fullmatch(r"shard-(\d+)-of-(\d+)\.fits", f.name))
             for f in sorted(folder.glob("shard-*-of-*.fits"))]
    sets: dict[int, list[Path]] = {}
    for f, m in found:
        if m:
            sets.setdefault(int(m.group(2)), []).append(f)
    if not sets:
        raise FileNotFoundError(f"{folder}: no shard files")
    n = max(sets, key=lambda k: max(f.stat().st_mtime_ns for f in sets[k]))
    others = sorted(f.name for k, fs in sets.items() if k != n for f in fs)
    if others:
        log.warning("%s: merging the %d-shard set; older shards of another N left out: %s",
                    folder, n, ", ".join(others))
    return sets[n]


def _merge(out: Path, overwrite: bool) -> dict[str, Any]:
    from astropy.table import vstack

    cfg = OmegaConf.load(_shard_config(out))
    files = _newest_shard_set(out / "shards")
    shards = sorted((io.read_shard(f) for f in files), key=lambda s: s["k"])
    n, digest = shards[0]["n"], _config_hash(cfg)
    ks = [s["k"] for s in shards]
    if ks != list(range(n)) or any(s["n"] != n for s in shards):
        missing = sorted(set(range(n)) - set(ks))
        raise ValueError(f"{out}/shards: need shards 0..{n - 1} of {n}, missing {missing}")
    if any(s["hash"] != digest for s in shards):
        raise ValueError(f"{out}/shards: shards were made with different configs")
    plan = plan_skymap(cfg)
    image = np.concatenate([s["map"] for s in shards])
    model = np.concatenate([s["model"] for s in shards])
    table = vstack([s["truth"] for s in shards])
    table.sort("id")
    table.meta = {"comments": [io.TRUTH_PIXELS]}  # once, as a single run writes it
    return {"paths": _write_final(plan, out, image, model, table, overwrite), "plan": plan}
