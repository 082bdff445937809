"""Notebook 06 runs headless in the series with small parameters (1 seed, 2 epochs, 2 validation folds) and records what it should."""

import json

import nbformat
import pytest

pytestmark = pytest.mark.notebooks


def test_notebook_06_runs_headless_and_records_the_walk(series):
    tmp_path, metrics = series
    section = metrics["06_better_retrieval"]
    assert section["seeds"] == [42] and section["epochs"] == 2
    table = section["random_split"]

    def filtered(name):
        return table[name]["HR@10 filtered"]["mean"]

    # the baselines do not depend on epochs: the numbers measured on the report's split
    assert filtered("most popular") == pytest.approx(0.090, abs=0.003)
    assert filtered("random") == pytest.approx(10 / 1664, abs=0.005)
    ease = next(name for name in table if name.startswith("EASE"))
    assert filtered(ease) == pytest.approx(0.177, abs=0.005)
    assert section["ease_lambda"] in (200.0, 300.0, 500.0)
    # the walk: logQ lifts the report's model far above itself and the best beats most-popular
    assert filtered("+ logQ correction (1.2)") > 1.5 * filtered("report's recipe")
    best = section["best_config"]
    assert (best["model"]["logq_correction"], best["model"]["embedding_dim"], best["epochs"]) == (1.2, 128, 2)
    assert best["learning_rate_schedule"] == "cosine"
    assert section["best_name"] == "+ cosine schedule, 2 epochs (best)"
    assert filtered(section["best_name"]) > filtered("most popular")
    validation = section["validation_filtered_hr10"]
    assert validation["folds"] == 2 and len(validation["best_two_tower_folds"]) == 2
    assert validation["ease"] == pytest.approx(0.15, abs=0.01)  # EASE does not depend on epochs
    # every model, both protocols: filtering can only help
    for name, row in table.items():
        assert row["HR@10 filtered"]["mean"] >= row["HR@10"]["mean"] - 1e-9, name
        assert 0 < row["coverage@10"]["mean"] <= 1
    assert table["most popular"]["coverage@10"]["mean"] < 0.05  # nearly the same list for everyone
    assert section["evaluator_difference"] < 1e-3
    assert {"leave_latest: most popular", "temporal (warm users): most popular"} <= set(section["other_splits"])
    assert (tmp_path / "figures" / "06_walk.png").exists()
    executed = nbformat.read(tmp_path / "executed" / "06_better_retrieval.ipynb", as_version=4)
    assert "of test interactions are from users without training ratings" in json.dumps(
        [c.get("outputs", []) for c in executed.cells]
    )
