# Two commands for a new user:  `make demo` (set up, index Corel-5k, annotate and evaluate its test images)
# and `make test` (set up, run the test suite). Both create .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/corel5k
STORE  ?= out/corel5k.annot

.PHONY: setup demo test test-fast lint docs bench clean tools

$(BIN)/annot: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(BIN)/annot

setup: $(BIN)/annot

demo: setup
	$(BIN)/annot index $(DATA)/train.jsonl --store $(STORE) --vocabulary $(DATA)/vocabulary.txt
	$(BIN)/annot eval $(DATA)/test.jsonl --store $(STORE)
	$(BIN)/annot query $(DATA)/images/test/1001.jpeg --store $(STORE) --explain
	$(BIN)/annot info --store $(STORE)

# pytest exits 5 when it collects nothing; that alone is not a failure, every other non-zero code is.
# The tests need Debian's chromium and its driver (the report and the web page, in a real browser) and exiftool
# (reading exported XMP sidecars back); install what is missing.
tools:
	@missing=""; \
	  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	  command -v exiftool >/dev/null || missing="$$missing libimage-exiftool-perl"; \
	  if [ -n "$$missing" ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# The tests, then the linter and the type checker (pinned in the dev extras); every failure counts.
test: setup tools
	$(BIN)/python -m pytest -q -ra; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; \
	$(MAKE) --no-print-directory lint || rc=1; exit $$rc

# The quick tier for the edit-test loop (under a minute on 2 cores): everything but the slow, browser, cluster and
# real-encoder tests. `make test` runs them all.
FAST := not slow and not browser and not cluster and not integration
test-fast: setup
	$(BIN)/python -m pytest -q -m "$(FAST)"; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

# The CLI reference is generated from the commands' help text; tests/test_docs.py fails when it is stale.
docs: setup
	$(BIN)/python -m annot.cli.reference > docs/cli.md

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python benchmarks/corel5k.py --store $(STORE)
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-lite0.annot --encoder efficientnet-lite0
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-lite2-stages.annot --encoder efficientnet-lite2-stages
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-minilm.annot --words minilm
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-kcca.annot --projections kcca
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-minilm-kcca.annot --words minilm --projections kcca
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-lite2-minilm.annot --encoder efficientnet-lite2-stages --words minilm --projections kcca
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-kcca-rbf.annot --projections kcca-rbf
	$(BIN)/python benchmarks/corel5k.py --store out/corel5k-lite2-kcca-rbf.annot --encoder efficientnet-lite2-stages --projections kcca-rbf
	$(BIN)/python benchmarks/speed.py --store $(STORE)
	$(BIN)/python benchmarks/baselines.py --store $(STORE)
	$(BIN)/python benchmarks/cnnr.py --store $(STORE)
	$(BIN)/python benchmarks/approximate.py --store $(STORE)
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/kcca_scale.py
	$(BIN)/python benchmarks/library.py --store $(STORE)
	$(BIN)/python benchmarks/serve.py --store $(STORE)
	$(BIN)/python benchmarks/throughput.py --store $(STORE)
	$(BIN)/python benchmarks/rerun.py --store $(STORE)
	$(BIN)/python benchmarks/faults.py

clean:
	rm -rf out .pytest_cache
