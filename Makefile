# ctrfs developer entry points. Everything that needs containers runs as root on Debian 12;
# scripts/services.sh installs what is missing and starts only the daemons that are not running.
PYTHON ?= python3
VENV := .venv
SERVICES := scripts/services.sh
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: test-no-mount-api help venv deps services services-stop test demo bench lint pyz

help:
	@echo "make demo        start a shell-less container and look inside it with ctrfs"
	@echo "make test        install what is missing, start services, run the whole test suite"
	@echo "make bench       benchmarks (ratios against docker measured in the same run)"
	@echo "make lint        ruff + mypy + import-linter (the one-way import graph)"
	@echo "make pyz         dist/ctrfs.pyz: ctrfs and its dependencies in one file (python3 dist/ctrfs.pyz ARGS)"
	@echo "make venv        .venv with ctrfs installed editable, with test tools"
	@echo "make services    install and start dockerd/containerd/tracefs (services-stop undoes it)"

# setup.py builds ctrfs's C core (src/ctrfs/_native.c) in place: a change to it reinstalls.
$(VENV)/.installed: pyproject.toml setup.py src/ctrfs/_native.c
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || $(SERVICES) install
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

deps:
	$(SERVICES) install

services:
	$(SERVICES) start

services-stop:
	$(SERVICES) stop

# services.sh run stops what it started, also when pytest fails; a dockerd that was already
# running is left alone. pytest's exit status is make's: 5 ("no tests collected") fails too,
# since a suite that selected nothing has checked nothing. A full run (no PYTEST_ARGS) then
# runs tests/security again without the mount API (CTRFS_MOUNT_API=0: no private clone of the
# root mount; the fallbacks of ctrfs.views).
# Byte-compiled first: the suite starts ctrfs thousands of times, and with PYTHONDONTWRITEBYTECODE
# set (as on this machine) each start would otherwise compile the package again.
# Security tests that never reach ctrfs.views (the one place CTRFS_MOUNT_API=0 changes; exec,
# browse and the maps parser do not use it: tests/unit/test_views_users.py keeps this true) are
# left out of the second pass.
NO_VIEW_TESTS := test_exec_security.py test_browse_hostile.py test_fuzz_proc_maps.py

test: deps venv
	$(VENV)/bin/python -m compileall -q src >/dev/null
	$(SERVICES) run $(VENV)/bin/pytest $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ]; then CTRFS_MOUNT_API=0 $(SERVICES) run $(VENV)/bin/pytest tests/security \
		$(addprefix --ignore=tests/security/,$(NO_VIEW_TESTS)); fi

test-no-mount-api: deps venv
	CTRFS_MOUNT_API=0 $(SERVICES) run $(VENV)/bin/pytest tests/security $(PYTEST_ARGS)

demo: deps venv
	$(SERVICES) run $(VENV)/bin/python scripts/demo.py

# Byte-compile ctrfs first: with PYTHONDONTWRITEBYTECODE set (as on this machine) every `ctrfs`
# start would otherwise recompile the package, which a pip-installed ctrfs never does.
bench: deps venv
	$(VENV)/bin/python -m compileall -q src
	$(SERVICES) run $(VENV)/bin/python bench/run.py $(BENCH_ARGS)

# One zip application, run by any CPython >= 3.11 with nothing installed; the node side of
# `kubectl ctrfs` ships this file (scripts/build_pyz.py says how it is built).
pyz: venv
	$(VENV)/bin/python scripts/build_pyz.py

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# ctrfs diff vs docker diff over a 200k-file image (CTRFS_BENCH_DIFF_FILES to change)
bench-diff: deps venv
	$(VENV)/bin/python -m compileall -q src
	$(SERVICES) run $(VENV)/bin/python bench/run.py diff $(BENCH_ARGS)

# The adversarial tests at full size: 100,000 race operations per resolver, 1,000,000 entries in
# one directory (tests/security/test_race.py, test_hostile_trees.py). -s prints the race counts.
.PHONY: stress
stress: deps venv
	CTRFS_RACE_OPS=100000 CTRFS_HOSTILE_ENTRIES=1000000 \
	$(SERVICES) run $(VENV)/bin/pytest -s tests/security/test_race.py tests/security/test_hostile_trees.py $(PYTEST_ARGS)
