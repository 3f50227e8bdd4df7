# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv when it is missing and install what the project needs; nothing else is typed by hand.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
YOLO_STAMP := $(VENV)/.yolo-stamp
export CARDMETRY_HOME ?= $(CURDIR)/cardmetry-data
PORT ?= 8010

CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint bench install clean browser

install: $(STAMP)

# Reinstall when the dependency list changes; the editable install picks up code changes by itself.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The optional yolo-seg backend (Ultralytics, AGPL) and the PostgreSQL driver are installed for the tests only; the
# core never imports Ultralytics, and SQLite needs no driver.
$(YOLO_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,yolo,postgres]'
	@touch $(YOLO_STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; Playwright never downloads a browser of its own).
# A file target: once /usr/bin/chromium exists this costs nothing. DejaVu gives the screenshots a font to draw with.
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core

# The web app on the embedded default (SQLite and local workers under CARDMETRY_HOME), with a small synthetic
# dataset stored on first start so there is something to train at once; it opens the browser where there is a screen.
run: $(STAMP)
	$(BIN)/cardmetry serve --port $(PORT) --demo

test: $(STAMP) $(YOLO_STAMP) browser
	$(BIN)/ruff check .
	CARDMETRY_TEST_POSTGRES_URL="$$(bash tests/postgres.sh)" $(BIN)/pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/synth_speed.py
	$(BIN)/python bench/refine_real_scans.py
	$(BIN)/python bench/measure_accuracy.py
	$(BIN)/python bench/measure_real_scans.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache cardmetry-data
