# minisbert: two commands do everything on a fresh machine.
#   make demo    create .venv, install, fetch and convert the weights, run the demo
#   make test    the fast offline suite (about 3.5 minutes on 2 cores, two pytest workers):
#                units, parity with the reference outputs, every loss, the lessons' checks
#   make lint    ruff check and ruff format --check (CI runs it before make test)
#   make test-all    make test, then the long tier (make test-slow): every lesson run in fast
#                    mode, training reproductions, fuzzing
# and, for the side-by-side checks against the real library:
#   make test-live   reference environments (.venv-ref: torch CPU + the pinned
#                    sentence-transformers; .venv-ref-new: the newest release)
#   make bench       speed and memory against sentence-transformers, printed as a table
#   make bench-grad-cache  peak memory of a train step with and without --mini-batch-size
#   make recipes     the paper's training results, reproduced with the minisbert command
#   make paper       the paper's central experiment: plain BERT -> SBERT-NLI (hub and a GPU)
#   make lessons     execute every lesson on real data into build/lessons/
#   make device-check  on whatever JAX sees (CPU, GPU, TPU): parity, a step against the CPU's,
#                    throughput, the matmul peak, every lesson in fast mode -> bench/results/

PYTHON ?= python3.11
VENV := .venv
REF := .venv-ref
MODEL := all-MiniLM-L6-v2
WEIGHTS := weights/$(MODEL)/model.safetensors
# The datasets live outside the repo; ../shared/data is where CI and the team keep them.
MINISBERT_DATA ?= $(abspath ../shared/data)
export MINISBERT_DATA

.PHONY: demo test test-slow test-all test-live weights reference lessons bench bench-grad-cache recipes paper lint clean device-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

# torch==2.13.0 exactly: it is the CPU build that lies on these machines' disk
# (a bare `torch` would pull a multi-GB CUDA build). Reference tests and benchmarks only.
# Two reference environments: the pinned sentence-transformers (benchmarks, recipes and
# reference files use it) and the newest release the registry offers, so that a change in
# how the library saves its folders fails `make test-live` instead of reaching users.
# `make test-live ST_NEWEST=6.4.0` tries a release before the pin moves.
ST_PINNED ?= 6.2.0
ST_NEWEST ?= 6.3.0
REF_NEW := .venv-ref-new
$(REF)/.installed: pyproject.toml
	$(PYTHON) -m venv $(REF)
	$(REF)/bin/python -m pip install --quiet --upgrade pip
	$(REF)/bin/python -m pip install --quiet torch==2.13.0
	$(REF)/bin/python -m pip install --quiet sentence-transformers==$(ST_PINNED) datasets accelerate -e '.[dev]'
	touch $@

$(REF_NEW)/.installed-$(ST_NEWEST): pyproject.toml
	$(PYTHON) -m venv $(REF_NEW)
	$(REF_NEW)/bin/python -m pip install --quiet --upgrade pip
	$(REF_NEW)/bin/python -m pip install --quiet torch==2.13.0
	$(REF_NEW)/bin/python -m pip install --quiet sentence-transformers==$(ST_NEWEST) datasets accelerate -e '.[dev]'
	touch $@

$(WEIGHTS): $(VENV)/.installed
	$(VENV)/bin/minisbert fetch $(MODEL)

weights: $(WEIGHTS)

demo: $(WEIGHTS)
	$(VENV)/bin/minisbert demo

# Two workers (pytest-xdist): most tests wait on a compile or a child process, so two on
# 2 cores take about two thirds of one's time. `make test TEST_WORKERS=0`: one process.
TEST_WORKERS ?= 2
test: $(WEIGHTS)
	$(VENV)/bin/python -m pytest -m "not live and not slow" -n $(TEST_WORKERS)

test-slow: $(WEIGHTS)
	$(VENV)/bin/python -m pytest -m "slow and not live"

test-all: test test-slow

# Every live test under the pinned release; the conversion tests (folders the library
# saves, converted and compared) and hard-negative mining under the newest one too.
test-live: $(REF)/.installed $(REF_NEW)/.installed-$(ST_NEWEST) $(WEIGHTS)
	$(REF)/bin/python -m pytest -m live
	$(REF_NEW)/bin/python -m pytest -m live tests/test_convert_live.py tests/test_cross_encoder_live.py \
		tests/test_mine_live.py

reference: $(REF)/.installed $(WEIGHTS)
	$(REF)/bin/python scripts/make_reference.py

lessons: $(WEIGHTS)
	$(VENV)/bin/python lessons/run.py --out build/lessons

# bench/device_check.py; DEVICE_CHECK_FLAGS='--lessons none' leaves out the lessons (CI does:
# make test-slow runs them). On a GPU machine: pip install -e '.[cuda]' first (README).
DEVICE_CHECK_FLAGS ?=
device-check: $(WEIGHTS)
	$(VENV)/bin/python -m bench.device_check $(DEVICE_CHECK_FLAGS)

bench: $(REF)/.installed $(WEIGHTS)
	$(REF)/bin/python -m bench

# Peak memory of a training step with and without the gradient cache (--mini-batch-size),
# batch 32, 256 and 1024, each run in its own process; minisbert alone, so .venv.
bench-grad-cache: $(WEIGHTS)
	$(VENV)/bin/python -m bench.grad_cache

# The paper's training results (STS-b fine-tune, NLI, triplets): about 26 minutes on a
# 2-core CPU. RECIPES=ablation: how the softmax head is trained (single lr, head lr, probe
# then fine-tune) and the paper's Table 6 features, 8 rows x 3 seeds, each run about 4
# minutes on an idle 2-core CPU; RECIPE_FLAGS='--seeds 0 --rows "head lr"' runs part of it.
# RECIPES=stsb picks some; see bench/recipes.py.
RECIPES ?= stsb nli triplets
RECIPE_FLAGS ?=
recipes: $(REF)/.installed $(WEIGHTS)
	$(REF)/bin/python -m bench.recipes $(RECIPES) $(RECIPE_FLAGS)

# The paper's Table 1 (STS-b test 46.35 -> 77.03): PAPER_MODEL, a plain BERT from the hub,
# mean-pooled, then 1 epoch of the softmax objective on AllNLI (SNLI + MultiNLI, about
# 942,000 pairs), then STS-b test again. Downloads the model and about 320 MB of data, and
# prints the expected time before the long run. bert-base needs a GPU; the small
# PAPER_MODEL=nreimers/MiniLM-L6-H384-uncased fits a CPU better. PAPER_ARGS="--max-steps N"
# stops early. See bench/paper.py and the README.
PAPER_MODEL ?= bert-base-uncased
PAPER_ARGS ?=
paper: $(VENV)/.installed
	$(VENV)/bin/python -m bench.paper --model $(PAPER_MODEL) $(PAPER_ARGS)

# The linter and the formatter, checking only (`ruff format` with the same paths rewrites).
LINT_PATHS := minisbert tests scripts lessons bench
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

clean:
	rm -rf $(VENV) $(REF) $(REF_NEW) build .pytest_cache
