# Quick start: `make demo` runs the pipeline on an embedded local AWS; `make test` runs the tests.
# Needs Python 3.11+, make and Node.js (npm): Python packages go into .venv, the local AWS
# emulators (kinesalite, dynalite) into node_modules.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo playground test lint docs fuzz bench soak package deploy teardown clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11 or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# checkov lives in its own environment: it pins its own versions of boto3 and friends.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	@touch $(CHECKOV_STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || (echo "npm (Node.js) is required for the local Kinesis and DynamoDB emulators" && exit 2)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

demo: $(STAMP)
	$(BIN)/stream-processor demo

# The local AWS and a living fleet, until Ctrl-C: paste the printed exports in another
# terminal and try any command there.
playground: $(STAMP)
	$(BIN)/stream-processor demo --serve

# On every core: tests are spread over the workers one at a time (each worker has its own
# moto server and emulators); the long modules start first (tests/conftest.py).
test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -n auto --dist load

lint: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check stream_processor tests benchmarks infra docs
	$(BIN)/mypy
	$(BIN)/cfn-lint infra/template.yaml infra/member.yaml
	@# Policy checks; a skip lives in the resource's Metadata with its reason. Offline.
	$(CHECKOV_VENV)/bin/checkov --framework cloudformation --quiet --compact --skip-download \
		-f infra/template.yaml -f infra/member.yaml

# The documentation site into site/: the reference pages rendered from the code first, then
# a strict build (a broken link or anchor fails it). CI passes DOCS_GEN=--check: a page
# that no longer matches the code fails there instead of being rewritten.
DOCS_GEN ?=
docs: $(STAMP)
	$(BIN)/python docs/gen_reference.py $(DOCS_GEN)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The fuzzers at length (make test runs a bounded, fixed set of their examples): hostile
# input through the writer and its readers, and bounded reads against the whole history
# (FUZZ_EXAMPLES / 50 simulated fleets each).
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_fuzz.py tests/core/test_redaction.py tests/test_hostile_input.py \
		tests/analytics/test_bounded_answers.py

# The full soak: 1,000,000 events through consume on the local endpoint (long).
soak: $(STAMP) $(NODE_STAMP)
	SOAK_EVENTS=1000000 $(BIN)/python -m pytest -q -s tests/test_soak.py

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/e2e.py
	$(BIN)/python benchmarks/steady.py --rounds 3
	$(BIN)/python benchmarks/state.py --tasks 4000 --other-tasks 2000
	$(BIN)/python benchmarks/history.py
	$(BIN)/python benchmarks/spend.py
	$(BIN)/python benchmarks/bill.py --tasks 2000 --rounds 3
	$(BIN)/python benchmarks/stack_bill.py --compare
	$(BIN)/python benchmarks/record_memory.py

# The Lambda artifact (arm64, Python 3.12) into dist/; see infra/package.py.
package: $(STAMP)
	$(BIN)/python infra/package.py

# Needs real AWS credentials and CODE_BUCKET (an existing bucket for the artifact).
STACK ?= stream-processor
deploy: package
	@test -n "$(CODE_BUCKET)" || (echo "set CODE_BUCKET=<bucket for the Lambda artifact>" && exit 2)
	$(BIN)/python infra/deploy.py deploy --stack $(STACK) --code-bucket $(CODE_BUCKET)

teardown: $(STAMP)
	$(BIN)/python infra/deploy.py teardown --stack $(STACK)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist site
