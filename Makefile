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
# The contract's generator (grpcio-tools 1.70.0: code that old board runtimes load) and the
# oldest runtimes that code must serve on (what Python 3.8 gets), each in a venv of its own.
PROTOC_VENV := $(VENV)/grpc-tools-1.70
GRPC_OLD := $(VENV)/grpc-1.70
MYPY38 := $(VENV)/mypy-1.14

.PHONY: venv test lint typecheck unit demo proto bench soak clean system-packages arm-lab \
	arm-lab-stop FORCE

# Debian packages that benchmarks and tests start for real: a loopback sshd (tests/sshd.py), a
# PostgreSQL server (tests/pg.py), Chromium for the HTML report. As root (CI, a fresh machine) the
# missing ones are installed from the project's own files; otherwise they are named and the
# tests that need them skip, saying why. No service is started: the tests run their own servers.
# The ARM lab (tests/arm_lab.py) builds an arm64 Debian root with debootstrap and runs it through
# qemu-user-static, which binfmt-support registers with the kernel. Pull mode's tests run the CNCF
# distribution registry (docker-registry) with htpasswd logins (apache2-utils makes the bcrypt
# entries); the metrics tests a Prometheus server.
DEB_PACKAGES := openssh-server postgresql chromium python3-venv \
	qemu-user-static debootstrap binfmt-support zstd docker-registry apache2-utils prometheus

venv: $(STAMP)

$(TREE): FORCE
	@mkdir -p $(VENV)
	@find agent boardfacts host proto device_profiles -type f \( -name '*.py' -o -name '*.pyi' -o -name '*.toml' \
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

# The agent and the contract run on the boards' Python 3.8 and 3.9: a second mypy checks them as
# 3.8 (mypy 1.16 is the last that targets 3.8; 1.14.1 is what its venv pins).
typecheck: venv $(MYPY38)/.installed
	$(VENV)/bin/mypy
	$(MYPY38)/bin/mypy --python-version 3.8 --python-executable $(PY) \
	    --cache-dir .mypy_cache/py38 -p edgeopt.agent -p edgeopt.boardfacts -p edgeopt.proto

$(MYPY38)/.installed: | $(STAMP)
	@test -x $(MYPY38)/bin/python || $(PYTHON) -m venv $(MYPY38)
	@$(MYPY38)/bin/python -m pip install --quiet --disable-pip-version-check 'mypy==1.14.1' \
	    > $(MYPY38)/install.log 2>&1 || { cat $(MYPY38)/install.log; exit 1; }
	@touch $@

$(ORT_OLD)/.installed: | $(STAMP)
	@test -x $(ORT_OLD)/bin/python || $(PYTHON) -m venv $(ORT_OLD)
	@$(ORT_OLD)/bin/python -m pip install --quiet --disable-pip-version-check \
	    'onnxruntime==1.16.3' 'numpy<2' > $(ORT_OLD)/install.log 2>&1 \
	    || { cat $(ORT_OLD)/install.log; exit 1; }
	@touch $@

$(PROTOC_VENV)/.installed: | $(STAMP)
	@test -x $(PROTOC_VENV)/bin/python || $(PYTHON) -m venv $(PROTOC_VENV)
	@$(PROTOC_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    'grpcio-tools==1.70.0' > $(PROTOC_VENV)/install.log 2>&1 \
	    || { cat $(PROTOC_VENV)/install.log; exit 1; }
	@touch $@

$(GRPC_OLD)/.installed: | $(STAMP)
	@test -x $(GRPC_OLD)/bin/python || $(PYTHON) -m venv $(GRPC_OLD)
	@$(GRPC_OLD)/bin/python -m pip install --quiet --disable-pip-version-check \
	    'grpcio==1.70.0' 'grpcio-health-checking==1.70.0' 'grpcio-reflection==1.70.0' \
	    'protobuf==5.29.6' 'numpy<2' 'onnxruntime==1.19.2' > $(GRPC_OLD)/install.log 2>&1 \
	    || { cat $(GRPC_OLD)/install.log; exit 1; }
	@touch $@

unit: venv $(ORT_OLD)/.installed $(PROTOC_VENV)/.installed $(GRPC_OLD)/.installed system-packages
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

demo: venv
	@bash scripts/demo.sh

proto: venv $(PROTOC_VENV)/.installed
	$(PY) scripts/gen_proto.py

# policy-rc.d answering 101 is Debian's way to keep a package's service (postgresql's cluster,
# sshd) from starting on install; one is put in place only for the install if there is none.
system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed \
	    || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "missing Debian packages:$$missing (as root, 'make system-packages' installs them);" \
	    "the tests that need them will skip"; \
	  exit 0; \
	fi; \
	echo "installing Debian packages:$$missing (log: $(VENV)/apt.log)"; mkdir -p $(VENV); \
	rcd=/usr/sbin/policy-rc.d; \
	if [ ! -e $$rcd ]; then \
	  trap 'rm -f '$$rcd EXIT; printf '#!/bin/sh\nexit 101\n' > $$rcd; chmod 755 $$rcd; \
	fi; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } \
	  > $(VENV)/apt.log 2>&1 || { cat $(VENV)/apt.log; exit 1; }

bench: venv system-packages
	$(PY) benchmarks/agent_startup.py
	$(PY) benchmarks/compression.py
	$(PY) benchmarks/corpus.py
	$(PY) benchmarks/classic.py
	$(PY) benchmarks/deploy.py
	$(PY) benchmarks/agent_bench.py
	$(PY) benchmarks/planner_table.py
	$(PY) benchmarks/tuning.py
	$(PY) benchmarks/mixed.py
	$(PY) benchmarks/vs_olive.py
	$(PY) benchmarks/fleet.py
	$(PY) benchmarks/paired.py
	$(PY) benchmarks/pull.py
	$(PY) benchmarks/board_apps.py
	$(PY) benchmarks/ssh.py
	$(PY) benchmarks/arm_lab.py
	$(PY) benchmarks/hardening.py
	$(PY) benchmarks/host_timing.py

# The long versions of the hardening tests (issue 16): many clients for minutes, thousands of
# fuzz cases, 200 SIGKILLs. Their JSON reports go to $(SOAK_REPORTS); benchmarks/hardening.py
# then writes them with its own figures into RESULTS.md, and the target fails if a test did.
SOAK_REPORTS := $(VENV)/soak
soak: venv system-packages
	@rm -rf $(SOAK_REPORTS); mkdir -p $(SOAK_REPORTS); failed=""; \
	EDGEOPT_LOAD_CLIENTS=128 EDGEOPT_LOAD_SECONDS=300 EDGEOPT_LOAD_REPORT=$(SOAK_REPORTS)/load.jsonl \
	  $(PY) -m pytest -q -p no:cacheprovider --timeout 0 tests/agent/test_load.py \
	  || failed="$$failed load"; \
	EDGEOPT_FUZZ_EXAMPLES=3000 EDGEOPT_FUZZ_REPORT=$(SOAK_REPORTS)/fuzz.jsonl \
	  $(PY) -m pytest -q -p no:cacheprovider --timeout 0 tests/agent/test_fuzz_rpc.py \
	  || failed="$$failed fuzz"; \
	EDGEOPT_FUZZ_EXAMPLES=2000 EDGEOPT_FUZZ_SEED=$$RANDOM EDGEOPT_FUZZ_REPORT=$(SOAK_REPORTS)/host_fuzz.jsonl \
	  $(PY) -m pytest -q -p no:cacheprovider --timeout 0 tests/cli/test_fuzz_cli.py \
	  || failed="$$failed host-fuzz"; \
	EDGEOPT_FAULT_KILLS=200 EDGEOPT_FAULT_REPORT=$(SOAK_REPORTS)/faults.jsonl \
	  $(PY) -m pytest -q -p no:cacheprovider --timeout 0 tests/integration/test_kill_faults.py \
	  || failed="$$failed faults"; \
	$(PY) benchmarks/hardening.py --reports $(SOAK_REPORTS) || failed="$$failed benchmark"; \
	if [ -n "$$failed" ]; then echo "soak failed:$$failed"; exit 1; fi

# An emulated Raspberry Pi 4 (Debian bullseye arm64, Python 3.9, under qemu-user) running the
# real agent on its own address; built once (about 3 minutes), then restored from a cache in
# seconds. It keeps running and the last line printed is EDGEOPT_INVENTORY=PATH naming it
# `arm-pi4`. Needs root.
arm-lab: venv system-packages
	@$(PY) -m tests.arm_lab start

arm-lab-stop: venv
	@$(PY) -m tests.arm_lab stop

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache

FORCE:
