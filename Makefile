VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.test-requirements.sha256
STORE ?= .mlops
RUN_PIPELINE ?= run_pipeline.py

.PHONY: test test-fast lint venv bench clean

# Tests run on PYTEST_WORKERS processes (pytest-xdist); PYTEST_WORKERS=0 runs them in this one.
PYTEST_WORKERS ?= 2

# Create .venv, install runtime and test requirements (again only when they change), lint, run every test.
test: venv lint
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS)

# The unit tier only: no process, no socket (tests/unit_tier.py enforces it).
test-fast: venv lint
	$(VENV)/bin/python -m pytest -m unit -n $(PYTEST_WORKERS)

lint: venv
	$(VENV)/bin/ruff check .

venv:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@want="$$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)"; \
	if [ ! -f $(STAMP) ] || [ "$$(cat $(STAMP))" != "$$want" ]; then \
	  $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt && \
	  echo "$$want" > $(STAMP); \
	fi

bench: venv
	$(VENV)/bin/python -m bench.run_all

# Stop this checkout's endpoints before deleting their state: a server whose directory is gone
# would run on with nobody able to see or stop it. Refuses (and deletes nothing) if they cannot be stopped.
clean:
	@if [ -d $(STORE) ]; then \
	  if [ -x $(VENV)/bin/python ]; then \
	    $(VENV)/bin/python $(RUN_PIPELINE) --store-dir $(STORE) cleanup --all || \
	      { echo "make clean: endpoints in $(STORE) could not be stopped; nothing deleted" >&2; exit 1; }; \
	  elif pgrep -f "$(abspath $(STORE))/endpoints/" >/dev/null; then \
	    echo "make clean: servers from $(STORE) are running and $(VENV) is gone; stop them first" >&2; exit 1; \
	  fi; \
	fi
	rm -rf $(STORE) .pytest_cache
