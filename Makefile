# coffee-ml: `make run` (the quickstart pipeline) and `make test` (all tests) are the whole set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Override for a GPU build: make setup TORCH_SPEC="torch==2.13.0 --index-url <CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
PARAMS ?= params/quickstart.yaml
# Kernels (make run, make lab, nbval) draw inline figures: an MPLBACKEND from the shell (Agg on a
# headless box) would leave every notebook and report without charts. The pytest process itself
# stays headless: tests/conftest.py selects Agg for it.
unexport MPLBACKEND

.PHONY: setup run test format bench lab serve clean-outputs

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
	$(BIN)/ruff format --check lib tests
	$(BIN)/ruff check lib tests
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/python -m pytest tests
	# the notebooks save models and load the store: into a throw-away outputs folder and store, never
	# the user's (nor a server named in the shell or .env); notebooks/*.ipynb only, no checkpoints
	tmp=$$(mktemp -d) && COFFEE_ML_OUTPUTS=$$tmp COFFEE_ML_STORE=$$tmp/store CLICKHOUSE_HOST= \
		$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/*.ipynb; \
		status=$$?; rm -rf $$tmp; exit $$status

# what make test checks, applied: the formatter, then the linter's safe fixes
format: setup
	$(BIN)/ruff format lib tests
	$(BIN)/ruff check --fix lib tests

bench: setup
	$(BIN)/python tests/benchmarks/run_all.py

# The project's environment is the kernel: its kernel specs come first on JUPYTER_PATH, so a
# `python3` kernel installed for another Python (~/.local/share/jupyter) cannot take over.
# LAB_ARGS go to JupyterLab as they are, e.g. make lab LAB_ARGS="--no-browser --port 8890 --IdentityProvider.token=abc";
# as root (a container, CI) Jupyter refuses to start without --allow-root, so it is added there.
LAB_ARGS ?=
lab: setup
	JUPYTER_PATH=$(abspath $(VENV))/share/jupyter$${JUPYTER_PATH:+:$$JUPYTER_PATH} \
		$(BIN)/jupyter lab --notebook-dir=notebooks $$([ "$$(id -u)" -eq 0 ] && echo --allow-root) $(LAB_ARGS)

# The platform's ML service on 127.0.0.1:8000 (docs at /docs, the trading view at /);
# e.g. make serve SERVE_ARGS="--port 8080 --workers 2"
SERVE_ARGS ?=
serve: setup
	$(BIN)/coffee-ml serve $(SERVE_ARGS)

clean-outputs:
	rm -rf outputs/runs outputs/store
