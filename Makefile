# Two entry points a new user needs: `make demo` and `make test`.
# Each one creates the virtual environment and installs what it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The stages, in the order data flows through them, then the composition root.
PACKAGES := schemas connectors streams sinks dashboards vigie

# Debian packages the tests drive for real: Prometheus and promtool (alert rules), amtool
# (the Alertmanager config),
# Chromium (the HTML report, headless), docker-compose (validates the stack file) and
# shellcheck (the scripts the stack runs).
DEBIAN_TOOLS := prometheus prometheus-alertmanager chromium docker-compose shellcheck
TOOLS_STAMP  := $(VENV)/.tools

.PHONY: demo test test-fast lint up clean tools

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,mssql]'
	touch $(STAMP)

$(TOOLS_STAMP): Makefile
	@missing=""; for pkg in $(DEBIAN_TOOLS); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

tools: $(TOOLS_STAMP)

demo: $(STAMP)
	$(BIN)/vigie demo --minutes 2

up: $(STAMP)
	$(BIN)/vigie up

# Three test processes on two cores: most integration tests wait on a broker or a worker more
# than they compute (two at a time kept 1.2 cores busy; four starved the bench test's latency
# phase). Each test has its own data dir, ports and tables.
TEST_PROCESSES ?= 3

# The tests' motif model (1–2 min to train with its sentence embedding) is trained beside ruff
# and mypy, which leave a core idle, into a cache kept between runs: keyed by the corpus's
# fingerprint, it trains anew when the corpus or the recipe changes. `make clean` removes it.
TEST_MODELS := $(CURDIR)/$(VENV)/test-models

test: $(STAMP) $(TOOLS_STAMP)
	@$(BIN)/python -m tests.session_model $(TEST_MODELS) & trainer=$$!; \
	$(BIN)/ruff check $(PACKAGES) tests && $(BIN)/mypy $(PACKAGES); lint=$$?; \
	wait $$trainer; trained=$$?; \
	[ $$trained -eq 0 ] || echo "training the tests' motif model failed"; \
	[ $$lint -eq 0 ] && [ $$trained -eq 0 ]
	VIGIE_TEST_MODEL_CACHE=$(TEST_MODELS) $(BIN)/pytest -n $(TEST_PROCESSES)

test-fast: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/pytest -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/mypy $(PACKAGES)

clean:
	rm -rf $(VENV) .vigie .pytest_cache .mypy_cache
