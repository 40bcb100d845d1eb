# Every target sets itself up: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ember-installed

.PHONY: demo test lint format bench gpu-bench device-data clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(VENV)/bin/ember demo --out demo-output

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	MPLBACKEND=Agg $(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/loader.py
	$(PY) benchmarks/text_pipeline.py
	$(PY) benchmarks/ddp_cpu.py
	$(PY) benchmarks/import_time.py
	$(PY) benchmarks/image_folder.py

# On a CUDA machine: the GPU tests and the GPU benchmarks (results in benchmarks/results).
gpu-bench: $(STAMP)
	PYTHON=$(PY) bash benchmarks/gpu_run.sh

# A copy of the benchmark data inside the repository (ignored), for machines that get only the repository.
device-data:
	mkdir -p .device-data
	cp -r ../shared/data/cifar2 ../shared/data/imdb .device-data/

clean:
	rm -rf demo-output .device-data .pytest_cache build *.egg-info src/*.egg-info
