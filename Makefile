# Two commands do all set-up: `make lab` opens the course, `make test` checks it.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-stamp
# `make install EXTRAS=gpu` on a machine with an NVIDIA GPU: TensorFlow's CUDA build for Keras
EXTRAS ?= all
# matplotlib's font list lives with the environment whose fonts it lists: a list shared through
# ~/.cache and written by another, since deleted, environment lacks the fonts of this one, and
# every plot then prints font warnings into the notebook's outputs.
export MPLCONFIGDIR ?= $(abspath $(VENV))/matplotlib

.PHONY: lab test test-lib test-notebooks check check-claims install clean refresh course site test-gpu

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

# Jupyter refuses to start as root (Docker, many cloud machines) unless told to, and on a machine
# without a display there is no browser to open: it prints the URL to open instead.
# Extra options for the server: make lab LAB_ARGS="--port=8899 --ip=0.0.0.0"
LAB_ARGS ?=
lab: $(STAMP)
	TLCOURSE_PROFILE=$${TLCOURSE_PROFILE:-quick} $(VENV)/bin/jupyter lab notebooks/ \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) \
	  $$([ "$$(uname -s)" = Linux ] && [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ] && echo --no-browser) $(LAB_ARGS)

test: test-lib test-notebooks

test-lib: $(STAMP)
	TLCOURSE_PROFILE=quick $(PY) -m pytest tests/

# The inner loop while changing the library: every test not marked slow (about a minute and a
# half on 2 cores); `make test` and CI run them all.
check: $(STAMP)
	TLCOURSE_PROFILE=quick $(PY) -m pytest -m "not slow" -q tests/

# On a machine with a GPU (install with `make install EXTRAS=gpu`): the GPU tests of every training
# loop in both frameworks, then the GPU timings of the loop and extraction benchmarks.
test-gpu: $(STAMP)
	$(VENV)/bin/tlcourse doctor
	TLCOURSE_PROFILE=quick $(PY) -m pytest -m gpu -rs tests/
	$(PY) benchmarks/loop_overhead.py
	$(PY) benchmarks/feature_extraction.py

test-notebooks: $(STAMP)
	TLCOURSE_PROFILE=quick $(PY) -m pytest --nbval notebooks/

# Every chapter's self-checks must hold on any run, not only on the stored one: run each notebook
# with another seed, then with another seed on one thread, and list the asserts that fail.
check-claims: $(STAMP)
	status=0; \
	TLCOURSE_PROFILE=quick $(VENV)/bin/tlcourse claims --seed 1 || status=1; \
	TLCOURSE_PROFILE=quick $(VENV)/bin/tlcourse claims --seed 2 --threads 1 || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache site

# Run every chapter headless (quick unless TLCOURSE_PROFILE says otherwise), print the times, and
# write the executed course as HTML pages with navigation into site/: an instructor's dry run.
course: $(STAMP)
	$(VENV)/bin/tlcourse course --execute --out site

# The course site from the outputs stored in the notebooks (no execution): site/index.html
site: $(STAMP)
	$(VENV)/bin/tlcourse course --out site

# Re-run one notebook top to bottom in the quick profile and store its outputs: make refresh NB=notebooks/x.ipynb
refresh: $(STAMP)
	test -n "$(NB)" || (echo "usage: make refresh NB=notebooks/NAME.ipynb" && exit 2)
	TLCOURSE_PROFILE=quick $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$(NB)"
