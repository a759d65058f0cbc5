# Fresh-machine entry points: `make demo` (the main job on the embedded synthetic default) and `make test` (which
# also installs the browser its browser test drives).
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= train,space,dev,onnx

.PHONY: setup browser demo space test lint
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
	$(PY) scripts/evaluate_model.py --model outputs/synthetic-default --dataset synthetic --split test

# Serve the Gradio Space on the model `make demo` trained (http://127.0.0.1:7860).
space: setup
	EMOTIONNET_MODEL=outputs/synthetic-default $(PY) space/app.py

# Debian's Chromium for the Space's browser test (Playwright drives it; Playwright downloads no browser): when
# tests/test_browser.py's $(CHROMIUM) is missing, apt-get installs it, as root or through sudo.
CHROMIUM := /usr/bin/chromium
CHROMIUM_PACKAGES := chromium chromium-driver
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "make browser: $(CHROMIUM) is missing and there is no apt-get to install it; install Chromium" \
				"(Debian: $(CHROMIUM_PACKAGES)) so that $(CHROMIUM) runs it." >&2; exit 1; \
		elif [ "$$(id -u)" = 0 ]; then sudo=; \
		elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
		else \
			echo "make browser: $(CHROMIUM) is missing; installing it needs root:" \
				"apt-get install -y $(CHROMIUM_PACKAGES) as root, then make test again." >&2; exit 1; \
		fi; \
		echo "Installing $(CHROMIUM_PACKAGES) with apt-get for the browser test"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PACKAGES) >/dev/null; \
	fi

test: setup browser
	OMP_NUM_THREADS=2 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
