# AdderFlow front door. Two commands do everything on a fresh machine:
#   make hls MODEL=resnet20      (creates .venv if missing, then builds + C-simulates)
#   make test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ADDERFLOW := $(VENV)/bin/adderflow

MODEL ?= resnet20
BITS ?= 4
BOARD ?= kv260
WEIGHTS ?=
DATA ?=
CSIM ?= 100
REUSE ?=
TARGET_FPS ?=
SHIFT_ADD ?=
OUT ?= build/$(MODEL)_w$(BITS)_$(BOARD)
FORCE ?=
IMPL ?= hls
PYTEST_ARGS ?=

.PHONY: install hls test test-slow test-ci bitstream package report bench clean-venv help

help:
	@echo "make hls MODEL=resnet20 [BITS=4 BOARD=kv260 WEIGHTS=ckpt.pth DATA=dir CSIM=100 REUSE=R|TARGET_FPS=F SHIFT_ADD=1 OUT=dir FORCE=1]"
	@echo "make test | make test-slow | make bitstream MODEL=resnet20 BOARD=kv260 [IMPL=hls|rtl] | make package"

# The venv is (re)built only when pyproject.toml changes; the stamp keeps `make` idempotent.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

hls: install
	$(ADDERFLOW) make-hls --model $(MODEL) --bits $(BITS) --board $(BOARD) --csim $(CSIM) --out $(OUT) \
		$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(DATA),--data-dir $(DATA)) \
		$(if $(REUSE),--reuse $(REUSE)) $(if $(TARGET_FPS),--target-fps $(TARGET_FPS)) \
		$(if $(SHIFT_ADD),--shift-add) $(if $(FORCE),--force)

bitstream: install
	$(ADDERFLOW) bitstream --board $(BOARD) --impl $(IMPL) $(OUT)

package: install
	$(ADDERFLOW) package --board $(BOARD) $(OUT)

report: install
	$(ADDERFLOW) report $(OUT)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Slow tests: full ResNet-20 csim, whole-test-set evaluations.
test-slow: install
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
