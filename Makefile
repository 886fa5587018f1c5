# Two commands for a newcomer: `make run` and `make test`. Both set up .venv first.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.greenroom-setup

.PHONY: run test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml deploy/bootstrap.sh
	./deploy/bootstrap.sh
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/greenroom run

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) .pytest_cache
