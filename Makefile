# hashpilot: developer and firmware-build entry points.
#   make setup        .venv with `pip install -e .[test]`, Mosquitto from Debian if missing, the
#                     MicroPython Unix port + mpy-cross from build/micropython (cached; idempotent)
#   make test         setup, then the whole test suite (what CI runs)
#   make test-fast    setup, then the suite without the tests marked slow or e2e (about 2 minutes)
#   make demo         .venv with `pip install -e .` and Mosquitto only, then `hashpilot demo`
#   make build        PyInstaller one-folder + one-file for this machine, then test the binaries
#   make build-armhf  the same for armhf inside an emulated Debian root, binary tested through
#                     qemu-user (slow; make build-aarch64 / make build-arm ARM=aarch64 likewise)
#   make package      firmware tarball build/out/hashpilot-<version>-<arch>.tar.gz (+ verification)
#   make bench        benchmark figures (UART sweep, binary size and start-up)
#   make mpy-heap     MicroPython agent: heap over a simulated hour (256 KB), .mpy size
#   make bench-operator  curtail 8 simulated rigs; watch/dashboard figures at 5 000 rigs
# Variables: PYTHON (default python3), ARCH (package architecture, default this machine),
#            MODE (package binary: onedir (default) or onefile), ARM (build-arm: armhf|aarch64).

PYTHON ?= python3
VENV := .venv
ARCH ?= $(shell $(PYTHON) -c 'import platform; m = platform.machine(); print({"armv7l": "armhf", "arm64": "aarch64"}.get(m, m))')
MODE ?= onedir
ARM ?= armhf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.hashpilot-setup

.PHONY: bench-operator mpy-heap bench-fleet fuzz fuzz-api setup setup-demo test test-fast demo build build-armhf build-arm build-aarch64 package bench clean-build

setup: $(STAMP)

# Debian packages as command:package pairs; only the missing commands' packages are installed.
# The demo needs only Mosquitto; the tests need the rest too (gcc builds the MicroPython Unix
# port, build/micropython/build.sh).
DEMO_TOOLS := mosquitto:mosquitto
TEST_TOOLS := $(DEMO_TOOLS) mosquitto_sub:mosquitto-clients shellcheck:shellcheck \
	checkbashisms:devscripts busybox:busybox systemd-analyze:systemd gcc:gcc \
	chromium:chromium prometheus:prometheus tmux:tmux \
	victoria-metrics:victoria-metrics nats-server:nats-server
DEMO_STAMP := $(VENV)/.hashpilot-demo

define install_missing
	@missing=""; for tp in $(1); do command -v $${tp%%:*} >/dev/null 2>&1 || missing="$$missing $${tp#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "setup: installing Debian packages:$$missing"; \
		$(SUDO) apt-get install -y --no-install-recommends $$missing || \
		{ $(SUDO) apt-get update && \
		  $(SUDO) apt-get install -y --no-install-recommends $$missing; }; \
	fi
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
endef

$(STAMP): setup.cfg pyproject.toml build/micropython/build.sh build/micropython/micropython-1.27.0-unix-src.tar.xz
	$(call install_missing,$(TEST_TOOLS))
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[test,fleet]'
	build/micropython/build.sh
	@touch $(STAMP) $(DEMO_STAMP)
	@echo "setup: $(VENV) ready ($$($(VENV)/bin/python --version)); run make test"

setup-demo: $(DEMO_STAMP)

$(DEMO_STAMP): setup.cfg pyproject.toml
	$(call install_missing,$(DEMO_TOOLS))
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -e .
	@touch $(DEMO_STAMP)

test: setup
	$(VENV)/bin/python -m pytest

test-fast: setup
	$(VENV)/bin/python -m pytest -m 'not slow and not e2e' -x

demo: setup-demo
	$(VENV)/bin/hashpilot demo

build:
	nice -n 10 build/build.sh
	build/test-binary.sh build/out/$(ARCH)/onefile/hashpilot
	build/test-binary.sh build/out/$(ARCH)/onedir/hashpilot

build-armhf:
	nice -n 10 build/build-arm.sh armhf
	build/test-binary-arm.sh armhf onedir

build-aarch64:
	nice -n 10 build/build-arm.sh aarch64
	build/test-binary-arm.sh aarch64 onedir

build-arm:
	nice -n 10 build/build-arm.sh $(ARM)
	build/test-binary-arm.sh $(ARM) onedir

package:
	@[ -f build/out/$(ARCH)/build-info.json ] || $(MAKE) build
	$(PYTHON) build/package.py --arch $(ARCH) --mode $(MODE)

# command fuzz, long form: 100 000 hostile commands + a flood through Mosquitto to a real agent
# (docs/security.md); the short form (3 000) runs in make test
fuzz: setup
	HASHPILOT_FUZZ_N=$${HASHPILOT_FUZZ_N:-100000} nice -n 10 $(VENV)/bin/python -m pytest -q -s -m slow tests/test_fuzz_commands.py

# cgminer API fuzz, long form: 20000 malformed requests plus the flood (docs/cgminer-api.md)
fuzz-api: setup
	HASHPILOT_API_FUZZ_N=20000 nice -n 10 $(VENV)/bin/python -m pytest -q -s tests/test_api_e2e.py -k fuzz

# fleet scale, long form: 50 000 rigs at real rates for 5 minutes, then the 3-node cluster
# failover under 20 000 rigs on 8 site brokers with uplinks, the stream leader's node SIGKILLed
# (docs/fleet-scale.md)
bench-fleet: setup
	HASHPILOT_BENCH_FLEET=1 nice -n 10 $(VENV)/bin/python -m pytest -q -s tests/test_fleet_bench.py tests/test_fleet_cluster.py -k 'fifty_thousand or twenty_thousand'

# operator tools, long form: curtail a site of 8 simulated rigs with their own seeds (reference
# curves from the oracle), then the watch/dashboard figures at 5 000 rigs (docs/fleet.md)
bench-operator: setup
	HP_CURTAIL_RIGS=8 nice -n 10 $(VENV)/bin/python -m pytest -q -s -m slow tests/test_fleet_curtail.py -k bigger
	nice -n 10 $(VENV)/bin/python -m fleet.viewbench --rigs 5000 --chromium

# MicroPython agent: an hour of simulated time on a simulated Gamma under a 256 KB heap (about
# 2 minutes), then the .mpy size of the agent (docs/micropython.md)
mpy-heap: setup
	HASHPILOT_MPY_HOUR=1 nice -n 10 $(VENV)/bin/python -m pytest -q -s -m slow tests/test_mpy_agent.py -k hour
	$(VENV)/bin/python build/micropython/stage.py --target esp32

bench: setup
	$(VENV)/bin/hashpilot bench sweep --model S21
	@if [ -x build/out/$(ARCH)/onefile/hashpilot ]; then build/bench-binary.sh $(ARCH); \
	else echo "bench: no build in build/out/$(ARCH) (make build) - binary figures skipped"; fi

clean-build:
	rm -rf build/out build/cache/work-*
