# Two commands on a fresh machine, each doing first whatever set-up is still missing, and
# nothing twice:
#
#   make train   # the main job: BN-LeNet on Fashion-MNIST (ARGS="--bn gluon --epochs 10" ...)
#   make test    # ruff, then the tests (ARGS="-k sync" ...)
#
# Set-up: Debian's Fashion-MNIST package and a C++ compiler if either is missing (apt-get, with
# sudo unless you are root, and said before it is used), then a virtual environment in .venv
# with requirements.txt, reinstalled only when a requirements file or pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

.PHONY: train test setup system

train: setup
	$(BIN)/python scripts/train_lenet_bn.py $(ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)

setup: system $(INSTALLED)

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

$(INSTALLED): requirements.txt requirements-base.txt pyproject.toml
	@[ -x $(BIN)/python ] || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q -r requirements.txt
	@touch $@
