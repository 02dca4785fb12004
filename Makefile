# Quick start: `make demo` (the main job) and `make test` (the whole suite); `make check` is the
# fast lane for contributors. Each creates the virtualenv on first use. torch==2.13.0 is installed
# first so that pip does not pull a multi-GB CUDA build on a CPU machine; on a GPU machine set
# TORCH_SPEC (e.g. TORCH_SPEC=torch) to get the build for your CUDA.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.genretune-installed

.PHONY: setup demo test check bench-check lint format clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c .ci/constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps -c .ci/constraints.txt hpbandster
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/genretune search --profile demo --name demo --overwrite

# Two test processes (pytest-xdist), each module's tests in one of them so that its fixtures are
# made once: much of a search test's time is spent waiting (Ray starting, a saved state, a
# process to exit), which the other process fills.
test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadscope

# The dashboard's test renders the page in a real headless Chromium: Debian's chromium package,
# installed here when it is missing and this is a Debian/Ubuntu machine run as root.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	echo "note: no Chromium (install Debian's chromium package): the dashboard test will fail"

# The fast lane (under 2 minutes): every test not marked slow (no Ray, no real search), with
# the lint and format checks. Run it after each change; `make test` before you push.
check: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

# The benchmark scripts run end to end on tiny settings (simulate --quick, all_knowing, a
# killed and resumed curve-bank recording): about a minute; run it when you change benchmarks/.
bench-check: $(STAMP)
	$(BIN)/python -m pytest -m benchmark_smoke -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache test-artefacts
