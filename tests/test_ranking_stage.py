"""Notebook 08's machinery on tiny synthetic data: the rating table, the ensemble, the two stages, the choices."""

import json

import pandas as pd
import pytest

from twotower_utils import presets
from twotower_utils.data.splits import validation_split
from twotower_utils.experiments import ranking_stage as rk

FAST = {"epochs": 2, "embedding_dim": 8, "batch_size": 64}


def test_every_rating_model_trains_and_is_scored(tiny_data, tiny_split):
    names = ["global mean", "user + movie biases", "MF (biases + dot product)", rk.MULTITASK]
    runs = rk.run_rating_models(names, tiny_data, tiny_split, seeds=[1, 2], overrides=FAST, log=lambda _: None)
    assert set(runs) == set(names) and all(len(r) == 2 for r in runs.values())
    summaries = {name: rk.summarise(r) for name, r in runs.items()}
    assert summaries["global mean"]["RMSE"]["std"] == 0  # no seed in it
    table = rk.rating_table(summaries)
    assert list(table.columns) == ["RMSE", "MAE"] and len(table) == 4
    published = rk.published_table(0.95, "ours")
    assert published.loc["ours", "source"] == "measured here" and published["RMSE"].is_monotonic_increasing


def test_the_ensemble_fits_on_the_fold_and_scores_test(tiny_data, tiny_split):
    fold = validation_split(tiny_split.train, 0.2, seed=0)
    members = ("user + movie biases", "MF (biases + dot product)")
    runs, weights = rk.run_ensemble(members, tiny_data, tiny_split, fold, [3], FAST, log=lambda _: None)
    assert len(runs) == 1 and set(runs[0]) == {"RMSE", "MAE"} and len(weights[0]) == 3


def test_the_two_stages_run_end_to_end(tiny_data, tiny_split):
    fold = validation_split(tiny_split.train, 0.2, seed=0)
    runs, sweep = rk.run_two_stage(
        tiny_data,
        tiny_split,
        fold,
        [0],
        {"N": 10, "w": 0.5},
        {"N": 10, "layers": (4,)},
        FAST,
        ns=(5, 10),
        weights=(0.0, 0.5, 1.0),
        log=lambda _: None,
    )
    assert set(runs) == {
        rk.STAGE_ONE,
        "(a) by predicted rating, N = 10",
        "(b) blend w = 0.5, N = 10",
        "(c) learned re-ranker, N = 10",
    }
    assert set(sweep["N"]) == {5, 10} and set(sweep["w"]) == {0.0, 0.5, 1.0}
    stage_one = runs[rk.STAGE_ONE][0]
    # weight 0 is stage one's own order: with N = 10 the same top 10
    row = sweep[(sweep["N"] == 10) & (sweep["w"] == 0.0)].iloc[0]
    assert row[rk.HR] == pytest.approx(stage_one[rk.HR])
    for measures in (r[0] for r in runs.values()):
        assert set(measures) == set(rk.TWO_STAGE_COLUMNS) and 0 <= measures[rk.HR] <= 1
    beats = rk.beats_stage_one(runs)
    chosen = presets.two_stage()["pipeline"]
    assert beats["pipeline"].startswith(chosen) and isinstance(beats["beats stage one on both"], bool)
    assert isinstance(beats["... on every seed"], bool)


def test_kept_models_are_trained_once_and_reused_by_the_ensemble_and_the_two_stages(tiny_data, tiny_split):
    fold = validation_split(tiny_split.train, 0.2, seed=0)
    models = rk.TrainedModels(tiny_data, FAST)
    names = ["user + movie biases", "MF (biases + dot product)"]
    runs = rk.run_rating_models(names, tiny_data, tiny_split, [3], log=lambda _: None, models=models)
    assert models.trained == 2
    rk.run_ensemble(names, tiny_data, tiny_split, fold, [3], log=lambda _: None, models=models)
    assert models.trained == 4  # the members on the fold; those on the split were kept
    stage = rk.stage_inputs(tiny_data, tiny_split, 3, rating_model="MF (biases + dot product)", models=models)
    assert models.trained == 6  # stage one and EASE; the rating model was kept
    assert stage.rating_model is models.rating("MF (biases + dot product)", tiny_split, 3)
    # a kept model is the one a retraining gives: the same seed, the same numbers
    again = rk.rating_measure(
        rk.fit_rating_model("MF (biases + dot product)", tiny_data, tiny_split, 3, FAST), tiny_split
    )
    assert again["RMSE"] == pytest.approx(runs["MF (biases + dot product)"][0]["RMSE"], abs=1e-6)


def test_model_names_read_the_short_keys():
    assert rk.model_names("mean, als,mf") == ["global mean", "biased MF (ALS)", "MF (biases + dot product)"]
    assert rk.model_names(["multitask", "global mean"]) == [rk.MULTITASK, "global mean"]
    with pytest.raises(ValueError, match="unknown rating model"):
        rk.model_names("mf,svd")


def test_choose_blend_takes_the_best_mean_and_prefers_small_weights_on_ties():
    a = pd.DataFrame({"N": [25, 25, 50, 50], "w": [0.0, 0.1, 0.0, 0.1], rk.HR: [0.10, 0.12, 0.10, 0.12]})
    b = a.assign(**{rk.HR: [0.10, 0.12, 0.10, 0.14]})
    assert rk.choose_blend([a, b]) == {"N": 50, "w": 0.1, rk.HR: pytest.approx(0.13)}
    tie = a.assign(**{rk.HR: [0.12, 0.12, 0.12, 0.12]})
    assert rk.choose_blend([tie]) == {"N": 25, "w": 0.0, rk.HR: pytest.approx(0.12)}


def test_the_learned_reranker_and_the_pipeline_are_chosen_by_the_best_validation_mean():
    learned = {"linear, N = 10": 0.15, "linear, N = 25": 0.16, "hidden layer of 32, N = 25": 0.16}
    assert rk.choose_learned(learned) == {"N": 25, "layers": (), rk.HR: 0.16}  # ties: the first tried
    assert rk.choose_pipeline({rk.STAGE_ONE: 0.15, "(a)": 0.1, "(b)": 0.157, "(c)": 0.158}) == "(c)"
    assert rk.choose_pipeline({rk.STAGE_ONE: 0.16, "(b)": 0.16}) == rk.STAGE_ONE


def test_the_rating_choices_take_the_lowest_validation_rmse_and_keep_the_order():
    models = presets.rating_models()
    found = {
        name: {f"{field}={v:g}": {"mean": {"RMSE": 1.0 - i / 100}} for i, v in enumerate(values)}
        for name, (field, values) in rk.VARIANT_GRID.items()
    }
    found |= {
        name: {json.dumps(s): {"mean": {"RMSE": 1.0 + i}} for i, s in enumerate(grid)}
        for name, grid in rk.BASELINE_GRID.items()
    }
    chosen = rk._rating_choices(found, models, presets.rating_baselines())
    assert [e["name"] for e in chosen["rating_models"]] == list(models)  # the table's order
    mf = next(e["model"] for e in chosen["rating_models"] if e["name"] == "MF (biases + dot product)")
    assert (
        mf["l2_regularization"] == 0.2
        and mf["embedding_dim"] == models["MF (biases + dot product)"].model.embedding_dim
    )
    baselines = {e["name"]: e["settings"] for e in chosen["baselines"]}
    assert baselines == {
        "global mean": {},
        "user + movie biases": {"lam": 1.0},
        "biased MF (ALS)": {"factors": 50, "lam": 0.05},
    }


def test_the_tradeoff_plot_has_a_line_per_n():
    sweep = pd.DataFrame(
        {
            "N": [10, 10, 50, 50],
            "w": [0, 1, 0, 1],
            rk.HR: [0.2, 0.1, 0.2, 0.05],
            "mean rating of hits": [3.9, 4.1, 3.9, 4.3],
        }
    )
    fig = rk.plot_tradeoff(sweep, "tiny")
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]


def test_the_command_line_refuses_one_fold(capsys):
    with pytest.raises(SystemExit) as stop:
        rk.main(["--folds", "1"])
    assert stop.value.code == 2 and "--folds must be from 2 to 10" in capsys.readouterr().err
