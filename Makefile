# lnlbench: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# MNIST, Fashion-MNIST, CIFAR and CIFAR-N live under DATA_ROOT (see README)
export DATA_ROOT ?= $(abspath ../shared/data)
JOBS   ?= 1
RUN    := $(PY) -m bench run
REPORT := $(PY) -m bench.report

.PHONY: venv demo test test-slow lint report perf gpu-check clean-demo \
        bench-mnist bench-cifar10 bench-cifar100 bench-cifar10n

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(RUN) bench/grids/demo.yaml --jobs 2
	$(REPORT) --grid demo

test: $(STAMP)
	$(PY) -m pytest -q

# pyflakes and bugbear checks (pyproject.toml [tool.ruff]), then the types of bench and methods
# (mypy, pyproject.toml [tool.mypy]); under a minute
lint: $(STAMP)
	$(PY) -m ruff check bench methods tests
	$(PY) -m mypy

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

report: $(STAMP)
	$(REPORT)

perf: $(STAMP)
	$(PY) -m bench.perf

# what `make demo` wrote: its records (and lock folder), checkpoints and report; nothing else
clean-demo:
	rm -rf results/demo checkpoints/demo reports/demo reports/demo.md

# on a machine with a CUDA device: bench.perf --device cuda, then one real CIFAR-10 cell of
# jocor_cifar10 with its seeds fused (records in gpu-check/), under 8 minutes in all
gpu-check: $(STAMP)
	$(PY) -m bench.gpu_check

bench-mnist: $(STAMP)
	$(RUN) bench/grids/jocor_mnist.yaml --jobs $(JOBS)
	$(REPORT) --grid jocor_mnist

bench-cifar10: $(STAMP)
	$(RUN) bench/grids/jocor_cifar10.yaml --jobs $(JOBS)
	$(REPORT) --grid jocor_cifar10

bench-cifar100: $(STAMP)
	$(RUN) bench/grids/jocor_cifar100.yaml --jobs $(JOBS)
	$(REPORT) --grid jocor_cifar100

bench-cifar10n: $(STAMP)
	$(RUN) bench/grids/cifar10n.yaml --jobs $(JOBS)
	$(REPORT) --grid cifar10n
