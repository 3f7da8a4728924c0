# Two commands do everything on a fresh machine with Python >= 3.11 and make:
#   make demo   the whole PCII story on a throw-away local vault
#   make test   linters, type checks and the test suite (SeaweedFS included)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two install stamps: the demo needs only the package and its runtime dependencies; the
# tests, linters and benchmarks add their extras on top (make test installs them).
RUN    := $(VENV)/.installed-run
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(RUN): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN)

$(STAMP): $(RUN)
	$(BIN)/python -m pip install --quiet -e '.[test,bench,pkcs11,openbao,kms,report]'
	./scripts/install-softhsm2.sh
	touch $(STAMP)

demo: $(RUN)
	$(BIN)/python -m pcii_vault.demo

lint: $(STAMP)
	$(BIN)/ruff check pcii_vault tests benchmarks
	$(BIN)/ruff format --check pcii_vault tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers, one test file each at a time (module fixtures stay shared): most tests wait
# on subprocesses, servers and fsync, so the two cores overlap them. The slowest tests are
# listed at the end: the suite must stay under 15 minutes on a 2-core machine.
test: lint typecheck
	$(BIN)/pytest -n 2 --dist loadfile --durations=15

bench: $(STAMP)
	$(BIN)/python benchmarks/envelope.py
	$(BIN)/python benchmarks/s3_upload.py
	$(BIN)/python benchmarks/ledger.py
	$(BIN)/python benchmarks/acts.py
	$(BIN)/python benchmarks/policy.py
	$(BIN)/python benchmarks/keys.py
	$(BIN)/python benchmarks/service.py
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/pdf_stamp.py
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
