"""Image sets for evaluation: the real reference splits, generated sets, samples files.

An :class:`ImageSet` holds images (N, 1, H, W) in model space [0, 1] and their labels.
:func:`reference_splits` reads a prepared file; :func:`generated_set` samples a release or
a training checkpoint (every image its own seed); :class:`Compared` is the choice of
``radiodiff evaluate`` (a model, a samples file or another real split).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from radiodiff.data.prepared import declared_sha256, read_prepared
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.evaluation.comparable import check_comparable, class_map, relabel, samples_meta
from radiodiff.progress import Progress, joined

__all__ = ["ImageSet", "Compared", "DataRecord", "model_data", "samples_data",
           "find_reference", "check_reference_size", "note_unequal_sizes", "reference_set",
           "reference_splits", "reference_meta", "proportional_rows", "proportional_labels",
           "samples_set", "sample_classes", "generated_set", "open_model", "released_set",
           "pixel_scales", "check_splits"]

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Images (N, 1, H, W) in model space [0, 1], class labels (-1 = none), a name."""
    images: np.ndarray
    labels: np.ndarray
    name: str
    conditions: Optional[dict] = None  # requested scalars (generated sets)
    split: Optional[str] = None        # the prepared file's split (reference sets)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 1:
            raise ValueError(f"{self.name}: images must be (N, 1, H, W), got "
                             f"{self.images.shape}")
        if len(self.images) == 0:
            raise ValueError(f"{self.name}: no images")
        if not np.isfinite(self.images).all():
            raise ValueError(f"{self.name}: images contain NaN or inf")


def reference_set(path: str | Path, split: str) -> tuple[ImageSet, Any]:
    """Clean rows of ``split`` of a prepared file, and the file's metadata."""
    ps = read_prepared(path)
    rows = (ps.columns["split"] == split) & (ps.columns["flags"] == 0)
    if not rows.any():
        raise ValueError(f"{path}: no clean rows in split {split!r} "
                         f"(splits: {sorted(set(ps.columns['split']))})")
    conditions = {k: ps.columns[k][rows] for k in ("peak_flux", "las_arcsec")}
    if np.isfinite(conditions["peak_flux"]).all() and "scale" in ps.columns:
        # image * scale + offset is the stored restoration; with per-image scaling and no
        # offset the scale is the cutout's peak (files prepared before peak_flux was defined
        # so held the field-resolution peak in peak_flux)
        if ps.attrs.get("scaling") == "per_image" and not np.any(ps.columns["offset"][rows]):
            conditions["peak_flux"] = ps.columns["scale"][rows]
    return ImageSet(ps.images[rows], ps.columns["label"][rows].astype(np.int64),
                    f"real {split}", conditions, split), ps


def reference_splits(path: str | Path, split: str = "test"
                     ) -> tuple[ImageSet, ImageSet, ImageSet, Any]:
    """``(real, train, val, ps)``: the reference ``split``, the train and valid splits (the
    classifiers' data) and the file's metadata, each split as :func:`reference_set`."""
    real, ps = reference_set(path, split)
    train, _ = reference_set(path, "train")
    val, _ = reference_set(path, "valid")
    return real, train, val, ps


def check_splits(split: str, real_split: Optional[str] = None) -> None:
    """One line for a comparison that cannot say anything: against the training split (the
    model, the class classifier and the memorisation check all saw it) or a split compared
    with itself (``real_split``: the other real split of a real-vs-real floor)."""
    if split == "train":
        raise ValueError("--split train: the model and the class classifier were trained on "
                         "it; compare against valid (choosing settings) or test (once)")
    if real_split == split:
        raise ValueError(f"--real-split {real_split} is the compared split itself (--split "
                         f"{split}): a floor compares two different real splits, e.g. "
                         f"--real-split {'valid' if split == 'test' else 'train'}")


def proportional_rows(labels: np.ndarray, n: int) -> np.ndarray:
    """Rows of ``n`` picks from ``labels`` in their class proportions, in class order.

    Pick ``i`` is row ``(i * N) // n`` (N = ``len(labels)``) of the rows sorted by label
    (stable sort): evenly spaced, so each class gets its share of ``n`` (rounded), and the
    rows' other columns (e.g. the requested peak flux) can be taken along.
    """
    labels = np.asarray(labels)
    return np.argsort(labels, kind="stable")[(np.arange(n) * len(labels)) // n]


def proportional_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """``n`` labels in the class proportions of ``labels``, sorted by class: the labels of
    :func:`proportional_rows`."""
    labels = np.asarray(labels)
    return labels[proportional_rows(labels, n)]


def reference_meta(ps) -> dict[str, Any]:
    """What :func:`evaluate` needs to know of a prepared file (``h5io.PreparedSet``):
    classes, data hash, cutout rule, median pixel scale and beam, image unit, scaling and
    negatives (whether the images go back to Jy/beam)."""
    cutout = {}
    if ps.attrs.get("config_yaml"):
        from omegaconf import OmegaConf
        cutout = OmegaConf.to_container(OmegaConf.create(ps.attrs["config_yaml"])).get(
            "data", {}).get("cutout", {}) or {}
    return {"classes": ps.classes, "data_sha256": ps.attrs.get("data_sha256"),
            "cutout": cutout, **ps.geometry(),
            **{k: ps.attrs.get(k) for k in ("image_unit", "scaling", "negatives")}}


def pixel_scales(s: ImageSet, meta: dict[str, Any]) -> np.ndarray:
    """(N,) pixel scale [arcsec / pixel] of each image of ``s``, from its LAS.

    The cutout rule of the prepared file (``meta["cutout"]``): side = ``max(k_las * LAS,
    min_size_arcsec)`` [arcsec] over the image side, with the LAS of ``s.conditions`` (the
    catalogue's for real rows, the request for generated images). An image without a
    finite LAS gets the file's median pixel scale (``meta["pixel_scale_arcsec"]``, 1 when
    unknown).
    """
    n, size = len(s.images), s.images.shape[-1]
    default = meta.get("pixel_scale_arcsec") or 1.0
    las = np.asarray((s.conditions or {}).get("las_arcsec", np.full(n, np.nan)), float)
    from radiodiff.data.preprocess import cutout_side_arcsec
    cut = meta.get("cutout") or {}
    side = cutout_side_arcsec(las, cut.get("k_las", 1.5), cut.get("min_size_arcsec", 60.0))
    return np.where(np.isfinite(las), side / size, default)


def samples_set(path: str | Path) -> ImageSet:
    """Images written by ``radiodiff sample`` (``samples.h5`` or the folder holding it)."""
    from radiodiff.io.samples import read_samples
    path = Path(path)
    path = path / "samples.h5" if path.is_dir() else path
    s = read_samples(path)  # validates; one line naming the file
    conditions = {k: s[k] for k in ("peak_flux", "las_arcsec") if k in s}
    return ImageSet(s["images"], s["label"], f"generated ({path.parent.name})",
                    conditions or None)


def sample_classes(release, counts: Iterable[tuple[int, int]], seed: int = 0,
                   **generate_kw: Any) -> Iterator[tuple[int, Any]]:
    """Images class by class from a release, every image its own seed.

    For each ``(label, count)`` in ``counts`` (``label`` a class index of ``release.classes``,
    -1: no class condition) draws ``count`` images with
    :func:`radiodiff.pipeline.generate.generate`; the seeds run on across the classes: the
    group's image k has seed ``seed`` + the counts of the groups before it + k. Groups of
    count 0 are skipped. ``generate_kw`` (spec, batch_size, progress, ...) goes to
    ``generate``; ``progress`` counts the images of all groups as one
    (:func:`radiodiff.progress.joined`).

    Yields
    ------
    (int, GenerateResult)
        The label and its images, as each group is done.
    """
    from radiodiff.pipeline.generate import generate

    counts = list(counts)
    if generate_kw.get("progress") is not None:
        generate_kw["progress"] = joined(generate_kw["progress"], sum(c for _, c in counts))
    offset = seed
    for label, count in counts:
        if count == 0:
            continue
        yield label, generate(release, count,
                              label=release.classes[label] if label >= 0 else None,
                              seed=offset, **generate_kw)
        offset += count


def generated_set(model: str | Path, labels: np.ndarray, out_dir: Path,
                  spec: Optional[SamplerSpec] = None, seed: int = 0, batch_size: int = 32,
                  progress: Progress = None, conditions: dict | None = None,
                  **generate_kw: Any) -> ImageSet:
    """Sample one image per requested label from a release folder or a training checkpoint.

    Class labels follow the reference set's labels (same class proportions); a model
    without class conditioning samples unconditionally. A model conditioned on peak flux
    or LAS gets, image by image, the values in ``conditions`` (the reference rows'), so
    the requested and measured values can be compared. ``generate_kw`` (e.g. ``project``)
    goes to :func:`radiodiff.pipeline.generate.generate`.
    """
    release, kind = open_model(model, out_dir)
    return released_set(release, kind, labels, spec, seed, batch_size, progress, conditions,
                        **generate_kw)


def open_model(model: str | Path, out_dir: Path) -> tuple[Any, str]:
    """(the loaded release, how a set drawn from it is named): a release folder, shipped
    name or training checkpoint (its EMA weights exported to ``out_dir/release`` first)."""
    from radiodiff.io.release_files import resolve_model
    from radiodiff.pipeline.release import load_release
    from radiodiff.pipeline.checkpoint import export_checkpoint

    source = resolve_model(model)
    path = export_checkpoint(source, out_dir / "release") if source.is_file() else source
    kind = (f"checkpoint {source.parent.name}/{source.name}" if source.is_file()
            else f"release {source.name}")
    return load_release(path), kind


def released_set(release, kind: str, labels: np.ndarray, spec: Optional[SamplerSpec] = None,
                 seed: int = 0, batch_size: int = 32, progress: Progress = None,
                 conditions: dict | None = None, **generate_kw: Any) -> ImageSet:
    """:func:`generated_set` of a loaded release (``kind`` names it). Labels -1 (no class)
    are sampled unconditionally, after the classes. ``spec`` None: the release's
    recommended sampler."""
    spec = spec or release.sampler
    name = f"generated ({kind}, {spec.name} {spec.steps})"
    kw = dict(spec=spec, batch_size=batch_size, progress=progress, **generate_kw)
    scalars = [k for k in release.scalar_conditions if conditions and k in conditions]
    if scalars:
        return _generated_per_row(release, name, labels, conditions, scalars, seed, kw)
    images, out_labels = [], []
    groups = ([(int(c), int((labels == c).sum())) for c in np.unique(labels) if c >= 0]
              + ([(-1, int((labels < 0).sum()))] if (labels < 0).any() else [])
              if release.classes else [(-1, len(labels))])
    for label, res in sample_classes(release, groups, seed, **kw):
        images.append(res.images)
        out_labels.append(np.full(len(res.images), label))
    return ImageSet(np.concatenate(images), np.concatenate(out_labels), name)


def _generated_per_row(release, name: str, labels, conditions, scalars, seed: int,
                       generate_kw: dict) -> ImageSet:
    """One image per row, each with its row's requested scalar conditions."""
    from radiodiff.pipeline.generate import generate
    rows = range(len(labels))
    progress = generate_kw.pop("progress", None)
    images, requested = [], {k: np.asarray(conditions[k], float) for k in scalars}
    for i in (progress(rows, len(rows)) if progress else rows):
        kw = {k: float(requested[k][i]) for k in scalars if np.isfinite(requested[k][i])}
        label = int(labels[i])
        res = generate(release, 1, label=release.classes[label] if release.classes and
                       label >= 0 else None, seed=seed + i, **kw, **generate_kw)
        images.append(res.images)
    return ImageSet(np.concatenate(images), np.asarray(labels, np.int64), name, requested)


@dataclass(frozen=True)
class DataRecord:
    """What a model (or a samples file) records of the data it was trained on."""
    where: str                    # e.g. "release first", "checkpoint <run>/last.ckpt"
    name: Optional[str]           # data.name: the prepared file is data/<name>.h5
    data_sha256: Optional[str]    # the prepared file's content hash
    image_size: Optional[int]     # pixels per side
    paths: tuple[str, ...] = ()   # the run's data.out (tried before data/<name>.h5)


def model_data(model: str | Path | None) -> DataRecord:
    """The data record of a release folder, shipped model name or training checkpoint."""
    from omegaconf import OmegaConf

    from radiodiff.io.release_files import DEFAULT_MODEL, LOCAL_PATH, resolve_model
    from radiodiff.pipeline.release import load_release
    source = resolve_model(model or DEFAULT_MODEL)
    if source.is_file():  # a training checkpoint
        from radiodiff.pipeline.checkpoint import read_checkpoint
        hp = read_checkpoint(source, usage="evaluate it instead: --model {}")["hyper_parameters"]
        data, ds = hp["cfg"]["data"], hp.get("dataset") or {}
        where, sha, size = f"checkpoint {source}", ds.get("data_sha256"), data.get("image_size")
    else:
        release = load_release(source)
        data = OmegaConf.to_container(release.config).get("data") or {}
        where, sha, size = f"release {source}", release.meta.get("data_sha256"), \
            release.image_size
    out = data.get("out")
    return DataRecord(where, data.get("name"), sha, None if size is None else int(size),
                      (out,) if out and out != LOCAL_PATH else ())


def samples_data(path: str | Path) -> DataRecord:
    """The data record of a ``samples.h5`` (or its folder): the hash of the model's data."""
    from radiodiff.io.integrity import open_h5
    path = Path(path)
    path = path / "samples.h5" if path.is_dir() else path
    size = samples_set(path).images.shape[-1]  # validates the file, one line if it is bad
    with open_h5(path, "write it again with `radiodiff sample`") as f:
        sha = f.attrs.get("data_sha256") or None
    return DataRecord(f"the model of {path}", None, sha, int(size))


def _file_sha(path: Path) -> Optional[str]:
    """The ``data_sha256`` a prepared file declares; None when it is none or unreadable."""
    try:
        return declared_sha256(path) or None
    except (OSError, ValueError):
        return None


def find_reference(record: DataRecord, data_dir: str | Path = "data") -> tuple[Path, str]:
    """The prepared file ``record``'s model was trained on, and a line saying so.

    Tried in order: the run's ``data.out``, ``<data_dir>/<name>.h5``, then every other
    ``<data_dir>/*.h5``; the first whose ``data_sha256`` is the record's is the one (a
    record without a hash takes the first of the named files that exists).

    Raises
    ------
    FileNotFoundError
        One line: what the model was trained on, what was found instead, and the two ways
        out (prepare it, or ``--reference``).
    """
    data_dir = Path(data_dir)
    named = [Path(p) for p in record.paths] + (
        [data_dir / f"{record.name}.h5"] if record.name else [])
    sha, tried, found = record.data_sha256, set(), []
    for path in named + sorted(data_dir.glob("*.h5")):
        if path.resolve() in tried or not path.is_file():
            continue
        tried.add(path.resolve())
        held = _file_sha(path)
        if sha is None and path in named:
            return path, f"{path} ({record.where} records no data hash: not checked)"
        if sha is not None and held == sha:
            return path, f"{path} (the data of {record.where}: data_sha256 {sha[:12]}… matches)"
        if path in named:
            found.append(f"{path} holds other data (data_sha256 {(held or 'none')[:12]}…)")
    what = f"data={record.name}" if record.name else "its data"
    missing = f"{named[-1]} is missing" if named else f"no file in {data_dir}/ holds it"
    prepare = f"prepare it (radiodiff prepare data={record.name}) or " if record.name else ""
    raise FileNotFoundError(
        f"{record.where} was trained on {what} (data_sha256 {(sha or 'unknown')[:12]}…): "
        f"{'; '.join(found) or missing}; {prepare}give --reference <prepared .h5>")


def check_reference_size(reference: str | Path, real: ImageSet, side: Optional[int],
                         what: str) -> None:
    """Refuse, before any sampling, a reference whose images are not ``side`` pixels
    (None: unknown, not checked)."""
    h, w = real.images.shape[-2:]
    if side is not None and (h, w) != (side, side):
        raise ValueError(f"--reference {reference}: its images are {h}x{w} pixels but "
                         f"{what} makes {side}x{side}; give --reference the prepared file it "
                         "was trained on (or leave --reference out to use that one)")


def note_unequal_sizes(n: int, real: ImageSet) -> Optional[str]:
    """One warning line, before sampling, when ``n`` images are to be drawn against a real
    split of fewer, ``N``.

    No metric changes: those at equal sample size use what the real split gives
    (real-vs-fake ``min(n, N)`` picks of each set; the ratios to a real-vs-real floor
    subsets of ``min(n, N // 2)``), the others all ``n`` images. Returns the line (also
    logged), or None when ``n <= N``.
    """
    total = len(real.images)
    if n <= total:
        return None
    line = (f"--n {n} is more than the {total} images of the {real.name} split: real-vs-fake "
            f"compares {total} of each set, the ratios to a real-vs-real floor (distances, "
            f"Fréchet, morphology) subsets of at most {total // 2}; only the other metrics "
            f"use all {n}")
    log.warning(line)
    return line


@dataclass(frozen=True)
class Compared:
    """What ``radiodiff evaluate`` compares with the real split: a model to sample
    (release folder, shipped name or ``.ckpt``; default the built-in model), a
    ``samples.h5`` or another real split. ``n`` images (None: as many as the real split,
    the equal sample size of the real-vs-real floors) are sampled in the class proportions
    of the real split, image k with seed ``seed + k``. A model or samples of
    other classes, image unit, pixel scale or beam than the reference are refused
    (:mod:`radiodiff.evaluation.comparable`) unless ``allow_mismatch``."""
    model: Optional[str | Path] = None
    samples: Optional[str | Path] = None
    real_split: Optional[str] = None
    n: Optional[int] = None  # None: the real split's size
    spec: Optional[SamplerSpec] = None  # None: the release's recommended sampler
    seed: int = 0
    batch_size: int = 32
    allow_mismatch: bool = False  # compare other classes / unit / geometry (by class name)

    def data_record(self) -> DataRecord:
        """What the compared images record of their training data (real-vs-real: the
        built-in model's, whose data the default reference is)."""
        return samples_data(self.samples) if self.samples else model_data(self.model)

    def sized(self, real: ImageSet) -> "Compared":
        """This comparison with ``n`` fixed: the size of the ``real`` split when None."""
        return self if self.n is not None else replace(self, n=len(real.images))

    def image_set(self, reference: str | Path, real: ImageSet, out_dir: Path,
                  progress: Progress = None) -> ImageSet:
        """The compared set (``out_dir`` receives the export of a checkpoint); a model or
        samples of another image size than ``reference`` is refused before sampling."""
        if self.real_split:
            return reference_set(reference, self.real_split)[0]
        if self.samples:
            fake = samples_set(self.samples)
            check_reference_size(reference, real, fake.images.shape[-1], fake.name)
            meta = samples_meta(self.samples)
            classes = self._classes_to_map(reference, meta, "samples", self.samples)
            return fake if classes is None else replace(
                fake, labels=relabel(fake.labels, class_map(meta["classes"], classes)))
        n = self.sized(real).n
        if n < 1:
            raise ValueError(f"--n must be >= 1, got {n}")
        note_unequal_sizes(n, real)
        rows = proportional_rows(real.labels, n)  # class proportions of the real split
        return self._drawn(reference, real, rows, self.seed, out_dir, progress)

    def train_like(self, reference: str | Path, train: ImageSet, out_dir: Path,
                   progress: Progress = None) -> Optional[ImageSet]:
        """One image per training row with its class and conditions, seeds after those of
        :meth:`image_set`: the synthetic training set of train-synthetic-test-real
        (:mod:`radiodiff.evaluation.usefulness`); None unless a model is compared. ``n``
        must be fixed (:meth:`sized`): these seeds follow the ``n`` of the compared set."""
        if self.real_split or self.samples:
            return None
        if self.n is None:
            raise ValueError("Compared.train_like needs n: call sized(real) first")
        rows = np.arange(len(train.labels))
        return self._drawn(reference, train, rows, self.seed + self.n, out_dir, progress)

    def _drawn(self, reference: str | Path, source: ImageSet, rows: np.ndarray, seed: int,
               out_dir: Path, progress: Progress) -> ImageSet:
        """The model's images for ``rows`` of ``source``: their labels and conditions."""
        from radiodiff.io.release_files import DEFAULT_MODEL
        record = model_data(self.model)
        check_reference_size(reference, source, record.image_size, record.where)
        conditions = {k: v[rows] for k, v in (source.conditions or {}).items()}
        release, kind = open_model(self.model or DEFAULT_MODEL, out_dir)
        classes = self._classes_to_map(reference, release.meta, "model", release.path)
        labels = source.labels[rows]
        if classes is not None:  # ask the model for the reference's classes by name
            labels = relabel(labels, class_map(classes, release.classes))
        fake = released_set(release, kind, labels, self.spec, seed, self.batch_size,
                            progress, conditions)
        return fake if classes is None else replace(
            fake, labels=relabel(fake.labels, class_map(release.classes, classes)))

    def _classes_to_map(self, reference: str | Path, meta: dict, kind: str,
                        where: Any) -> Optional[list[str]]:
        """:func:`~radiodiff.evaluation.comparable.check_comparable` of the compared set's
        ``meta`` with ``reference``: one line refusing sets that differ (unless
        ``allow_mismatch``); the reference's classes when labels are to be mapped by
        name, else None."""
        ref = reference_meta(read_prepared(reference, images=False))
        if check_comparable(ref, meta, str(reference), kind, where, self.allow_mismatch):
            return list(ref["classes"])
        return None
