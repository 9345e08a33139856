# Two commands work on a fresh machine: `make search` and `make test`.
# Both create .venv with pip (torch and torchvision come from this machine's disk).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SEARCH_ARGS ?=

.PHONY: search test test-portable test-gpu-torch bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing gmgraph and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install -e '.[dev]' > $(VENV)/install.log 2>&1 || (tail -n 40 $(VENV)/install.log; exit 1)
	@touch $(STAMP)

search: $(STAMP)
	$(VENV)/bin/gmgraph search $(SEARCH_ARGS)

# One worker per core (2 on the development and CI machines); a test file stays on one worker, and files are
# handed out in collection order (tests/conftest.py puts the slowest first), not xdist's most-tests-first, which
# left a one-test file of 9 s for last. Bytecode is written even where the environment says not to
# (PYTHONDONTWRITEBYTECODE): pytest then rewrites and compiles the test files' assertions once, not once per
# worker and run (about 4 s of each worker's start).
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder
# Each run's scratch files (pytest's tmp_path, tempfile's) go to a folder of their own, in memory where
# /dev/shm has a gigabyte free: on a disk mounted with `discard` (this machine's ext4) deleting a file already
# written out costs about 3.5 ms, and the suite deletes thousands. The folder goes when the run passes; a
# failed run keeps it (pytest keeps the failed tests' tmp_path) and says where.
SCRATCH_ROOT := $(shell [ -d /dev/shm ] && [ -w /dev/shm ] && \
	[ "$$(df -Pk /dev/shm | awk 'NR==2 {print $$4}')" -gt 1048576 ] && echo /dev/shm)
define in_scratch
	@scratch=$$(mktemp -d "$(or $(SCRATCH_ROOT),$${TMPDIR:-/tmp})/gmgraph-tests.XXXXXX") && \
	echo "TMPDIR=$$scratch $(1) $(PYTEST)" && TMPDIR=$$scratch $(1) $(PYTEST); status=$$?; \
	if [ $$status -eq 0 ]; then rm -rf "$$scratch"; else echo "test files kept in $$scratch"; fi; exit $$status
endef

test: $(STAMP)
	$(call in_scratch,)

# The whole suite again under other CPU kernels (no AVX2/AVX-512 paths in ATen, MKL or oneDNN): other kernels
# sum floats in another order, as another user's CPU does, so a test tuned to this CPU's rounding fails here
# before it fails on theirs. CI runs it after `make test`.
PORTABLE_ENV := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
test-portable: $(STAMP)
	$(call in_scratch,$(PORTABLE_ENV))

# The suite under the torch the lent GPU machines run (2.11 + Triton 3.6; their Python is 3.12), on the
# CPU: catches what an older torch breaks before a GPU's minutes are spent. Downloads about 730 MB once;
# every other package comes from .venv. Not part of `make test` or CI.
GPU_TORCH := .venv-gpu-torch
test-gpu-torch: $(STAMP)
	@test -x $(GPU_TORCH)/bin/python || $(PYTHON) -m venv $(GPU_TORCH)
	@$(GPU_TORCH)/bin/python -m pip install -q --no-deps torch==2.11.0 triton==3.6.0 torchvision==0.26.0
	@$(PY) -c "import sysconfig; print(sysconfig.get_path('purelib'))" \
		> $$($(GPU_TORCH)/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")/zz_gmgraph_deps.pth
	PYTHONPATH=. $(GPU_TORCH)/bin/python -m pytest -n auto --dist loadfile --no-loadscope-reorder

bench: $(STAMP)
	$(PY) benchmarks/bench_passes.py

lint: $(STAMP)
	$(VENV)/bin/ruff check gmgraph tests benchmarks

clean:
	rm -rf $(VENV) $(GPU_TORCH) runs .pytest_cache
