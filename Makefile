# The two commands of the README. Each creates .venv/ from pinned versions when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-cluster clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test,dashboard]" -c constraints.txt
	touch $(STAMP)

# The demo sweep on the embedded synthetic set (local Ray, CPU), then its report.
# The default is the cross-method sweep (VideoIQ, AR-Net and VA-RED² in one search); SPACE picks another sweep
# file: make demo SPACE=spaces/demo.yaml (VideoIQ alone), demo-arnet.yaml (AR-Net), demo-vared.yaml (VA-RED²).
SPACE ?= spaces/demo-all.yaml
RUN_DIR = $(shell $(PY) -c "import sys; from searchlab.config import load_sweep; s = load_sweep(sys.argv[1]); print(f'{s.storage}/{s.base.name}')" $(SPACE))

demo: $(STAMP)
	$(PY) -m searchlab.sweep $(SPACE) --overwrite
	$(PY) -m searchlab.report $(RUN_DIR)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# The cluster path on one machine (tests/test_cluster.py): a head and worker nodes started with
# `ray start` and token auth, a sweep through the Jobs API, node loss mid-stage. Needs Ray's dashboard
# (ray[default], pinned in jobs/constraints-cluster.txt).
CLUSTER_STAMP := $(VENV)/.cluster-stamp
$(CLUSTER_STAMP): $(STAMP) jobs/constraints-cluster.txt
	$(PY) -m pip install --quiet "ray[default]" -c constraints.txt -c jobs/constraints-cluster.txt
	touch $(CLUSTER_STAMP)

test-cluster: $(CLUSTER_STAMP)
	SEARCHLAB_CLUSTER_TESTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_cluster.py

clean-venv:
	rm -rf $(VENV)
