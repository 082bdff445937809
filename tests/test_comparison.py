"""Notebook 06's walk: one switch per step from the report's recipe to the best config; summaries."""

import itertools

import pandas as pd
import pytest

from twotower_utils import presets
from twotower_utils.config import RunConfig
from twotower_utils.experiments import comparison


def _flat(config: RunConfig) -> dict:
    """The run's fields and its model's, by name."""
    values = config.to_dict()
    return {**{k: v for k, v in values.items() if k != "model"}, **values["model"]}


def _switches(config: RunConfig) -> dict:
    flat = _flat(config)
    return {k: tuple(flat[k]) if isinstance(flat[k], list) else flat[k] for k in presets.best_switches()}


def test_walk_adds_one_group_of_switches_per_step_up_to_the_best():
    report = RunConfig()
    steps = comparison.walk(report)
    names = [name for name, _ in steps]
    assert names[0] == "report's recipe" and steps[0][1] == report
    best_name, best = comparison.best_step(steps)
    assert names.count(best_name) == 1 and best_name.endswith(comparison.BEST_SUFFIX)
    assert best == presets.best_two_tower()  # the walk ends at the presets' best two-tower
    assert _switches(best) == presets.best_switches()
    # every main step differs from the one before it, and never goes back on a switch
    main = [config for name, config in steps[: names.index(best_name) + 1] if "not kept" not in name]
    for before, after in itertools.pairwise(main):
        changed = {k for k, v in _flat(before).items() if _flat(after)[k] != v}
        assert changed and changed <= set(presets.best_switches()), changed
    # side roads start from the best config
    for name, config in steps[names.index(best_name) + 1 :]:
        assert name.startswith("best + ")
        assert _switches(config) == presets.best_switches()
    assert comparison.walk(report, side_roads=False) == steps[: names.index(best_name) + 1]


def test_walk_takes_other_best_values():
    steps = comparison.walk(RunConfig(epochs=2), {"epochs": 3, "embedding_dim": 16})
    _, best = comparison.best_step(steps)
    assert (best.epochs, best.model.embedding_dim, best.learning_rate_schedule) == (3, 16, "cosine")
    assert steps[1][1].epochs == 2  # the steps before the schedule keep the report's epochs


def _result(hit):
    ks = (10, 100)
    return {
        "hit_rate": {k: hit / 2 for k in ks},
        "hit_rate_filtered": {k: hit for k in ks},
        "ranking": {"recall@10": hit, "ndcg@10": hit, "map@10": hit, "mrr": hit},
        "coverage@10": 0.5,
        "popularity@10": {"share_of_slots_from_top_10pct_movies": 0.3},
    }


def test_summarise_and_table_give_mean_and_std_over_seeds():
    summary = comparison.summarise([_result(0.1), _result(0.3)])
    assert summary["HR@10 filtered"] == {"mean": pytest.approx(0.2), "std": pytest.approx(0.1)}
    table = comparison.table({"model": summary, "single": comparison.summarise([_result(0.1)])})
    assert isinstance(table, pd.DataFrame)
    assert table.loc["model", "HR@10 filtered"] == "0.2000 ± 0.1000"
    assert table.loc["single", "HR@10 filtered"] == "0.1000"


def test_best_switches_take_notebook_parameters_and_refuse_unknown_names():
    assert comparison.best_switches() == presets.best_switches()
    assert comparison.best_switches(epochs=3)["epochs"] == 3
    with pytest.raises(ValueError, match="not a switch of the best model"):
        comparison.best_switches(embeding_dim=64)


def test_verdict_answers_from_the_summaries():
    best = "+ schedule (best)"
    summaries = {
        "most popular": comparison.summarise([_result(0.09)]),
        "EASE (lambda 300)": comparison.summarise([_result(0.177)]),
        "report's recipe": comparison.summarise([_result(0.04)]),
        best: comparison.summarise([_result(0.181), _result(0.179)]),
    }
    walk_runs = {best: [_result(0.181), _result(0.179)]}
    temporal = {
        f"leave_latest: {best}": comparison.summarise([_result(0.08)]),
        "leave_latest: most popular": comparison.summarise([_result(0.05)]),
        f"temporal (warm users): {best}": comparison.summarise([_result(0.04)]),
        "temporal (warm users): most popular": comparison.summarise([_result(0.05)]),
    }
    verdict = comparison.verdict(summaries, walk_runs, temporal, best)
    assert verdict["best two-tower, filtered HR@10"] == pytest.approx(0.18)
    assert verdict["best beats EASE on every seed"] and not any("0.18" in name for name in verdict.index)
    assert verdict["leave-latest: best beats most popular"]
    assert not verdict["time cut, warm users: best beats most popular"]
    walk_runs[best].append(_result(0.17))
    assert not comparison.verdict(summaries, walk_runs, temporal, best)["best beats EASE on every seed"]


def test_summarise_takes_rows_that_are_already_numbers():
    summary = comparison.summarise([{"RMSE": 0.9}, {"RMSE": 1.1}], columns=dict)
    assert summary == {"RMSE": {"mean": pytest.approx(1.0), "std": pytest.approx(0.1)}}
