# Two commands for a fresh machine:  make train  |  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where the MNIST files are; when the directory is absent, tinymnist downloads them to its cache.
DATA ?= $(if $(wildcard ../shared/datasets/mnist),../shared/datasets/mnist,)
DATA_FLAG := $(if $(DATA),--data-dir $(DATA),)

.PHONY: setup train test test-quick lint bench clean

$(BIN)/tinymnist: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a looser requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/tinymnist

train: setup
	$(BIN)/tinymnist train $(DATA_FLAG) $(ARGS)

test: setup
	$(if $(DATA),TINYMNIST_DATA=$(abspath $(DATA)),) $(BIN)/python -m pytest

# The loop for every edit: the tests without the `slow` marker.
test-quick: setup
	$(if $(DATA),TINYMNIST_DATA=$(abspath $(DATA)),) $(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks research tools fuzz setup.py
	# The public Python API is typed (py.typed): keep it checkable.
	$(BIN)/mypy --ignore-missing-imports src/tinymnist/__init__.py src/tinymnist/api.py src/tinymnist/backends/device.py src/tinymnist/data/mnist.py src/tinymnist/errors.py src/tinymnist/models/layers.py

bench: setup
	$(BIN)/python benchmarks/speed.py $(DATA_FLAG)
	$(BIN)/python benchmarks/accuracy.py $(DATA_FLAG) --seeds 5
	$(BIN)/python benchmarks/inference.py
	$(BIN)/python benchmarks/preprocess.py $(DATA_FLAG)
	$(BIN)/python benchmarks/mcu.py $(DATA_FLAG)
	$(BIN)/python benchmarks/web.py $(DATA_FLAG)

clean:
	rm -rf $(VENV) runs .pytest_cache
