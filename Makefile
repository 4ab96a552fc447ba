# smtestbed: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the test suite talks to (real servers, real tools).
APT_TEST_PACKAGES ?= openssl slapd ldap-utils mosquitto mosquitto-clients chromium
PYTEST_ARGS ?=
# Test workers (pytest-xdist): integration tests mostly wait on processes and sockets.
PYTEST_WORKERS ?= 2
# Numba caches compiled kernels beside their sources, which for the strict editable install
# is the link tree under build/ that every `make install` rebuilds: keep the cache outside
# it, so a second `make demo` or `make test` does not compile every kernel again.
export NUMBA_CACHE_DIR ?= $(CURDIR)/build/numba-cache

.PHONY: install system-deps lint typecheck unit test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Strict editable install: the package-dir mapping (services/ -> smtestbed.services,
# proto/ -> smtestbed.proto) is laid out as a link tree that mypy can follow too.
install: $(BIN)/python
	@mkdir -p build
	flock build/.install.lock $(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=strict

system-deps:
	@missing=""; for p in $(APT_TEST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: install
	$(BIN)/ruff check services proto tests benchmarks
	$(BIN)/ruff format --check services proto tests benchmarks

typecheck: install
	$(BIN)/mypy -p smtestbed.services -p smtestbed.proto
	$(BIN)/mypy tests benchmarks

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# Kernel tests run a second time with the JIT off, so the kernels' Python bodies are
# exercised (and covered) exactly as Numba compiles them.
KERNEL_TESTS := tests/unit/sensorfarm tests/unit/channel tests/unit/proto/test_wmbus_speedpath.py

test: install system-deps lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	NUMBA_DISABLE_JIT=1 $(BIN)/pytest -q $(KERNEL_TESTS)

# The main job: every scenario and its negative control, each on a fresh testbed on this
# machine (no outside server), then the results table and smtb-report/ (results.json,
# junit.xml, report.html with plots). The first start compiles the Numba kernels (about
# half a minute). A live neighbourhood with the dashboard: smtb up --config deploy/testbed.toml
DEMO_ARGS ?=
demo: install
	$(BIN)/smtb demo --report smtb-report $(DEMO_ARGS)

bench: install
	$(BIN)/python benchmarks/bus.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
