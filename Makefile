# Two entry points for a fresh machine with Python 3.11 and pip:
#   make demo   install everything into .venv and run the main job on its embedded default
#   make test   install everything into .venv and run the test suite
# Pins live in setup.cfg (install_requires), with the reason for each.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-slow clean

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(None if sys.version_info[:2] == (3, 11) else "mobile-compress needs Python 3.11, $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	@echo "installing the pinned stack into $(VENV) (about 1.5 GB the first time; see setup.cfg for why each pin exists)"
	$(BIN)/python -m pip install --progress-bar off -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/mobile-compress demo

# pytest's exit status is kept in $(VENV)/pytest-exit-status for .ci/run, since make
# reports every failing recipe as status 2.
test: install
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; echo $$status > $(VENV)/pytest-exit-status; exit $$status

test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
