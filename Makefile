# Fresh-machine entry points: `make demo` (the main job on the embedded synthetic default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= train,space,dev

.PHONY: setup demo test lint
setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel this machine carries, so the package's torch>=2.4 pulls nothing more.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

test: setup
	OMP_NUM_THREADS=2 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
