# Two commands work on a fresh machine: `make search` and `make test`.
# Both create .venv with pip (torch and torchvision come from this machine's disk).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SEARCH_ARGS ?=

.PHONY: search test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing gmgraph and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install -e '.[dev]' > $(VENV)/install.log 2>&1 || (tail -n 40 $(VENV)/install.log; exit 1)
	@touch $(STAMP)

search: $(STAMP)
	$(VENV)/bin/gmgraph search $(SEARCH_ARGS)

# One worker per core (2 on the development and CI machines); a test file stays on one worker.
test: $(STAMP)
	$(PY) -m pytest -n auto --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/bench_passes.py

lint: $(STAMP)
	$(VENV)/bin/ruff check gmgraph tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
