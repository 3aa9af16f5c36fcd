# Two entry points for a fresh clone (each sets itself up on first use):
#   make demo   run the main job on the bundled COCO sample (offline, CPU is enough)
#   make test   run every test: the notebooks' inline tests (nbdev_test) and tests/ (pytest)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.cutler_nb-installed
export HF_HUB_OFFLINE = 1
export PYTHONUNBUFFERED = 1
export MPLBACKEND = Agg

.PHONY: install demo test test-nbs test-py export check-export clean

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip wheel setuptools
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: the thesis's MaskCut-filter study with its CPU defaults (see README).
demo: $(STAMP)
	cd nbs/experiments && ../../$(BIN)/papermill maskcut_filter.ipynb ../../outputs/maskcut_filter.ipynb --cwd . $(PM_ARGS)

test: test-nbs test-py

test-nbs: $(STAMP)
	$(BIN)/nbdev_test --path nbs --n_workers 2 --do_print --timing

test-py: $(STAMP)
	$(BIN)/python -m pytest -q tests -n 2 --durations=15

export: $(STAMP)
	$(BIN)/nbdev_export

# Fails when the committed package is not the export of the committed notebooks.
check-export: $(STAMP)
	$(BIN)/nbdev_export
	git diff --exit-code --stat -- cutler_nb

clean:
	rm -rf $(VENV) build dist *.egg-info
