# Two commands for a fresh Debian/Ubuntu machine with Python 3.11: `make demo` and `make test`.
# Each bootstraps what it needs: Debian packages, a .venv, and the suite installed in it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stylex-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test lint setup data browser wheel clean

demo: $(STAMP)
	$(BIN)/stylex benchmark --config demo

test: $(STAMP) data browser
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

setup: $(STAMP) data

# torch and torchvision first, pinned to the builds the suite is tested with; then the suite (editable).
$(STAMP): pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || scripts/apt-install python3-venv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

data:
	@test -d $(FASHION_MNIST) || scripts/apt-install dataset-fashion-mnist

# the study app's browser test drives Debian's chromium through Playwright
browser:
	@command -v chromium >/dev/null || scripts/apt-install chromium

# a wheel with the presets and shipped models inside (see README, "Using the installed package")
wheel: $(STAMP)
	$(BIN)/python -m pip wheel . --no-deps --no-build-isolation -w dist

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build dist
