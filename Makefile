# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test test-fast lint verify verify-quick bench bench-quick campaign campaign-nightly clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow" tests
	$(MAKE) --no-print-directory verify-quick

lint: $(STAMP)
	$(VENV)/bin/ruff check engine models faults tests bench examples
	$(VENV)/bin/lint-imports

# mypy over the public API's modules and tests/typing (config: [tool.mypy] in pyproject.toml).
.PHONY: typecheck
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# CrossHair over the pure modules; fails on any counterexample.
verify: $(STAMP)
	$(PY) tests/verify.py --per-condition 10 --total 900

verify-quick: $(STAMP)
	$(PY) tests/verify.py --per-condition 3 --total 180

bench: $(BENCH_STAMP)
	$(PY) -m bench --n 100000

bench-quick: $(BENCH_STAMP)
	$(PY) -m bench --n 10000 --quick

campaign: $(STAMP)
	$(VENV)/bin/dragondb campaign --seconds 60 --json campaign.json

campaign-nightly: $(STAMP)
	$(VENV)/bin/dragondb campaign --seconds 1800 --kills 1000 --json campaign-nightly.json

clean:
	rm -rf $(VENV) build *.egg-info .hypothesis
