# The two commands of the README. Each creates .venv/ from pinned versions when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]" -c constraints.txt
	touch $(STAMP)

# The demo sweep on the embedded synthetic set (local Ray, CPU), then its report.
demo: $(STAMP)
	$(PY) -m searchlab.sweep spaces/demo.yaml --overwrite
	$(PY) -m searchlab.report runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

clean-venv:
	rm -rf $(VENV)
