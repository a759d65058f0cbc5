# Fresh-machine entry points: `make demo` (the main job on the embedded synthetic default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= train,space,dev

.PHONY: setup demo space test lint
setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel this machine carries, so the package's torch>=2.4 pulls nothing more.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# The main job on the embedded default: train GReFEL-tiny on synthetic faces, then re-evaluate the saved model
# through the Auto classes, exactly as a user of the Hub would load it.
demo: setup
	OMP_NUM_THREADS=2 $(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no \
		--dynamo_backend no scripts/train.py --output_dir outputs/synthetic-default
	$(PY) scripts/evaluate.py --model outputs/synthetic-default --dataset synthetic --split test

# Serve the Gradio Space on the model `make demo` trained (http://127.0.0.1:7860).
space: setup
	EMOTIONNET_MODEL=outputs/synthetic-default $(PY) space/app.py

test: setup
	OMP_NUM_THREADS=2 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
