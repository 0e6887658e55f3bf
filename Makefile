# make demo / make test create .venv if missing and install what they need.
# torch is pinned to the CPU wheel by default; GPU users: make TORCH_SPEC=torch demo
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlmkit-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test chaos bench docs clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Randomised fault scenarios (kill -9, SIGTERM, write failures, corrupt bytes, a second process,
# mistaken commands) on tiny runs, with a summary line; CHAOS_SCENARIOS=N for more or fewer.
CHAOS_SCENARIOS ?= 200
chaos: $(STAMP)
	$(BIN)/python tests/chaos/run.py --scenarios $(CHAOS_SCENARIOS)

demo: $(STAMP)
	bash scripts/demo.sh $(BIN) $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python -c "import accelerate, sklearn" 2>/dev/null || $(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# The documentation site (mkdocs.yml, docs/) into site/; a warning (a broken link, a page left out
# of the nav, a reference page that cannot be generated) fails the build.
docs: $(STAMP)
	$(BIN)/python -c "import mkdocs, material" 2>/dev/null || $(BIN)/python -m pip install -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean:
	rm -rf runs site .pytest_cache
