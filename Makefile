# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test test-fast lint coverage verify verify-quick mutate mutate-report bench bench-quick campaign campaign-nightly clean

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

# Lint, the suite with branch coverage, the per-module coverage floors
# (tests/coverage_floor.py), then the quick CrossHair run: CI runs exactly this.
test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n 2 -m "not slow" --cov --cov-report= tests
	$(MAKE) --no-print-directory coverage
	$(MAKE) --no-print-directory verify-quick

# ruff (style, complexity, only engine/disk.py does file I/O), import-linter
# (the layers), mypy (the public API's types), and ci/github-actions.yml still
# a link to the one workflow file.
lint: $(STAMP)
	$(VENV)/bin/ruff check engine models faults tests bench examples
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	test "$$(readlink ci/github-actions.yml)" = ../.github/workflows/ci.yml \
		|| { echo "ci/github-actions.yml must be a symlink to ../.github/workflows/ci.yml"; exit 1; }

# The floors against the data of the last `pytest --cov` run (.coverage).
coverage: $(STAMP)
	$(PY) -m coverage json -q -o coverage.json
	$(PY) tests/coverage_floor.py coverage.json

# mypy over the public API's modules and tests/typing (config: [tool.mypy] in pyproject.toml).
.PHONY: typecheck
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# CrossHair over the pure modules; fails on any counterexample.
verify: $(STAMP)
	$(PY) tests/verify.py --per-condition 10 --total 900

verify-quick: $(STAMP)
	$(PY) tests/verify.py --per-condition 3 --total 180

# Mutation testing of engine/ with mutmut (docs/verification.md, "Mutation
# score"). SHARD=K/N runs the K-th of N shards (whole modules, balanced by
# size); MODULES="codec pager" runs those modules only; RECHECK=1 reruns
# only the last run's survivors (after adding tests). Each run writes
# mutation-<shard>.json; `make mutate-report` adds the shard files up.
SHARD ?= 1/1
MODULES ?=
mutate: $(STAMP)
	$(PY) tests/mutation.py run --shard $(SHARD) $(if $(MODULES),--modules "$(MODULES)") \
		$(if $(RECHECK),--recheck) --json mutation-$(subst /,-of-,$(SHARD)).json

mutate-report: $(STAMP)
	$(PY) tests/mutation.py report mutation-*.json --json mutation.json

bench: $(BENCH_STAMP)
	$(PY) -m bench --n 100000

bench-quick: $(BENCH_STAMP)
	$(PY) -m bench --n 10000 --quick

campaign: $(STAMP)
	$(VENV)/bin/dragondb campaign --seconds 60 --json campaign.json

campaign-nightly: $(STAMP)
	$(VENV)/bin/dragondb campaign --seconds 1800 --kills 1000 --json campaign-nightly.json

clean:
	rm -rf $(VENV) build *.egg-info .hypothesis mutants .coverage .coverage.* coverage.json
