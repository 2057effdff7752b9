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

# The virtualenv is rebuilt whenever the pinned dependencies change.
$(VENV)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

demo: install  ## simulate a customer world, build features, train the four tasks, check drift
	$(VENV)/bin/custlab demo

test: install  ## the whole suite, as CI runs it
	$(VENV)/bin/pytest

test-fast: install  ## everything but the slow whole-flow tests
	$(VENV)/bin/pytest -m "not slow"

bench: install  ## benchmarks beside their anchors; results in benchmarks/results/
	$(VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:  ## forget everything custlab wrote (the virtualenv stays)
	rm -rf .custlab
