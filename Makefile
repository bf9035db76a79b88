# Two commands for a fresh machine:
#   make demo   -> create .venv, install, run the main job: sail-vl demo (the paper in miniature, a report in runs/demo)
#   make test   -> create .venv, install, run every check (export sync, clean notebooks, README, lint, nbdev-test, pytest)
# torch is installed first at a pinned version (the CPU wheel on our machines) and kept as a constraint.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install demo test lint export clean-nbs readme outputs

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	echo "$(TORCH)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	touch $@

demo: install
	$(OFFLINE) $(VENV)/bin/sail-vl demo --out runs/demo --force

test: install
	$(OFFLINE) VENV=$(VENV) bash tools/check.sh

lint: install
	$(VENV)/bin/ruff check --select F sail_vl_nb tests benchmarks tools

export: install
	$(VENV)/bin/nbdev-export && $(VENV)/bin/nbdev-clean && $(PY) tools/readme.py

readme: install
	$(PY) tools/readme.py

# Run the notebooks and write back their figures, tables and printed results (CONTRIBUTING.md, "Outputs"):
# all of them, or `make outputs NB="nbs/05_evaluate.ipynb nbs/07_data.ipynb"`.
outputs: install
	$(OFFLINE) MPLBACKEND=Agg $(PY) tools/outputs.py $(NB)
