# Baton: `make run` starts everything and shows a run; `make test` runs the suite.
# Both install what is missing first (Python 3.11 venv, the project, SecantusDB's own venv,
# Apache Kafka's jars from Maven Central): `make run` only what running needs, the other
# targets also the dev extras (dev-deps).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SECANTUS := .baton/secantus-venv/bin/secantusd-py
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
KAFKA_LIBS := .baton/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.installed-$(shell cat infra/kafka/pom.xml | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.dev-installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: deps dev-deps run test lint audit chaos soak bench fuzz observability browser schemas clean stop

deps: $(STAMP) $(SECANTUS) $(KAFKA_STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Baton needs Python 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local]'
	@rm -f $(VENV)/.installed-*
	@touch $@

dev-deps: deps $(DEV_STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.dev-installed-*
	@touch $@

$(SECANTUS):
	@mkdir -p .baton
	$(PYTHON) -m venv .baton/secantus-venv
	.baton/secantus-venv/bin/pip install --quiet SecantusDB==0.7.0b3

# The embedded Kafka broker: its jars, resolved by Maven into an ignored folder (a second run
# costs nothing, and works offline once ~/.m2 holds them). Java 17 and Maven come from
# Debian's packages when missing and this is root; otherwise the error says what to install.
$(KAFKA_STAMP): infra/kafka/pom.xml
	@command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		  openjdk-17-jre-headless maven; } || \
		{ echo "The embedded Kafka needs Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven)" >&2; exit 1; }
	@rm -rf $(KAFKA_LIBS)
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	@touch $@

run: deps
	$(PY) -m infra.run $(if $(FRESH),--fresh)

test: dev-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: dev-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy contracts shared services

# Known vulnerabilities in the installed dependencies (PyPI's advisory database, through
# pip-audit from the dev extras); Baton itself is installed editable and is skipped.
audit: dev-deps
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

schemas: dev-deps
	$(PY) -m contracts.generate

chaos: dev-deps
	$(PY) -m pytest -m chaos -p no:randomly $(PYTEST_ARGS)

soak: dev-deps
	$(PY) -m pytest -m soak $(PYTEST_ARGS)

bench: dev-deps
	$(PY) -m pytest -m bench -s $(PYTEST_ARGS)

# Schemathesis against each service's OpenAPI document (BATON_FUZZ_EXAMPLES per operation).
fuzz: dev-deps
	$(PY) -m pytest -m fuzz -p no:randomly $(PYTEST_ARGS)

# The Work Guide in headless Chromium: Debian's chromium (installed only when missing) driven
# by the playwright package from the dev extras; no browser is downloaded (no `playwright install`).
browser: dev-deps
	@test -x /usr/bin/chromium || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	@$(PY) -c 'import playwright' 2>/dev/null || $(PY) -m pip install --quiet 'playwright>=1.50,<2'
	$(PY) -m pytest -m browser $(PYTEST_ARGS)

# Prometheus rules and the real-Prometheus e2e test. Debian's prometheus package brings
# promtool and prometheus; installed here only when missing (as root, no sudo).
observability: dev-deps
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus)
	promtool check config infra/prometheus/prometheus.yml
	promtool check rules infra/prometheus/rules/*.yml
	promtool test rules infra/prometheus/tests/*.yml
	$(PY) -m pytest -m observability $(PYTEST_ARGS)

stop:
	-$(PY) -m infra.embedded stop

clean: stop
	rm -rf .baton/data .baton/test-* .pytest_cache
