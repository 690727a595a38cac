# Everything sets itself up on a fresh clone: a virtualenv in .venv, the package, the datasets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; installed before the package so pip never pulls a CUDA build here.
TORCH ?= torch==2.13.0
DATA ?= data
FETCH ?= ../shared/data/fetch-datasets
DEMO ?= experiments/lenet5-fashion-mnist.yaml
DEMO_RUN ?= runs/lenet5-fashion-mnist

.PHONY: setup data demo test test-slow lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# Fashion-MNIST and MNIST in the standard torchvision layout under $(DATA)/.
data:
	@if [ -x "$(FETCH)" ]; then "$(FETCH)" "$(DATA)" fashion-mnist mnist; \
	elif [ -f "$(DATA)/FashionMNIST/raw/t10k-labels-idx1-ubyte" ] || [ -f "$(DATA)/FashionMNIST/raw/t10k-labels-idx1-ubyte.gz" ]; then \
	  echo "datasets present in $(DATA)/"; \
	else echo "Put the IDX files of Fashion-MNIST in $(DATA)/FashionMNIST/raw/ and of MNIST in $(DATA)/MNIST/raw/ (torchvision layout), or set FETCH=path/to/fetch-datasets"; exit 1; fi

data-cifar10:
	@if [ -x "$(FETCH)" ]; then "$(FETCH)" "$(DATA)" cifar10; \
	elif [ -f "$(DATA)/cifar-10-batches-py/test_batch" ]; then echo "cifar10 present in $(DATA)/"; \
	else echo "Unpack cifar-10-python.tar.gz into $(DATA)/ (torchvision layout), or set FETCH=path/to/fetch-datasets"; exit 1; fi

# The main job: train (or reuse) LeNet-5 on Fashion-MNIST, search per-layer policies under a
# MACs budget of 25% (100 screened without fine-tuning, the best 10 fine-tuned, the best 3 of
# those fine-tuned longer; a SQLite study in the run directory, re-running resumes it), print
# the Pareto front and export the best policy with a longer fine-tune (model.pt, model.onnx),
# then the same policy deployed as integer kernels (W8A8 on every layer, export-int8/), both
# tested in ONNX Runtime, and the two files' ONNX Runtime latencies side by side.
demo: setup data
	$(PY) -m autocompress train $(DEMO)
	$(PY) -m autocompress search $(DEMO)
	$(PY) -m autocompress pareto $(DEMO_RUN)
	$(PY) -m autocompress export $(DEMO_RUN) --best --out $(DEMO_RUN)/export
	$(PY) -m autocompress export $(DEMO_RUN) --best --bits 8 --out $(DEMO_RUN)/export-int8
	$(PY) -m autocompress latency $(DEMO_RUN)/export-int8 --compare $(DEMO_RUN)/export

test: setup
	$(PY) -m pytest

# Longer runs (minutes): base-model accuracy targets on Fashion-MNIST and MNIST, a real-data
# search, a Ray search stopped with Ctrl-C and resumed, a search on a `ray start` cluster, the
# integer ONNX exports of LeNet-5 (MNIST) and the committed ResNet-20 (CIFAR-10) against their reports.
test-slow: setup data data-cifar10
	$(PY) -m pytest -m slow

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
