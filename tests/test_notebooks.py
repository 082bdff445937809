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


def test_recorded_data_facts(series):
    facts = series[1]["01_data_exploration"]
    assert facts["summary"]["ratings"] == 100_000 and facts["summary"]["users"] == 943
    assert facts["split"]["train"] == 80_000 and facts["split"]["test"] == 20_000
    assert facts["ratings_per_user"]["min"] == 20


def test_recorded_parameter_counts_are_the_reports(series):
    assert series[1]["02_building_the_towers"]["parameters"] == {"user_tower": 30_208, "movie_tower": 53_280}


def test_recorded_training_and_evaluation(series):
    metrics = series[1]
    training, evaluation = metrics["03_training"], metrics["04_topk_evaluation"]
    losses = training["loss_check_on_one_batch"]
    assert losses["tfrs.tasks.Retrieval"] == pytest.approx(losses["softmax cross-entropy (formula above)"], rel=1e-5)
    assert len(training["history"]["loss"]) == 2
    test_topk = evaluation["test_topk"]
    # two epochs of the report's recipe: a weak model, far above chance (100/1664 = 0.06 at k = 100)
    assert 0.15 < test_topk["100"] < 0.35
    assert test_topk["1"] <= test_topk["5"] <= test_topk["10"] <= test_topk["50"] <= test_topk["100"]
    assert evaluation["max_abs_difference_vs_factorized_topk_compatible"] < 1e-6
    assert 0 <= evaluation["max_abs_difference_vs_factorized_topk"] < 0.01
    assert evaluation["test_topk_training_items_excluded"]["10"] > test_topk["10"]
    assert evaluation["train_topk"]["100"] > test_topk["100"]
    assert len(evaluation["example_recommendations"]) == 15


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
