# The two commands a newcomer needs: `make demo` and `make test`. Both install first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= test,demo
# Installing the face stack never compiles dlib: dlib-bin is a prebuilt wheel.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install test test-fast demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	# The MQTT tests start their own Mosquitto on 127.0.0.1; as root, install Debian's package for them,
	# otherwise say how (they skip, saying why, where the binary is missing).
	if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto)) \
			|| echo "mosquitto could not be installed: the MQTT tests will skip"; \
		else \
			echo "mosquitto is missing, so the MQTT tests will skip: install it with  sudo apt-get install -y mosquitto"; \
		fi; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[$(EXTRAS)]'
	$(PIP) --no-deps 'face_recognition==1.3.0'
	$(PY) -c 'import face_recognition, dlib, cv2, gpiozero, sqlite_utils'
	touch $@

# Real-time tests (camera scenarios, a real database lock) mostly wait on the clock: four workers
# run them side by side (pytest-xdist), which keeps the whole suite under two minutes on 2 cores.
test: install
	$(PY) -m pytest -q -n 4

# Everything that needs no camera and no real seconds: the controller on the simulated clock.
test-fast: install
	$(PY) -m pytest -q -n 2 -m "not slow"

demo: install
	$(PY) -m lotcontrol.demo

bench: install
	$(VENV)/bin/lotcontrol bench

clean:
	rm -rf $(VENV) build *.egg-info
