# radiodiff: the two commands are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.radiodiff-setup
SHARED ?= $(firstword $(RADIODIFF_SHARED_DATA) $(wildcard ../shared/data))
DATA   ?= first
ARGS   ?=
PYTEST_ARGS ?=
# Two cores: a busy spinning OpenMP pool slows torch ~100x, so threads wait passively.
export OMP_WAIT_POLICY = PASSIVE
ifneq ($(SHARED),)
export RADIODIFF_SHARED_DATA := $(abspath $(SHARED))
endif

.PHONY: setup demo test prepare inspect train train-first train-first-deep train-mirabest \
        train-refiner export sample eval bench bench-quality clean

setup: $(STAMP)

# torch first (the CPU build lying on disk; never another torch, never torchvision), then
# the FIRST data wheel without its deps (they pull torchvision), then us with dev extras,
# within the versions the suite was last run with (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "radiodiff needs Python >= 3.11; $(PYTHON) is missing or older:" \
	            "make PYTHON=python3.11 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q --no-deps firstgalaxydata==0.2.1
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The built-in model (models/first): 16 samples per class as FITS, real vs generated PNG and
# a short metrics report in outputs/demo/ (ARGS go to `radiodiff demo`, e.g. --steps 12).
demo: setup
	test -f data/first.h5 || $(BIN)/radiodiff prepare data=first
	$(BIN)/radiodiff demo --overwrite $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

prepare: setup
	$(BIN)/radiodiff prepare data=$(DATA) $(ARGS)

inspect: setup
	$(BIN)/radiodiff inspect data/$(DATA).h5 --out outputs/inspect/$(DATA) --overwrite

# python train.py with Hydra overrides, e.g. make train ARGS="model=unet_base data=mirabest"
train: setup
	$(BIN)/python train.py $(ARGS)

# The default model (issue #5): unet_small on FIRST, in resumable pieces of at most 1 h 50.
# Resume state lives outside the work tree (CKPT_ROOT); rerun to continue where it stopped.
# If that state is lost, warm-start from the shipped model's EMA weights:
#   make train-first ARGS="train.init_from=models/first"
CKPT_ROOT ?= $(abspath ..)/ckpt
train-first: setup
	RADIODIFF_CKPT_DIR=$(CKPT_ROOT) $(BIN)/python train.py model=unet_small data=first \
	  logger=csv paths.output_dir=$(CKPT_ROOT)/runs train.total_kimg=3000 \
	  train.sample_every_steps=1000 train.sample_count=32 train.ckpt_every_minutes=10 \
	  train.ckpt_every_steps=500 train.val_every_steps=500 train.max_minutes=110 $(ARGS)

# unet_deep on FIRST (issue #28: the capacity the MiraBest ablation chose, for FRI jets and
# bent tails), from scratch: batch 16, fp32, 5e-4 constant to 300k images, then a linear
# cool-down to 0 at 350k (~22 h at the 4.5 images/s of a slow 2-core machine;
# docs/experiments_first.md, "first-deep"). Resumable pieces of at most PIECE_MIN minutes
# (default 105): rerun with the same CKPT_ROOT to continue. On a fresh machine (resume state
# lost), continue from the committed state, the run's EMA weights (a new run counting its
# own images, fresh optimiser; subtract the images already seen,
# models/campaign/first-deep/meta.json's images_seen plus warm_start.images_seen_total):
#   make train-first-deep ARGS="train.run_name=first-deep-2 \
#     train.init_from=models/campaign/first-deep train.total_kimg=<350 - seen> \
#     train.lr_decay_start_kimg=<300 - seen>" CHRT="chrt -r 5"
PIECE_MIN ?= 105
train-first-deep: setup
	RADIODIFF_CKPT_DIR=$(CKPT_ROOT) $(CHRT) $(BIN)/python train.py model=unet_deep data=first \
	  logger=csv paths.output_dir=$(CKPT_ROOT)/runs train.run_name=first-deep \
	  data.loader.batch_size=16 trainer.precision=32-true trainer.enable_progress_bar=false \
	  train.total_kimg=350 train.lr_decay_start_kimg=300 train.lr_decay_kimg=50 \
	  train.sample_every_steps=0 train.ckpt_every_minutes=5 train.ckpt_every_steps=500 \
	  train.val_every_steps=1000 train.max_minutes=$(PIECE_MIN) seed=0 $(ARGS)

# The physical-units model's campaign (issue #28): unet_deep on the MiraBest FIRST fields,
# conditioned on class, peak flux and LAS (Box-Cox), x^0.25 model space, batch 16
# (conf/experiment/mirabest.yaml; docs/campaign_mirabest.md). Resumable pieces of at most
# 110 min: rerun with the same CKPT_ROOT to continue. On a fresh machine (resume state lost),
# continue from the shipped release, the campaign's last EMA weights (a new run counting its
# own images from 0, fresh optimiser; its constant stretch, then its own cool-down):
#   make train-mirabest ARGS="train.run_name=mb-deep-2 train.init_from=models/mirabest \
#     train.total_kimg=150 train.lr_decay_start_kimg=110 train.lr_decay_kimg=40"
# On a shared 2-core machine, real-time priority keeps other processes from slowing the
# piece (docs/throughput.md), at their expense: opt in with CHRT="chrt -r 5".
CHRT ?=
train-mirabest: setup
	test -f data/mirabest.h5 || $(BIN)/radiodiff prepare data=mirabest
	RADIODIFF_CKPT_DIR=$(CKPT_ROOT) $(CHRT) $(BIN)/python train.py +experiment=mirabest \
	  model=unet_deep train.run_name=mb-deep paths.output_dir=$(CKPT_ROOT)/runs $(ARGS)

# The faint-end refiner of models/first (models/first/refiner): unet_small on FIRST in
# x^0.25 space (schedule=stretch), warm-started from models/first's base weights; resumable
# pieces like train-first. Then: radiodiff export --ckpt $(CKPT_ROOT)/ship-stretch/last.ckpt
# --ema-halflife 10 --out R; radiodiff attach-refiner --base models/first --refiner R
# --out models/first --sigma 0.45 --steps 3 --overwrite (the shipped setting; a run begun
# before data.projection_floor=data and data.projection_islands: add --projection-floor data
# --projection-islands bench/results/fit_islands.json --data data/first.h5). If the resume
# state is lost, continue from the shipped refiner's EMA weights (a new run, fresh optimiser):
#   make train-refiner ARGS="seed=3 train.run_name=ship-stretch4 train.init_from=models/first/refiner"
train-refiner: setup
	RADIODIFF_CKPT_DIR=$(CKPT_ROOT) $(BIN)/python train.py model=unet_small data=first \
	  schedule=stretch logger=csv seed=0 train.run_name=ship-stretch \
	  train.init_from=models/first train.ema_rampup_ratio=null \
	  paths.output_dir=$(CKPT_ROOT)/runs train.total_kimg=200 train.sample_every_steps=0 \
	  train.ckpt_every_minutes=5 train.ckpt_every_steps=250 train.val_every_steps=250 \
	  train.val_batches=8 trainer.enable_progress_bar=false trainer.precision=32-true \
	  train.ema_halflife_kimg=5 'train.ema_bank_kimg=[2,10]' train.max_minutes=110 $(ARGS)

# make export CKPT=outputs/checkpoints/<run>/last.ckpt OUT=models/<name>
export: setup
	$(BIN)/radiodiff export --ckpt $(CKPT) --out $(OUT)

# make sample [MODEL=models/<name>] ARGS="--n 64 --class FRII" (default: the built-in model)
MODEL ?= first
sample: setup
	$(BIN)/radiodiff sample --model $(MODEL) $(ARGS)

# make eval [CKPT=<release folder or .ckpt>] [N=<images; default the real split's size>]
#   [REF=data/<name>.h5]
#   [ARGS="--sampler dpmpp_2m --steps 10"]: the reference set is the data the model was
# trained on (data/<data.name>.h5, checked by its data_sha256) unless REF names one.
CKPT ?= first
N ?=
REF ?=
eval: setup
	$(BIN)/radiodiff evaluate $(if $(REF),--reference $(REF)) --model $(CKPT) \
	  $(if $(N),--n $(N)) $(ARGS)

bench: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/python bench/bench_models.py $(ARGS)

# Quality against sampler steps for the built-in model (or MODEL=...), FIRST valid split
# (ARGS="--split test" once per release)
bench-quality: setup
	test -f data/first.h5 || $(BIN)/radiodiff prepare data=first
	$(BIN)/python bench/bench_quality.py --model $(MODEL) --n $${N:-200} $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
