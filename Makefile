# The two commands of README.md: `make demo` and `make test`. Both build or refresh .venv when
# needed and are fast when nothing changed. Everything a fresh machine needs is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
STAMP := $(VENV)/.edgeopt-installed
# Strict editable installs link files, not folders: a new module is only visible after a reinstall,
# so the list of package files is part of what the install depends on.
TREE := $(VENV)/.edgeopt-tree
PYTEST_ARGS ?=
# An old ONNX Runtime, as boards with glibc 2.17 have, to load --target-ort artifacts for real.
ORT_OLD := $(VENV)/ort-1.16.3

.PHONY: venv test lint typecheck unit demo proto bench clean system-packages FORCE

# Debian packages that benchmarks and tests start for real (a loopback sshd), installed when
# missing: CI and a fresh machine get them from the project's own files.
DEB_PACKAGES := openssh-server

venv: $(STAMP)

$(TREE): FORCE
	@mkdir -p $(VENV)
	@find agent host proto device_profiles -type f \( -name '*.py' -o -name '*.pyi' -o -name '*.toml' \
	    -o -name '*.proto' -o -name py.typed \) | LC_ALL=C sort > $@.new
	@cmp -s $@.new $@ || mv $@.new $@; rm -f $@.new

$(STAMP): pyproject.toml constraints.txt $(TREE)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing edgeopt and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(PIP) install --upgrade 'pip>=25.1' && \
	   $(PIP) install -c constraints.txt -e '.[host,dev]' --config-settings editable_mode=strict; \
	 } > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

$(ORT_OLD)/.installed: | $(STAMP)
	@test -x $(ORT_OLD)/bin/python || $(PYTHON) -m venv $(ORT_OLD)
	@$(ORT_OLD)/bin/python -m pip install --quiet --disable-pip-version-check \
	    'onnxruntime==1.16.3' 'numpy<2' > $(ORT_OLD)/install.log 2>&1 \
	    || { cat $(ORT_OLD)/install.log; exit 1; }
	@touch $@

unit: venv $(ORT_OLD)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

demo: venv
	@bash scripts/demo.sh

proto: venv
	$(PY) scripts/gen_proto.py

system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; mkdir -p $(VENV); \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } \
	    > $(VENV)/apt.log 2>&1 || { cat $(VENV)/apt.log; exit 1; }; \
	fi

bench: venv system-packages
	$(PY) benchmarks/agent_startup.py
	$(PY) benchmarks/compression.py
	$(PY) benchmarks/corpus.py
	$(PY) benchmarks/deploy.py
	$(PY) benchmarks/agent_bench.py
	$(PY) benchmarks/planner_table.py
	$(PY) benchmarks/tuning.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache

FORCE:
