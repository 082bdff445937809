"""Every notebook default that is a chosen setting equals its preset (``twotower_utils.presets``) or the report's
recipe (``RunConfig()``).  Papermill's parameters cells must hold literals, so this test is what ties them."""

import ast

import pytest

from tests.conftest import NOTEBOOKS
from twotower_utils import RunConfig, presets
from twotower_utils.notebook.runner import numbered_notebooks

REPORT = RunConfig()  # the seed report's recipe: 01-05 walk through its model


def best():
    return presets.best_two_tower()


def rating_models():
    return list(presets.rating_models().values())


def next_item():
    return presets.sequence_next_item()


# notebook -> parameter -> the values its default must equal (every one of them)
PRESETS = {
    "01": {"seed": lambda: [REPORT.seed]},
    "02": {"embedding_dim": lambda: [REPORT.model.embedding_dim], "seed": lambda: [REPORT.seed]},
    **{
        number: {
            "embedding_dim": lambda: [REPORT.model.embedding_dim],
            "epochs": lambda: [REPORT.epochs],
            "learning_rate": lambda: [REPORT.learning_rate],
            "batch_size": lambda: [REPORT.batch_size],
            "seed": lambda: [REPORT.seed],
        }
        for number in ("03", "04", "05")
    },
    "06": {
        "walk_epochs": lambda: [REPORT.epochs],
        "best_embedding_dim": lambda: [best().model.embedding_dim],
        "best_learning_rate": lambda: [best().learning_rate],
        "best_batch_size": lambda: [best().batch_size],
        "best_l2_regularization": lambda: [best().model.l2_regularization],
        "best_logq_correction": lambda: [best().model.logq_correction],
        "best_learning_rate_schedule": lambda: [best().learning_rate_schedule],
        "best_epochs": lambda: [best().epochs],
    },
    "08": {
        "model_epochs": lambda: [c.epochs for c in rating_models()] + [best().epochs],
        "rating_embedding_dim": lambda: [c.model.embedding_dim for c in rating_models()],
        "rating_learning_rate": lambda: [c.learning_rate for c in rating_models()],
        "rating_batch_size": lambda: [c.batch_size for c in rating_models()],
        "blend_n": lambda: [presets.two_stage()["blend"]["N"]],
        "blend_w": lambda: [presets.two_stage()["blend"]["w"]],
        "learned_n": lambda: [presets.two_stage()["learned"]["N"]],
        "learned_hidden": lambda: [sum(presets.two_stage()["learned"]["layers"])],  # () is 0: linear
    },
    "07": {
        "best_embedding_dim": lambda: [best().model.embedding_dim, presets.multitask_model().model.embedding_dim],
        "best_epochs": lambda: [best().epochs],
        "best_learning_rate": lambda: [best().learning_rate],
        "best_batch_size": lambda: [best().batch_size],
        "rating_hidden": lambda: [sum(presets.multitask_model().model.rating_layers)],  # () is 0: no hidden layer
        "rating_l2": lambda: [presets.multitask_model().model.rating_l2],
        "joint_rating_weight": lambda: [presets.multitask_model().model.rating_weight],
    },
    "10": {"best_epochs": lambda: [best().epochs]},
    "09": {  # the tower trained SASRec's way (presets: chosen.next_item)
        "tower_kind": lambda: [next_item()["user_tower"]],
        "history_length": lambda: [next_item()["history_length"]],
        "blocks": lambda: [next_item()["blocks"]],
        "dropout": lambda: [next_item()["dropout"]],
        "sequence_embedding_dim": lambda: [next_item()["embedding_dim"]],
        "sequence_learning_rate": lambda: [next_item()["learning_rate"]],
        "sequence_batch_size": lambda: [next_item()["batch_size"]],
        "sequence_epochs": lambda: [next_item()["max_epochs"]],
        "patience": lambda: [next_item()["patience"]],
    },
}
# the names of the report's model: only its notebooks (01-05) have them, so `make run-notebooks EMBEDDING_DIM=64`
# changes the report's model and nothing else
REPORT_NAMES = ("embedding_dim", "epochs", "learning_rate", "batch_size")


def parameters_cell(number: str) -> dict:
    """The literal defaults of notebook ``number``'s parameters cell (parsed, not executed)."""
    import nbformat

    path = next(p for p in numbered_notebooks(NOTEBOOKS) if p.name.startswith(number))
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    defaults = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{path.name}: one name per line"
        defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def test_the_mapping_names_existing_notebooks():
    assert set(PRESETS) <= {p.name[:2] for p in numbered_notebooks(NOTEBOOKS)}


@pytest.mark.parametrize(("number", "name"), [(n, name) for n, names in PRESETS.items() for name in names])
def test_a_chosen_default_equals_its_preset(number, name):
    defaults = parameters_cell(number)
    assert name in defaults, f"notebook {number} has no parameter {name}"
    for expected in PRESETS[number][name]():
        assert defaults[name] == expected, (
            f"notebook {number}: {name} = {defaults[name]!r}, its preset says {expected!r}"
        )


@pytest.mark.parametrize("number", [p.name[:2] for p in numbered_notebooks(NOTEBOOKS)])
def test_only_the_reports_notebooks_have_the_reports_names(number):
    defaults = parameters_cell(number)
    assert "seed" in defaults and "output_dir" in defaults
    if number > "05":
        assert not set(REPORT_NAMES) & set(defaults), f"notebook {number}: name its own models' settings"
