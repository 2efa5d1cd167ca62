"""One declaration of every notebook parameter (coffee_ml.parameters), read by the notebooks, the
runner and the CLI: every parameters cell is declared, every default and params file passes it."""

from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from coffee_ml import batch, config, parameters, runner

NOTEBOOKS = sorted(config.NOTEBOOKS_DIR.glob("*.ipynb"))
PARAMS_FILES = sorted(config.PARAMS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_of_every_notebook_is_declared_and_its_default_passes(notebook):
    cell = papermill.inspect_notebook(str(notebook))
    declared = parameters.declaration(notebook)
    assert declared is not None, f"{notebook.name} has no declaration in coffee_ml.parameters.NOTEBOOKS"
    assert sorted(cell) == sorted(declared.params), "the parameters cell and the declaration list different names"
    defaults = {name: ast.literal_eval(info["default"]) for name, info in cell.items()}
    assert parameters.problems(notebook, defaults) == []
    parameters.check(notebook.stem, defaults)  # what the notebook's own call does


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_checks_its_parameters_right_after_its_parameters_cell(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    i = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    after = next(c for c in cells[i + 1 :] if c.cell_type == "code")
    assert f'parameters.check("{notebook.stem}", globals())' in after.source
    # before the first statement that uses a parameter: only imports come before it
    before = after.source.split("parameters.check(")[0]
    assert all(not line.strip() or line.startswith(("from ", "import ")) for line in before.splitlines())


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_file_passes_the_checks(params_file):
    if batch.is_batch(params_file):
        assert len(batch.load_batch(params_file).entries) >= 1
    else:
        assert runner.check_spec(runner.load_params(params_file)) == []


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": -1}, "epochs = -1: expected a whole number >= 1"),
        ({"epochs": float("nan")}, "epochs = nan: expected a whole number >= 1"),
        ({"epochs": "ten"}, "epochs = 'ten': expected a whole number >= 1"),
        ({"epochs": True}, "epochs = True: YAML reads yes/no/on/off/true/false as a boolean; expected a whole number"),
        ({"seed": "abc"}, "seed = 'abc': expected a whole number >= 0"),
        (
            {"models": ["nosuch"]},
            "models = ['nosuch']: unknown model 'nosuch'; expected a non-empty list of lstm, gru, lstm_fast",
        ),
        (
            {"start": "2025-12-01", "end": "2025-01-01"},
            "start 2025-12-01 is after end 2025-01-01: expected start < end",
        ),
        ({"models": ["drift"], "model_params": {"gru": {"hidden": 8}}}, "given for 'gru', which is not in models"),
        ({"models": ["drift"], "model_params": {"drift": {"nosuch": 1}}}, "model 'drift' has no parameter 'nosuch'"),
        ({"device": "gpu"}, "device = 'gpu'"),
    ],
)
def test_problems_name_the_parameter_the_value_and_what_is_allowed(values, message):
    found = parameters.problems("02_training", values)
    assert len(found) == 1 and message in found[0], found


def test_hpo_model_must_be_one_registered_name():
    found = parameters.problems("05_hpo", {"model": ["lstm_fast", "nosuch"]})
    assert found and found[0].startswith("model = ['lstm_fast', 'nosuch']: one value, not a list; expected one of")


def test_the_notebook_call_raises_one_line_for_an_interactive_edit():
    namespace = {"epochs": 0, "models": ["drift"], "model_params": {}, "__name__": "__main__"}
    with pytest.raises(parameters.ParameterError, match=r"^02_training: epochs = 0: expected a whole number >= 1$"):
        parameters.check("02_training", namespace)


def test_control_and_bidi_characters_in_values_are_shown_escaped():
    found = parameters.problems("02_training", {"symbol": "BTC\u202eUSDT\n"})
    assert found and "\\u202e" in found[0] and "\u202e" not in found[0] and "\n" not in found[0]
