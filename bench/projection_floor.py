"""The output projection's quantum floor against lower floors (issue 10, faint view).

    python bench/projection_floor.py valid 0 0.00392156862745098 0.0005

Arguments: split (valid while choosing; test once), seed, then floors (fractions of the peak).
Draws 200 images from the built-in model (DPM-Solver++ 7 + its refiner, the real split's class
mix) without the final projection, applies ``project_like_data(floor, halo 2, peak at 1)`` at
each floor and scores each set with the evaluation suite (as ``bench/bench_quality.py``),
printing one line per floor with the faint-view component count. The floor 1/255 row is the
shipped output.
"""
import sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import _row
from radiodiff.diffusion.sampling import SamplerSpec
from radiodiff.evaluation.metrics import EvalSettings, evaluate, image_statistics
from radiodiff.evaluation.faint import faint_view
from radiodiff.evaluation.sets import (ImageSet, generated_set, proportional_labels,
                                       reference_splits, reference_meta)
from radiodiff.data.preprocess import project_like_data
split = sys.argv[1]; seed = int(sys.argv[2]); floors = [float(f) for f in sys.argv[3:]]
real, train, val, ps = reference_splits('data/first.h5', split)
meta = reference_meta(ps)
labels = proportional_labels(real.labels, 200)
spec = SamplerSpec.build(sampler='dpmpp_2m', steps=7)
with tempfile.TemporaryDirectory() as tmp:
    raw = generated_set('first', labels, Path(tmp), spec, seed, 32, project=False)
for fl in floors:
    f = ImageSet(project_like_data(raw.images, fl, 2, True), raw.labels, f'floor {fl}')
    c = np.asarray(image_statistics(faint_view(f.images), None)['seg_n_components'])
    m = evaluate(real, f, train, val, meta, EvalSettings(seed=seed)).to_dict()
    row = _row(m, 'dpmpp_2m', 7, 1.0, {'refine_nfe': 3}, 200, 0)
    print(f'floor {fl:.4g}', 'faint components', round(c.mean(), 2), {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k in (
        'real_vs_fake', 'real_vs_fake_std', 'real_vs_fake_faint', 'real_vs_fake_faint_std', 'zero_real', 'zero_fake', 'faint_real', 'faint_fake', 'class_fidelity_ratio',
        'class_recall_ratio_min', 'frechet', 'frechet_floor', 'w1_within_3x', 'w1_ratio_max', 'w1_ratio_worst',
        'faint_w1_within_3x', 'faint_w1_ratio_max', 'faint_w1_ratio_worst')}, flush=True)
