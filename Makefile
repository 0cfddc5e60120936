# Commands on a fresh machine, each doing first whatever set-up is still missing, and nothing
# twice:
#
#   make train   # the main job: BN-LeNet on Fashion-MNIST (ARGS="--bn gluon --epochs 10" ...)
#   make test    # ruff, then the quick tests: all but those marked slow (ARGS="-k sync" ...)
#   make check   # everything CI runs: ruff, every test, then the validation tests under -O
#
# Set-up: Debian's Fashion-MNIST package and a C++ compiler if either is missing (apt-get, with
# sudo unless you are root, and said before it is used), then a virtual environment in .venv
# with requirements.txt, reinstalled only when a requirements file or pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

PEERS := .venv-peers

.PHONY: train test check setup system peers bench

train: setup
	$(BIN)/gluon-bn train $(ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

# No check may rely on assert, which python -O removes: the tests of bad input run again there.
check: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)
	$(BIN)/python -O -m pytest -q -W ignore::pytest.PytestConfigWarning \
	    tests/nn/test_bad_input.py tests/cli tests/train/test_data.py

setup: system $(INSTALLED)

# Optional: PyTorch for gluon-bn bench-peers, in an environment of its own (GluonCV refuses
# to import beside torch 2). torch==2.13.0 is the CPU build.
peers: $(PEERS)/.installed

$(PEERS)/.installed:
	@[ -x $(PEERS)/bin/python ] || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q torch==2.13.0 numpy
	@touch $@

bench: setup peers
	$(BIN)/gluon-bn bench-peers $(ARGS)

system:
	@missing=""; \
	[ -e $(FASHION_MNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
	    sudo=""; \
	    if [ "$$(id -u)" -ne 0 ]; then sudo=sudo; echo "installing$$missing with sudo apt-get"; \
	    else echo "installing$$missing with apt-get"; fi; \
	    $$sudo apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(INSTALLED): requirements.txt requirements-base.txt requirements-no-deps.txt pyproject.toml
	@[ -x $(BIN)/python ] || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-no-deps.txt
	@touch $@
