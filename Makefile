# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo
# Demo frames are small (75 px, InceptionV3's minimum) so the whole demo runs in about a
# minute on 2 cores.
DEMO_IMAGE_SIZE ?= 75

.PHONY: venv demo test test-fast lint bench clean

# The demo's last words: each task's validation figure next to its baseline.
define DEMO_SUMMARY
import json, sys
m = {n: json.load(open(f"{sys.argv[1]}/{n}/metrics.json")) for n in ("lstm", "mean", "caption", "size", "seg", "seg-frame", "sound")}
c, b = m["caption"], m["caption"]["baseline_most_common"]
r = m["size"]
print(f"Validation top-1 (chance is 0.333): LSTM {m['lstm']['top1']:.3f}, mean-of-frames baseline {m['mean']['top1']:.3f}")
print(f"Captions: BLEU-4 {c['bleu4']:.3f}, CIDEr-D {c['cider_d']:.3f}; always '{b['caption']}': BLEU-4 {b['bleu4']:.3f}, CIDEr-D {b['cider_d']:.3f}")
print(f"Square size per frame: MSE {r['mse']:.5f} (MAE {r['mae']:.4f}); predicting the mean: MSE {r['baseline_mean']['mse']:.5f} (MAE {r['baseline_mean']['mae']:.4f})")
s, f = m["seg"], m["seg-frame"]
print(f"The sound alone (log-mel, pitch follows the square): validation top-1 {m['sound']['top1']:.3f}")
print(f"Grows/shrinks per frame: causal TCN frame accuracy {s['frame_accuracy']:.3f}, Edit {s['edit']:.3f}, F1@50 {s['f1@50']:.3f}; each frame alone: {f['frame_accuracy']:.3f}, {f['edit']:.3f}, {f['f1@50']:.3f}")
endef
export DEMO_SUMMARY

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,coco,ray,tensorboard,hub,cloud]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vidcache make-demo-data $(DEMO)/videos --clips-per-class 16
	$(BIN)/vidcache make-demo-data $(DEMO)/heldout --clips-per-class 2 --seed 7
	@if $(BIN)/vidcache weights --check; then W=imagenet; else \
	  echo "ImageNet weights are not available offline: the demo uses --weights random (features are NOT pretrained)."; \
	  W=random; fi; \
	$(BIN)/extract-features $(DEMO)/videos -o $(DEMO)/features.h5 --weights $$W --seed 0 \
	  --image-size $(DEMO_IMAGE_SIZE) --folder-fps 5
	$(BIN)/vidcache inspect $(DEMO)/features.h5
	$(BIN)/train-rnn $(DEMO)/features.h5 -o $(DEMO)/runs/lstm --overwrite --units 32 --epochs 80 --patience 15 -q
	$(BIN)/train-rnn $(DEMO)/features.h5 -o $(DEMO)/runs/mean --overwrite --head mean --units 32 --epochs 80 --patience 15 -q
	$(BIN)/vidcache evaluate $(DEMO)/runs/lstm $(DEMO)/features.h5
	$(BIN)/vidcache predict $(DEMO)/runs/lstm $(DEMO)/heldout
	$(BIN)/vidcache predict $(DEMO)/runs/lstm $(DEMO)/heldout/shrink/shrink_c01.mp4 --stream --every 5
	$(BIN)/train-rnn $(DEMO)/features.h5 -o $(DEMO)/runs/caption --overwrite --task caption \
	  --captions $(DEMO)/videos/captions.csv --units 64 --embedding-dim 32 --epochs 60 --patience 15 -q
	$(BIN)/vidcache predict $(DEMO)/runs/caption $(DEMO)/heldout
	$(BIN)/vidcache predict $(DEMO)/runs/caption $(DEMO)/heldout/pulse/pulse_c01.mp4 --stream --every 3
	$(BIN)/train-rnn $(DEMO)/features.h5 -o $(DEMO)/runs/size --overwrite --task regress \
	  --targets $(DEMO)/videos/targets.csv --units 32 --epochs 80 --patience 15 -q
	$(BIN)/vidcache predict $(DEMO)/runs/size $(DEMO)/heldout/shrink/shrink_c01.mp4 --stream --every 3
	$(BIN)/train-rnn $(DEMO)/features.h5 -o $(DEMO)/runs/seg --overwrite --task segment \
	  --segments $(DEMO)/videos/segments.csv --head tcn --causal --stages 2 --stage-layers 4 \
	  --units 32 --epochs 80 --patience 15 -q
	$(BIN)/train-rnn $(DEMO)/features.h5 -o $(DEMO)/runs/seg-frame --overwrite --task segment \
	  --segments $(DEMO)/videos/segments.csv --head mean --units 32 --epochs 80 --patience 15 -q
	$(BIN)/vidcache predict $(DEMO)/runs/seg $(DEMO)/heldout/pulse/pulse_c01.mp4
	$(BIN)/vidcache make-demo-data $(DEMO)/av --sound --clips-per-class 8
	$(BIN)/vidcache make-demo-data $(DEMO)/av-heldout --sound --clips-per-class 2 --seed 7
	$(BIN)/extract-features $(DEMO)/av -o $(DEMO)/sound.h5 --backbone logmel --fps 5
	$(BIN)/train-rnn $(DEMO)/sound.h5 -o $(DEMO)/runs/sound --overwrite --units 32 --epochs 60 --patience 15 -q
	$(BIN)/vidcache evaluate $(DEMO)/runs/sound $(DEMO)/av-heldout
	$(BIN)/vidcache predict $(DEMO)/runs/sound $(DEMO)/av-heldout/grow/grow_c01.mp4 --stream --every 5
	@$(BIN)/python -c "$$DEMO_SUMMARY" $(DEMO)/runs

# One worker per core; a test file's tests stay on one worker (their shared fixtures are
# built once).
PYTEST_WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check vidcache pipeline features models tests bench
	$(BIN)/ruff format --check vidcache pipeline features models tests bench

bench: $(STAMP)
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/caption.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache *.egg-info
