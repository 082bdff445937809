"""Notebook 07 runs headless in the series with small parameters (1 seed, 2 epochs) and records what it should:
the rating table with its baselines and published numbers, the ensemble, and the two-stage pipelines."""

import pytest

pytestmark = pytest.mark.notebooks


def test_notebook_07_runs_headless_and_records_the_ranking_stage(series):
    tmp_path, metrics = series
    section = metrics["07_ranking_stage"]
    assert section["seeds"] == [42] and section["epochs"] == 2
    rating = {name: s["RMSE"]["mean"] for name, s in section["rating_summaries"].items()}
    # the NumPy baselines do not depend on epochs: the mean, ridge biases, ALS (0.906 measured on this split)
    assert rating["global mean"] == pytest.approx(1.1248, abs=0.001)
    assert rating["user + movie biases"] == pytest.approx(0.936, abs=0.003)
    assert rating["biased MF (ALS)"] == pytest.approx(0.906, abs=0.005)
    assert rating["biased MF (ALS)"] < rating["user + movie biases"] < rating["global mean"]
    for name, value in rating.items():  # two epochs are enough to beat predicting the mean
        assert name == "global mean" or value < 1.05, name
    ensemble = next(name for name in rating if name.startswith("ensemble"))
    assert len(section["ensemble_weights"][0]) == 1 + len(section["ensemble_members"])  # intercept + members
    assert rating[ensemble] <= min(rating[m] for m in section["ensemble_members"]) + 0.005
    assert section["best_rating_model"]["rmse"] == min(rating.values())
    assert {row["source"] for row in section["published"]} == {"reported", "measured here"}

    stages = {name: {c: v["mean"] for c, v in s.items()} for name, s in section["two_stage_summaries"].items()}
    stage_one = stages["stage one alone (best two-tower)"]
    by_rating = next(v for k, v in stages.items() if k.startswith("(a)"))
    # re-ranking by predicted rating alone trades hits for better-liked hits
    assert by_rating["HR@10 filtered"] < stage_one["HR@10 filtered"]
    assert by_rating["mean rating of hits"] > stage_one["mean rating of hits"]
    # the blend with weight 0 is stage one alone, for every N
    for row in section["sweep"]:
        if row["w"] == 0:
            assert row["HR@10 filtered"] == pytest.approx(stage_one["HR@10 filtered"]), row["N"]
    assert set(section["goal"]) >= {"beats stage one on both", "... on every seed", "HR@10 filtered >= 0.19"}
    assert (tmp_path / "figures" / "07_tradeoff.png").exists()
