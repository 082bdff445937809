"""Notebook 07's machinery on tiny synthetic data and hand-made summaries: points, scales, Pareto, choices."""

import math

import numpy as np
import pytest

from twotower_utils import presets
from twotower_utils.config import MultitaskSpec
from twotower_utils.experiments import multitask_sweep as mt
from twotower_utils.experiments import tuning


def _summary(hit, rmse, std=0.0):
    return {
        mt.HIT_RATE: {"mean": hit, "std": std},
        mt.RMSE: {"mean": rmse, "std": std},
        mt.TOP100: {"mean": 3 * hit, "std": std},
    }


def _validation(hit, rmse):
    return {"mean": {mt.HIT_RATE: hit, mt.RMSE: rmse}, "folds": []}


def test_the_multitask_model_is_the_best_two_tower_with_the_chosen_head_and_weights():
    config = presets.multitask_model(rating_weight=0.5, epochs=2)
    best = presets.best_two_tower()
    assert config.family == "multitask" and config.epochs == 2 and config.model.rating_weight == 0.5
    assert config.replace(epochs=best.epochs) == best.replace(model=config.model)  # the best two-tower's run
    for name in best.model.field_names():  # and its towers and retrieval loss
        assert getattr(config.model, name) == getattr(best.model, name), name
    head, joint = presets.multitask_head(), presets.joint_weights()
    assert config.model.rating_layers == head["rating_layers"] and config.model.rating_l2 == head["rating_l2"]
    assert presets.multitask_model().model.rating_weight == joint["rating_weight"]


def test_sweep_points_hold_both_single_tasks_one_to_one_and_the_balanced_point():
    points = mt.sweep_points(balanced=6.5, rating_weights=(1.0, 0.1, 3.0))
    assert points[mt.RATING_ONLY] == {**presets.rating_only_switches(), "retrieval_weight": 0.0, "rating_weight": 1.0}
    assert points[mt.RETRIEVAL_ONLY] == {"retrieval_weight": 1.0, "rating_weight": 0.0}
    assert points["joint (1 : 1)"] == {"retrieval_weight": 1.0, "rating_weight": 1.0}
    assert points["joint (1 : 6.5) balanced"]["rating_weight"] == 6.5
    assert points["joint, rating stop-gradient (1 : 1)"]["rating_stop_gradient"] is True
    assert list(points)[2:5] == ["joint (1 : 0.1)", "joint (1 : 1)", "joint (1 : 3)"]  # by weight
    assert len(mt.sweep_points(6.5, (1.0,), stop_gradient=False)) == 4
    assert list(mt.sweep_points(None, (0.3,), stop_gradient=False)) == [
        mt.RATING_ONLY,
        mt.RETRIEVAL_ONLY,
        "joint (1 : 0.3)",
    ]
    own = mt.sweep_points(6.5, (1.0,), rating_only={"l2_regularization": 0.2})[mt.RATING_ONLY]
    assert own == {"l2_regularization": 0.2, "retrieval_weight": 0.0, "rating_weight": 1.0}


def test_loss_scales_start_near_log_batch_and_the_rating_variance(tiny_data, tiny_split, tiny_config):
    config = tiny_config.replace(model=MultitaskSpec(embedding_dim=8))
    scales = mt.loss_scales(config, tiny_data, tiny_split.train)
    # untrained towers score every movie alike: the softmax over a batch's distinct movies is near uniform
    assert 0.5 * math.log(tiny_data.num_movies) < scales["retrieval"] < math.log(config.batch_size) + 0.5
    # the head starts at the training mean: its squared error is about the ratings' variance
    assert scales["rating"] == pytest.approx(tiny_split.train["user_rating"].var(ddof=0), rel=0.1)
    assert mt.balanced_rating_weight(scales) == pytest.approx(scales["retrieval"] / scales["rating"])
    with pytest.raises(ValueError, match="positive"):
        mt.balanced_rating_weight({"retrieval": 1.0, "rating": 0.0})


def test_pareto_front_drops_points_beaten_on_both_axes():
    summaries = {
        "a": _summary(0.18, 0.95),
        "b": _summary(0.17, 0.90),
        "c": _summary(0.16, 0.93),  # beaten by b on both
        "d": _summary(0.18, 0.96),  # beaten by a (same hit rate, worse RMSE)
        "e": _summary(0.01, 0.89),
    }
    assert mt.pareto_front(summaries) == ["a", "b", "e"]


def test_tolerance_check_measures_both_gaps():
    summaries = {
        mt.RETRIEVAL_ONLY: _summary(0.180, 1.10),
        mt.RATING_ONLY: _summary(0.010, 0.920),
        "good": _summary(0.176, 0.925),
        "bad": _summary(0.170, 0.905),
    }
    good = mt.tolerance_check(summaries, "good")
    assert good["HR@10 lost to the rating task"] == pytest.approx(0.004)
    assert good["RMSE above rating-only"] == pytest.approx(0.005)
    assert good["within both tolerances"]
    bad = mt.tolerance_check(summaries, "bad")
    assert not bad["within both tolerances"] and not bad["within 0.005 HR@10 of retrieval-only"]
    assert bad["within 0.01 RMSE of rating-only"]  # better than rating-only is within


def test_choose_joint_prefers_the_lowest_rmse_within_both_tolerances():
    results = {
        mt.RETRIEVAL_ONLY: _validation(0.150, 1.10),
        mt.RATING_ONLY: _validation(0.010, 0.930),
        "joint (1 : 0.1)": _validation(0.149, 0.925),
        "joint (1 : 1)": _validation(0.146, 0.905),
        "joint (1 : 3)": _validation(0.140, 0.900),
    }
    assert mt.choose_joint(results) == ("joint (1 : 1)", True)
    assert mt.choose_joint(results, hit_tolerance=0.002) == ("joint (1 : 0.1)", True)
    # none within: the smallest worst shortfall
    name, met = mt.choose_joint(results, hit_tolerance=0.0005, rmse_tolerance=0.001)
    assert (name, met) == ("joint (1 : 0.1)", False)
    with pytest.raises(ValueError, match="no joint"):
        mt.choose_joint({k: results[k] for k in (mt.RETRIEVAL_ONLY, mt.RATING_ONLY)})
    heads = {"small": _validation(0.0, 0.94), "big": _validation(0.0, 0.92)}
    assert mt.lowest_rmse(heads) == "big"


def test_tfrs_table_puts_reported_numbers_beside_ours():
    summaries = {"r": _summary(0.01, 0.93), "t": _summary(0.18, 1.1), "j": _summary(0.179, 0.92)}
    ours = dict(zip(mt.TFRS_REPORTED, ["r", "t", "j"], strict=True))
    table = mt.tfrs_table(summaries, ours)
    assert table.loc["joint (1 : 1)", "TFRS tutorial (reported), RMSE"] == 1.110
    assert table.loc["joint (1 : 1)", "ours, RMSE"] == 0.92
    assert table.loc["retrieval-specialised (1 : 0)", f"ours, {mt.TOP100}"] == pytest.approx(0.54)


def test_summarise_and_the_sweep_on_tiny_data(tiny_data, tiny_split, tiny_config):
    base = tiny_config.replace(model=MultitaskSpec(embedding_dim=8, rating_layers=(4,)), epochs=1)
    points = {mt.RATING_ONLY: {"retrieval_weight": 0.0}, mt.RETRIEVAL_ONLY: {"rating_weight": 0.0}}
    logged = []
    runs, histories = mt.run_sweep(base, points, tiny_data, tiny_split, seeds=[1, 2], log=logged.append)
    assert set(runs) == set(points) and all(len(r) == 2 for r in runs.values()) and len(logged) == 2
    row = runs[mt.RATING_ONLY][0]
    assert {mt.HIT_RATE, mt.TOP100, mt.RMSE, "MAE", "HR@10", "HR@100 filtered", "seconds"} <= set(row)
    summary = mt.summarise(runs[mt.RATING_ONLY])
    assert "seconds" not in summary
    values = [r[mt.RMSE] for r in runs[mt.RATING_ONLY]]
    assert summary[mt.RMSE] == {"mean": pytest.approx(np.mean(values)), "std": pytest.approx(np.std(values))}
    assert "rating_loss" in histories[mt.RATING_ONLY]
    assert mt.plot_pareto({n: mt.summarise(r) for n, r in runs.items()}, "tiny") is not None


def test_cross_validate_point_caches_each_fold(tiny_data, tiny_split, tiny_config, tmp_path, monkeypatch):
    config = tiny_config.replace(model=MultitaskSpec(embedding_dim=8, rating_layers=(4,)), epochs=1)
    folds = tuning.validation_folds(tiny_split.train, folds=2, fraction=0.2)
    first = mt.cross_validate_point(config, tiny_data, folds, tmp_path)
    assert len(first["folds"]) == 2
    assert first["mean"][mt.RMSE] == pytest.approx(np.mean([f[mt.RMSE] for f in first["folds"]]))

    def no_training(*args, **kwargs):
        raise AssertionError("a cached fold was trained again")

    monkeypatch.setattr(tuning, "train", no_training)
    assert mt.cross_validate_point(config, tiny_data, folds, tmp_path) == first
    with pytest.raises(AssertionError, match="trained again"):
        mt.cross_validate_point(config.replace(rating_weight=0.5), tiny_data, folds, tmp_path)


def test_cli_reports_a_bad_value_in_one_line(capsys):
    assert mt.main(["--rating-l2", "-1"]) == 1
    assert "rating_l2 must be" in capsys.readouterr().err


def test_plot_task_losses_draws_both_tasks():
    import pandas as pd

    history = pd.DataFrame({"epoch": [1, 2], "retrieval_loss": [7.0, 6.0], "rating_loss": [1.2, 0.9]})
    fig = mt.plot_task_losses({"a": history, "b": history}, ["a"])
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]


def test_notebook_07_defaults_are_the_validation_choices():
    import nbformat

    from tests.test_notebooks import NOTEBOOKS

    cell = next(c for c in nbformat.read(NOTEBOOKS / "07_multitask.ipynb", as_version=4).cells if c.cell_type == "code")
    values = {}
    exec(cell.source, {}, values)
    head, joint = presets.multitask_head(), presets.joint_weights()
    assert values["rating_hidden"] == (head["rating_layers"] or (0,))[0]
    assert values["rating_l2"] == head["rating_l2"]
    assert values["joint_rating_weight"] == joint["rating_weight"] and joint["retrieval_weight"] == 1.0
    best = presets.best_switches()
    assert (values["best_embedding_dim"], values["best_epochs"]) == (best["embedding_dim"], best["epochs"])
    assert (values["best_learning_rate"], values["best_batch_size"]) == (best["learning_rate"], best["batch_size"])
