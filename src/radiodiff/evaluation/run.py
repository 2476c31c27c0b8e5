"""``radiodiff evaluate`` as one function: the image sets, their metrics
(:func:`radiodiff.evaluation.metrics.evaluate`) and the report
(:func:`radiodiff.evaluation.report.write_report`), written as one folder.

Above both :mod:`~radiodiff.evaluation.metrics` and :mod:`~radiodiff.evaluation.report`
(the report renders a metrics result), so neither imports the other back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from radiodiff.evaluation.metrics import EvalResult, EvalSettings, check_beam, evaluate
from radiodiff.evaluation.report import write_report
from radiodiff.evaluation.sets import (Compared, Progress, check_splits, reference_meta,
                                      reference_splits)
from radiodiff.io.artifacts import artifact_dir, relocated

__all__ = ["run_evaluation"]


def run_evaluation(reference: str | Path, compared: Compared, out_dir: str | Path,
                   split: str = "test", settings: EvalSettings = EvalSettings(),
                   progress: Optional[Callable[[str], Progress]] = None,
                   overwrite: bool = False) -> tuple[EvalResult, dict[str, Path]]:
    """``radiodiff evaluate``: ``compared`` against the real ``split`` of ``reference``,
    the report written to ``out_dir``.

    ``progress(description)`` gives the progress wrapper of a long step (sampling, the
    source finder). Returns the result and the written paths (:func:`write_report`). The
    report folder is checked before any compute and written whole and atomically
    (:func:`radiodiff.io.artifacts.artifact_dir`, kind ``report``: recognised by its
    ``metrics.json``); an existing report is replaced only with ``overwrite``.
    """
    check_splits(split, compared.real_split)
    bar = progress or (lambda desc: None)
    out = Path(out_dir)
    with artifact_dir(out, "report", overwrite, _REPORT_NBYTES) as tmp:
        real, train, _, ps = reference_splits(reference, split)
        meta = reference_meta(ps)
        check_beam(meta, reference)  # before sampling (evaluate checks it too)
        compared = compared.sized(real)
        fake = compared.image_set(reference, real, tmp, progress=bar("sampled"))
        synthetic = compared.train_like(reference, train, tmp / "tstr",
                                        progress=bar("sampled (TSTR)")) \
            if settings.tstr else None
        result = evaluate(real, fake, train, meta, settings,
                          progress=bar("PyBDSF"), synthetic_train=synthetic)
        paths = write_report(result, real, fake, tmp, ps.classes)
    return result, relocated(paths, tmp, out)


_REPORT_NBYTES = 32 * 2**20  # figures, report.md/html, metrics.json (a release export aside)
