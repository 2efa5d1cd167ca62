# coffee-ml: `make run` (the quickstart pipeline) and `make test` (all tests) are the whole set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Override for a GPU build: make setup TORCH_SPEC="torch==2.13.0 --index-url <CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
PARAMS ?= params/quickstart.yaml
export MPLBACKEND := Agg

.PHONY: setup run test bench lab clean-outputs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

run: setup
	$(BIN)/coffee-ml run $(PARAMS)

test: setup
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/python -m pytest tests
	# the notebooks save models and load the store: into a throw-away outputs folder, never the user's
	tmp=$$(mktemp -d) && COFFEE_ML_OUTPUTS=$$tmp $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		-p no:cacheprovider notebooks; status=$$?; rm -rf $$tmp; exit $$status

bench: setup
	$(BIN)/python tests/benchmarks/run_all.py

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean-outputs:
	rm -rf outputs/runs outputs/store
