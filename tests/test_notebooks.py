"""Smoke tests: every numbered notebook runs with papermill on the real MovieLens 100K,
with small parameters, and records what it should (like recommenders' notebook tests)."""

import json

import nbformat
import pytest

from tests.conftest import NOTEBOOKS, real_data_dir
from twotower_utils.notebook.runner import main, numbered_notebooks

pytestmark = pytest.mark.notebooks


def test_every_notebook_has_one_parameters_cell():
    for path in numbered_notebooks(NOTEBOOKS):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code is tagged[0], f"{path.name}: the parameters cell must be the first code cell"
        for name in ("seed", "output_dir", "data_dir"):
            assert f"{name} =" in tagged[0].source, f"{path.name} lacks parameter {name}"


def test_series_writes_notebooks_figures_and_metrics(series):
    out, metrics = series
    for path in numbered_notebooks(NOTEBOOKS):
        assert (out / "executed" / path.name).exists()
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"01_long_tail.png", "03_loss.png", "03_topk_curves.png", "04_train_vs_test_topk.png"} <= figures
    assert (out / "model" / "config.json").exists()
    assert set(metrics["run"]["seconds_per_notebook"]) == {p.stem for p in numbered_notebooks(NOTEBOOKS)}
    for prefix in ("01", "02", "03", "04", "05"):  # the closing summary, written from the run's numbers
        (executed,) = (out / "executed").glob(f"{prefix}_*.ipynb")
        outputs = json.dumps([c.get("outputs", []) for c in nbformat.read(executed, as_version=4).cells])
        assert "## What we learned" in outputs, executed.name


def test_recorded_data_facts(series):
    facts = series[1]["01_data_exploration"]
    assert facts["summary"]["ratings"] == 100_000 and facts["summary"]["users"] == 943
    assert facts["split"]["train"] == 80_000 and facts["split"]["test"] == 20_000
    assert facts["ratings_per_user"]["min"] == 20


def test_recorded_parameter_counts_are_the_reports(series):
    towers = series[1]["02_building_the_towers"]
    assert towers["parameters"] == {"user_tower": 30_208, "movie_tower": 53_280}
    # the Keras towers written out in the notebook, built after the same seed, are the package's
    assert towers["in_sight"] == {
        "same_parameter_counts": True,
        "same_initial_user_table": True,
        "same_initial_movie_table": True,
        "largest_score_difference": 0.0,
    }


def test_recorded_training_and_evaluation(series):
    metrics = series[1]
    training, evaluation = metrics["03_training"], metrics["04_topk_evaluation"]
    losses = training["loss_check_on_one_batch"]
    assert losses["tfrs.tasks.Retrieval"] == pytest.approx(losses["softmax cross-entropy (formula above)"], rel=1e-5)
    assert len(training["history"]["loss"]) == 2
    # the notebook's own tfrs.Model (compute_loss = the task) trains as the package's TwoTowerModel
    in_sight = training["compute_loss_in_sight"]
    assert len(in_sight["basic_retrieval"]) == 10  # one epoch's batches: 80,000 ratings in batches of 8192
    assert in_sight["basic_retrieval"] == pytest.approx(in_sight["two_tower_model"], rel=1e-4)
    assert in_sight["max_relative_difference"] < 1e-4 and in_sight["max_trained_user_table_difference"] < 1e-4
    switches = training["switch_losses_on_one_batch"]
    for switch in ("temperature = 0.5", "logQ correction", "catalogue negatives"):  # each changes the loss
        assert switches[switch] != pytest.approx(switches["none (the report)"], rel=1e-3), switch
    test_topk = evaluation["test_topk"]
    # two epochs of the report's recipe: a weak model, far above chance (100/1664 = 0.06 at k = 100)
    assert 0.15 < test_topk["100"] < 0.35
    assert test_topk["1"] <= test_topk["5"] <= test_topk["10"] <= test_topk["50"] <= test_topk["100"]
    assert evaluation["max_abs_difference_vs_factorized_topk_compatible"] < 1e-6
    assert 0 <= evaluation["max_abs_difference_vs_factorized_topk"] < 0.01
    assert evaluation["test_topk_training_items_excluded"]["10"] > test_topk["10"]
    assert evaluation["train_topk"]["100"] > test_topk["100"]
    assert len(evaluation["example_recommendations"]) == 15
    count = evaluation["count_in_sight"]  # the notebook's NumPy count against topk_accuracy, same rows
    assert count["rows"] == 4096 and count["written_out"] == pytest.approx(count["package"], abs=1e-3)


def test_a_notebook_runs_alone(tmp_path):
    real_data_dir()
    code = main(["--notebooks", str(NOTEBOOKS), "--output-dir", str(tmp_path), "--only", "04", "-p", "epochs=1"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"04_topk_evaluation", "run"}


def test_a_bad_parameter_fails_with_one_clear_message(tmp_path, capsys):
    real_data_dir()
    code = main(
        ["--notebooks", str(NOTEBOOKS), "--output-dir", str(tmp_path), "--only", "02", "-p", "embedding_dim=-4"]
    )
    assert code == 1
    error = capsys.readouterr().err
    assert "02_building_the_towers.ipynb failed" in error and "ConfigError: embedding_dim must be" in error
