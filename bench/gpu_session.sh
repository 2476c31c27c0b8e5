#!/usr/bin/env bash
# One lent-GPU session: GPU speed of the presets, then a time-boxed piece of a training run,
# resumed from a checkpoint made elsewhere or warm-started from a committed release.
#
#   bash bench/gpu_session.sh DEADLINE_S BATCH [train.py overrides...]
#
# The run: BASE (its base overrides, default "model=unet_small data=first") and RUN (its
# name = checkpoint folder, default first-unet_small-s0). The issue-28 campaign, e.g.:
#   BASE="+experiment=mirabest model=unet_deep" RUN=mb-deep-gpu \
#   EXPORT_ARGS="--data data/mirabest.h5 --projection-floor data --projection-halo 0" \
#   bash bench/gpu_session.sh 540 128 trainer.precision=bf16-mixed \
#        train.init_from=models/mirabest train.total_kimg=300 \
#        train.lr_decay_start_kimg=200 train.lr_decay_kimg=100
# (a warm start counts its own images: its cool-down must end within the time box)
# Runs on a machine with CUDA PyTorch and Lightning but no Hydra: the wheels in .whl/
# (hydra-core, omegaconf, antlr4-python3-runtime) are installed to /tmp/site first. Inputs
# travel with the working tree: the prepared data/<name>.h5 (carried) and, for an exact
# resume, .devcarry/last.ckpt. Results go to $OUT: gpu.txt, bench_gpu.txt, train.log,
# metrics_*.csv, the main EMA exported as a release in release.tar (safetensors, hashed: the
# resume state of a warm start, `train.init_from=<that folder>`), and the new last.ckpt in
# parts of at most 15 MiB when it is under 45 MiB (rejoin with `cat last.ckpt.part-* >
# last.ckpt`). Training gets whatever is left of DEADLINE_S seconds (from the start of this
# script) after the speed benchmark and before the export.
set -uo pipefail
T0=$(date +%s)
DEADLINE=${1:-480}
BATCH=${2:-128}
shift 2 || true
OUT=${OUT:-/tmp/gpu_session_out}
BASE=${BASE:-model=unet_small data=first}
RUN=${RUN:-first-unet_small-s0}
EXPORT_ARGS=${EXPORT_ARGS:-}
PY=${PY:-python3}          # a dry run here: PY=.venv/bin/python DEV=cpu TRAINER=cpu BENCH=0
DEV=${DEV:-cuda}
TRAINER=${TRAINER:-gpu}
mkdir -p "$OUT"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, lightning, hydra; print('torch', torch.__version__, 'lightning',
lightning.__version__, 'hydra', hydra.__version__)" | tee -a "$OUT/gpu.txt"

# 1. Speed of the shipped preset and the published-size network (bf16 autocast).
for b in $([ "${BENCH:-1}" = 1 ] && echo 32 128); do
  timeout 90 $PY bench/bench_models.py --device "$DEV" --presets unet_small unet_attn \
    --batch "$b" --train-steps 30 --nfe 30 2>&1 | tee -a "$OUT/bench_gpu.txt"
done

# 2. Training piece, resumed from the carried checkpoint.
CK=/tmp/ckpt/$RUN
mkdir -p "$CK"
[ -f .devcarry/last.ckpt ] && cp .devcarry/last.ckpt "$CK/last.ckpt"
# A crash (e.g. in the sampling callback) costs at most the 2 minutes since the last save:
# the piece is retried once without in-training sampling while time is left.
SAMPLE_EVERY=4000
for attempt in 1 2; do
  LEFT=$(( DEADLINE - ($(date +%s) - T0) - 75 ))   # 75 s: the save, the export, the copies
  [ "$LEFT" -lt 40 ] && break
  MIN=$($PY -c "print(round($LEFT / 60, 2))")
  echo "training piece (attempt $attempt): $MIN minutes at batch $BATCH" | tee -a "$OUT/train.log"
  RADIODIFF_CKPT_DIR=/tmp/ckpt timeout $(( LEFT + 40 )) $PY train.py \
    $BASE train.run_name="$RUN" trainer="$TRAINER" logger=csv paths.output_dir=/tmp/runs \
    train.total_kimg=3000 data.loader.batch_size="$BATCH" data.loader.num_workers=6 \
    train.max_minutes="$MIN" train.ckpt_every_minutes=2 train.ckpt_every_steps=0 \
    train.val_every_steps=1000 train.sample_every_steps=$SAMPLE_EVERY train.sample_count=64 \
    train.sample_batch_size=64 trainer.enable_progress_bar=false \
    trainer.log_every_n_steps=100 "$@" 2>&1 | grep -v "Warning\|warn(" | tee -a "$OUT/train.log"
  rc=${PIPESTATUS[0]}
  echo "train exit $rc" | tee -a "$OUT/train.log"
  [ "$rc" = 0 ] && break
  SAMPLE_EVERY=0
done

# 3. Bring back the resume state and the metrics.
# At most 8 files come back: the logs, metrics_*.csv, release.tar and at most 3 checkpoint parts.
i=0
for f in $(find /tmp/runs -name metrics.csv | sort); do i=$((i + 1)); cp "$f" "$OUT/metrics_$i.csv"; done
if [ -f "$CK/last.ckpt" ]; then
  sha256sum "$CK/last.ckpt" | tee -a "$OUT/train.log"
  # shellcheck disable=SC2086
  $PY -m radiodiff.cli export --ckpt "$CK/last.ckpt" --out "$OUT/release" $EXPORT_ARGS 2>&1 \
    | tee -a "$OUT/train.log"
  [ -d "$OUT/release" ] && tar -cf "$OUT/release.tar" -C "$OUT" release && rm -r "$OUT/release"
  if [ "$(stat -c %s "$CK/last.ckpt")" -lt $(( 45 * 1024 * 1024 )) ]; then
    split -b 15m "$CK/last.ckpt" "$OUT/last.ckpt.part-"
  else
    echo "last.ckpt over 45 MiB: not brought back; resume from release.tar (warm start)" \
      | tee -a "$OUT/train.log"
  fi
fi
echo "session took $(( $(date +%s) - T0 )) s" | tee -a "$OUT/train.log"
