VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.test-requirements.sha256

.PHONY: test venv bench clean

# Create .venv, install runtime and test requirements (again only when they change), run pytest.
test: venv
	$(VENV)/bin/python -m pytest

venv:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@want="$$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)"; \
	if [ ! -f $(STAMP) ] || [ "$$(cat $(STAMP))" != "$$want" ]; then \
	  $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt && \
	  echo "$$want" > $(STAMP); \
	fi

bench: venv
	$(VENV)/bin/python -m bench.run_all

clean:
	rm -rf .mlops .pytest_cache
