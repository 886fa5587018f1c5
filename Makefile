# Two commands for a newcomer: `make run` and `make test`. Both set up .venv first.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.greenroom-setup
CODE := bots core memory models greenroom tests setup.py

.PHONY: run test lint bench eval chaos setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py deploy/bootstrap.sh
	./deploy/bootstrap.sh
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/greenroom run

# the checks first (seconds), then the tests
test: lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	PYTHON=$(CURDIR)/$(PY) ./deploy/typecheck.sh

bench: $(STAMP)
	$(PY) -m tests.bench

# the persona evaluation that chose the default model (about 20 minutes); EVAL="--models smollm2-135m --questions 2"
eval: $(STAMP)
	$(PY) -m tests.bench.eval_persona $(EVAL)

chaos: $(STAMP)
	$(PY) -m tests.bench.chaos

clean:
	rm -rf $(VENV) .pytest_cache build
