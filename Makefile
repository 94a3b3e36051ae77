# Two entry points a new user needs: `make demo` and `make test`.
# Each one creates the virtual environment and installs what it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint up clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vigie demo --minutes 2

up: $(STAMP)
	$(BIN)/vigie up

test: $(STAMP)
	$(BIN)/ruff check vigie tests
	$(BIN)/mypy vigie
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check vigie tests
	$(BIN)/mypy vigie

clean:
	rm -rf $(VENV) .vigie .pytest_cache .mypy_cache
