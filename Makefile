# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo
# Demo frames are small so the whole demo runs in about a minute on 2 cores.
DEMO_IMAGE_SIZE ?= 139

.PHONY: venv demo test test-fast lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vidcache make-demo-data $(DEMO)/videos
	@if $(BIN)/vidcache weights --check; then W=imagenet; else \
	  echo "ImageNet weights are not available offline: the demo uses --weights random (features are NOT pretrained)."; \
	  W=random; fi; \
	$(BIN)/extract-features $(DEMO)/videos -o $(DEMO)/features.h5 --weights $$W --seed 0 --folder-fps 5 \
	  --image-size $(DEMO_IMAGE_SIZE)
	$(BIN)/vidcache inspect $(DEMO)/features.h5

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check pipeline features models tests bench
	$(BIN)/ruff format --check pipeline features models tests bench

bench: $(STAMP)
	$(BIN)/python bench/extract.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache *.egg-info
