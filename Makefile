# The two commands a newcomer needs: `make demo` and `make test`. Both install first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= test,demo
# Installing the face stack never compiles dlib: dlib-bin is a prebuilt wheel.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[$(EXTRAS)]'
	$(PIP) --no-deps 'face_recognition==1.3.0'
	$(PY) -c 'import face_recognition, dlib, cv2, gpiozero, sqlite_utils'
	touch $@

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m lotcontrol.demo

bench: install
	$(VENV)/bin/lotcontrol bench

clean:
	rm -rf $(VENV) build *.egg-info
