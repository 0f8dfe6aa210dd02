# homesec — two commands for a fresh machine (Python 3.11+, mosquitto and libopenh264 installed):
#   make run    the whole system locally (Mosquitto + every service, demo camera)
#   make test   every check: lint, types, unit, integration, deployment checks
SHELL := /bin/bash
PYTEST_ARGS ?=
LINT_PATHS := libs services tests docker $(wildcard bench)
# uv from PATH, else a private copy in .tools/ (a venv, so it works where system pip is locked)
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)

.PHONY: install run test lint typecheck unit docs bench clean

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

install: $(UV)
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || { \
	  echo "mosquitto is missing: sudo apt-get install mosquitto (macOS: brew install mosquitto)"; exit 1; }
	@ldconfig -p 2>/dev/null | grep -q libopenh264 || ls /usr/lib/*/libopenh264.so* >/dev/null 2>&1 || { \
	  echo "libopenh264 is missing (alert clips): sudo apt-get install libopenh264-7 (macOS: brew install openh264)"; exit 1; }
	$(UV) sync --frozen

run: install
	$(UV) run homesec run

lint: install
	$(UV) run ruff format --check $(LINT_PATHS)
	$(UV) run ruff check $(LINT_PATHS)

typecheck: install
	$(UV) run mypy libs/core/src

docs: install
	$(UV) run homesec docs --write

unit: install
	$(UV) run pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: install
	$(UV) run python bench/detector.py
	$(UV) run homesec eval --report

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
