# The two commands of the README: `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEB_TOOLS := sipp:sip-tester espeak-ng:espeak-ng sox:sox baresip:baresip-core kamailio:kamailio svmap:sipvicious pg_ctlcluster:postgresql

.PHONY: run test venv deb-tools prompts lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian tools the tests drive (sipp and baresip callers, espeak-ng speech, sox conversion); installed only when missing.
deb-tools:
	@missing=""; for pair in $(DEB_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

prompts: $(STAMP)
	$(BIN)/python -m ivr.prompts dialplans/demo.yaml

run: $(STAMP)
	$(BIN)/ivr serve

test: $(STAMP) deb-tools
	$(BIN)/ruff check ivr tests bench
	$(BIN)/ruff format --check ivr tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ivr tests bench
	$(BIN)/ruff format --check ivr tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Calls per core (issue 10): SIP load with marked RTP through `ivr serve` to a counting recognizer sink, beside the
# receive-only limit and a pyVoIP baseline; table on stdout, JSON in var/bench/. Quick: make bench-calls ARGS="--calls 500 --seconds 10"
bench-calls: $(STAMP)
	$(BIN)/python bench/calls_per_core.py $(ARGS)
