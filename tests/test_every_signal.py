"""The every-signal re-rankers: every pipeline scored per seed by the same counting core, LightGBM's choice made on
validation users' halves and kept, each stage timed, and the cost-and-gain table by hand."""

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_movielens

from twotower_utils.data.splits import random_split
from twotower_utils.evaluation import baselines
from twotower_utils.experiments import every_signal
from twotower_utils.experiments.ranking_stage import HR, STAGE_ONE, TrainedModels
from twotower_utils.experiments.tuning import validation_folds

GRID = ({"num_leaves": 3, "n_estimators": 20, "learning_rate": 0.1}, {"num_leaves": 7, "n_estimators": 30})


@pytest.fixture(scope="module")
def case():
    data = synthetic_movielens(num_users=60, num_movies=48, per_user=10)
    split = random_split(data, seed=2, train_fraction=0.8)
    calls = []

    def stage_one(part, seed):  # EASE plus a seeded noise: a stage one that differs per seed and per frame
        calls.append((part.name, seed))
        noise = np.random.default_rng(seed).normal(scale=0.05, size=(data.num_users + 1, data.num_movies + 1))
        return baselines.ease_scores(part.train, data.num_users, data.num_movies, 10.0) + noise

    found = every_signal.run_split(
        data,
        split,
        validation_folds(split.train, 1),
        [0, 1],
        stage_one,
        linear_n=8,
        candidates=(5, 8),
        grid=GRID,
        log=lambda _: None,
    )
    return data, split, found, calls


def test_every_pipeline_is_scored_on_every_seed(case):
    _, _, found, calls = case
    names = list(found["runs"])
    assert names[0] == STAGE_ONE and len(names) == 4
    assert any(n.startswith(every_signal.LINEAR_OWN) for n in names)
    assert any(n.startswith(every_signal.LINEAR_ALL) for n in names)
    assert any(n.startswith(every_signal.GBDT) for n in names)
    for runs in found["runs"].values():
        assert [r["seed"] for r in runs] == [0, 1]
        assert all(0 <= r[c] <= 1 for r in runs for c in every_signal.COLUMNS)
    assert calls == [("validation", 0), ("random", 0), ("validation", 1), ("random", 1)]


def test_lightgbm_is_chosen_on_validation_once(case):
    _, _, found, _ = case
    chosen = found["chosen"]
    assert chosen["N"] in (5, 8) and chosen["setting"] in [dict(g) for g in GRID]
    assert len(chosen["tried"]) == 4
    best = max(t["validation HR@10"] for t in chosen["tried"])
    assert chosen["validation"] == best
    assert f"N = {chosen['N']}" in next(n for n in found["runs"] if n.startswith(every_signal.GBDT))
    importances = found["importances"]
    assert importances["gain share"].sum() == pytest.approx(1.0)


def test_the_choice_is_the_same_for_the_same_seed(case):
    data, split, found, _ = case
    fold = validation_folds(split.train, 1)[0]
    clock = every_signal.Clock()
    scores = baselines.ease_scores(fold.train, data.num_users, data.num_movies, 10.0)
    signals = every_signal.fit_signals(data, fold.train, clock)
    lists = {n: every_signal.candidate_lists(data, fold, scores, signals, n, clock) for n in (5, 8)}
    first, second = (every_signal.choose(lists, fold, 0, GRID, log=lambda _: None) for _ in range(2))
    assert first == second


def test_every_stage_is_timed_and_the_extra_seconds_add_up(case):
    _, _, found, _ = case
    clock = found["clock"].table()
    assert {every_signal.SIGNALS, "features", "LightGBM (fit)", "linear re-ranker (fit)"} <= set(clock.index)
    assert (clock["total s"] >= 0).all() and clock.loc[every_signal.SIGNALS, "calls"] == 2  # the fold and the split
    extra = every_signal.extra_seconds(found)
    assert set(extra) == set(found["runs"]) - {STAGE_ONE}
    seconds = found["clock"].seconds
    gbdt = next(n for n in extra if n.startswith(every_signal.GBDT))
    assert extra[gbdt] == pytest.approx(sum(sum(seconds[s]) for s in every_signal.STAGES[every_signal.GBDT]) / 2)


def test_cost_and_gain_by_hand():
    table = every_signal.cost_and_gain({STAGE_ONE: 0.10, "a": 0.12, "b": 0.09}, {"a": 5.0, "b": 1.0}, 30.0)
    assert table.loc["a", "gain"] == pytest.approx(0.02)
    assert table.loc["a", "seconds per 0.001 gained"] == pytest.approx(0.25)
    assert np.isnan(table.loc["b", "seconds per 0.001 gained"])
    assert table.loc[STAGE_ONE, "stage one's seconds"] == 30.0
    with pytest.raises(ValueError, match="stage one"):
        every_signal.cost_and_gain({"a": 0.1}, {}, 1.0)


def test_the_results_table_and_its_json(case):
    _, _, found, _ = case
    table = every_signal.results_table(found["runs"])
    assert table.loc[STAGE_ONE, "HR@10 gain over stage one"] == 0
    assert isinstance(table, pd.DataFrame) and HR in table.columns
    plain = every_signal.plain(found)
    assert set(plain) == {"runs", "chosen", "importances", "cost"}
    assert plain["cost"][every_signal.SIGNALS]["calls"] == 2


def test_no_fold_is_one_clear_error(case):
    data, split, _, _ = case
    with pytest.raises(ValueError, match="at least one validation fold"):
        every_signal.run_split(data, split, [], [0], lambda part, seed: None)


def test_pipeline_seconds_add_what_each_pipeline_trains(case):
    data, _, found, _ = case
    models = TrainedModels(data)
    models.seconds = {
        ("stage one", 0, "random"): 10.0,
        ("stage one", 0, "validation"): 8.0,
        ("rating", "MF", 0, "random"): 3.0,
        ("rating", "MF", 0, "validation"): 3.0,
        ("rating", "ALS", 0, "random"): 99.0,
        ("ease", 100.0, "random"): 1.0,
    }
    names = [STAGE_ONE, "(a) by predicted rating, N = 50", "(c) learned re-ranker, N = 25"]
    stage_one, extra = every_signal.pipeline_seconds(found, models, "MF", names)
    assert stage_one == 9.0
    linear_fit = np.mean(found["clock"].seconds["linear re-ranker (fit)"])
    assert extra["(a) by predicted rating, N = 50"] == 3.0
    assert extra["(c) learned re-ranker, N = 25"] == pytest.approx(2 * 3.0 + 2 * 1.0 + 9.0 + linear_fit)
    for name, seconds in every_signal.extra_seconds(found).items():  # one fold: one more stage one
        assert extra[name] == pytest.approx(seconds + 9.0)
    assert STAGE_ONE not in extra
