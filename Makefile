# The two commands of the README. Each creates .venv/ from pinned versions when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]" -c constraints.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m searchlab.demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/data_throughput.py

clean-venv:
	rm -rf $(VENV)
