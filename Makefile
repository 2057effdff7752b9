# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
UV = $(PYTHON) -m uv

# Keep usage telemetry of the libraries off: nothing leaves the machine.
export DO_NOT_TRACK := true
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export UV_PYTHON_DOWNLOADS := never

.PHONY: install demo test test-fast bench lint format clean

# The browser check of reports (monitoring/browser.py) drives Debian's Chromium through
# Playwright: Playwright's own browser download needs the internet, the apt mirror does not.
CHROMIUM := /usr/bin/chromium

# The virtualenv is rebuilt whenever the pinned dependencies change.
$(VENV)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

# A file target: nothing runs once the browser is there. Only the tests need it, so
# `make demo` runs where nobody may install system packages.
$(CHROMIUM):
	@command -v apt-get >/dev/null 2>&1 || { echo "$(CHROMIUM) is missing and this machine has no apt-get: install Chromium so that $(CHROMIUM) runs it (the report browser checks need it)" >&2; exit 1; }
	@[ "$$(id -u)" = 0 ] || { echo "$(CHROMIUM) is missing: run 'sudo apt-get install -y chromium' (installing it needs root)" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
	  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } \
	  || { echo "could not install Debian's chromium with apt-get (see above)" >&2; exit 1; }
	@[ -x $(CHROMIUM) ] || { echo "apt-get installed chromium but $(CHROMIUM) is not there" >&2; exit 1; }

# The cluster tests and the online-store benchmark start Redis servers of their own
# (benchmarks/servers.RedisServer) beside the shared one: Debian's redis-server has the binary.
REDIS_SERVER := /usr/bin/redis-server

$(REDIS_SERVER):
	@command -v apt-get >/dev/null 2>&1 || { echo "$(REDIS_SERVER) is missing and this machine has no apt-get: install redis-server" >&2; exit 1; }
	@[ "$$(id -u)" = 0 ] || { echo "$(REDIS_SERVER) is missing: run 'sudo apt-get install -y redis-server' (installing it needs root)" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
	  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; } \
	  || { echo "could not install Debian's redis-server with apt-get (see above)" >&2; exit 1; }

install: $(VENV)/.installed

demo: install  ## simulate a customer world, build features, train the four tasks, check drift
	$(VENV)/bin/custlab demo

test: install $(CHROMIUM) $(REDIS_SERVER)  ## the whole suite, as CI runs it
	$(VENV)/bin/pytest

test-fast: install $(CHROMIUM) $(REDIS_SERVER)  ## everything but the slow whole-flow tests
	$(VENV)/bin/pytest -m "not slow"

bench: install $(REDIS_SERVER)  ## benchmarks beside their anchors; results in benchmarks/results/
	$(VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:  ## forget everything custlab wrote (the virtualenv stays)
	rm -rf .custlab
