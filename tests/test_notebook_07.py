"""Notebook 07: its written-out two-task model trains as the package's ``MultitaskModel`` (unit level, on the tiny
synthetic data), it closes with a summary and exercises, and it runs headless in the series with small parameters
(1 seed, 2 epochs, 1 : 1 beside the chosen joint point) and records what it should."""

import math

import numpy as np
import pytest

from tests.test_notebook_pieces import run_in_sight
from twotower_utils.config import MultitaskSpec
from twotower_utils.models.multitask import RatingHead
from twotower_utils.training import train


def in_sight_config(tiny_config, **changes):
    """The package's run the notebook writes out: a linear head with its L2, Adam at a constant rate, no switch."""
    spec = MultitaskSpec(embedding_dim=8, rating_layers=(), rating_l2=2.0, rating_weight=0.3).replace(**changes)
    return tiny_config.replace(model=spec, optimizer="adam", learning_rate=0.05, epochs=2)


@pytest.mark.parametrize(
    "changes",
    [{}, {"rating_layers": (4,), "rating_weight": 1.0}, {"retrieval_weight": 0.0, "rating_weight": 1.0}],
    ids=["chosen head", "hidden layer, 1 to 1", "rating-only"],
)
def test_07_two_tasks_train_as_the_multitask_model(tiny_data, tiny_split, tiny_config, changes):
    config = in_sight_config(tiny_config, **changes)
    cell = run_in_sight("07", data=tiny_data, split=tiny_split, config=config, RatingHead=RatingHead)
    package_losses = []
    logger = cell["loss_logger"](package_losses)
    package = train(config, tiny_data, tiny_split, verbose=0, curves=False, callbacks=[logger]).model
    assert len(cell["two_tasks_losses"]) == config.epochs * math.ceil(len(tiny_split.train) / config.batch_size) > 2
    assert cell["two_tasks_losses"] == pytest.approx(package_losses, rel=1e-5)
    two_tasks = cell["two_tasks"]
    for mine, theirs in [
        (two_tasks.user_tower.embeddings, package.user_tower.embedding.embeddings),
        (two_tasks.movie_tower.embeddings, package.movie_tower.embedding.embeddings),
        (two_tasks.rating_head.output_layer.kernel, package.rating_head.output_layer.kernel),
        (two_tasks.rating_head.user_bias.embeddings, package.rating_head.user_bias.embeddings),
    ]:
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), atol=1e-5)
    # the same trained model: the same predicted test ratings
    users, movies = tiny_split.test["user_idx"].to_numpy(), tiny_split.test["movie_idx"].to_numpy()
    mine = two_tasks.rating_head(users, movies, two_tasks.user_tower(users), two_tasks.movie_tower(movies))
    np.testing.assert_allclose(mine.numpy(), package.predict_ratings(users, movies).numpy(), atol=1e-5)


def test_07_the_match_comes_from_the_seed(tiny_data, tiny_split, tiny_config):
    """Another seed gives other starting tables: the equality above is no accident of initialisation."""
    config = in_sight_config(tiny_config)
    cell = run_in_sight(
        "07",
        data=tiny_data,
        split=tiny_split,
        config=config.replace(seed=config.seed + 1, epochs=1),
        RatingHead=RatingHead,
    )
    package = train(config.replace(epochs=1), tiny_data, tiny_split, verbose=0, curves=False).model
    mine, theirs = cell["two_tasks"].user_tower.embeddings.numpy(), package.user_tower.embedding.embeddings.numpy()
    assert not np.allclose(mine, theirs, atol=1e-3)


@pytest.mark.notebooks
def test_notebook_07_runs_headless_and_records_the_sweep(series):
    tmp_path, metrics = series
    section = metrics["07_multitask"]
    assert section["seeds"] == [42] and section["epochs"] == 2
    table = section["summaries"]

    def mean(name, column):
        return table[name][column]["mean"]

    # the written-out two-task model trains as the package's, batch for batch
    in_sight = section["compute_loss_in_sight"]
    assert len(in_sight["two_tasks"]) == len(in_sight["multitask_model"]) > 1
    assert in_sight["max_relative_difference"] < 1e-4
    assert max(in_sight["max_trained_weight_difference"].values()) < 1e-3
    switch_losses = section["switch_losses_on_one_batch"]
    plain = switch_losses["none (the model written out above)"]
    assert plain["retrieval"] > 0 and plain["rating"] > 0
    assert switch_losses["tower L2 0.06"]["L2 penalties"] > plain["L2 penalties"]  # the towers' rows join the head's
    assert switch_losses["tower L2 0.06"]["retrieval"] == pytest.approx(plain["retrieval"], rel=1e-6)
    assert switch_losses["logQ correction 1.2"]["retrieval"] != pytest.approx(plain["retrieval"], rel=1e-3)
    # the loss scales at initialisation do not depend on epochs: the logQ-corrected softmax over a batch's ~1,000
    # distinct movies (8.67 measured), the head starting at the mean (the ratings' variance, 1.27)
    assert section["loss_scales"]["retrieval"] == pytest.approx(8.67, abs=0.1)
    assert section["loss_scales"]["rating"] == pytest.approx(1.27, abs=0.1)
    assert section["balanced_rating_weight"] == pytest.approx(
        section["loss_scales"]["retrieval"] / section["loss_scales"]["rating"]
    )
    retrieval, rating = "retrieval-only (1 : 0)", "rating-only (0 : 1)"
    assert {retrieval, rating, "joint (1 : 1)", section["joint"]} <= set(table)
    # two epochs of the best two-tower (its own 128-d embeddings) already beat most-popular (0.090): 0.116 measured
    # (0.1037 at 32-d); rating-only does not retrieve at all
    assert mean(retrieval, "HR@10 filtered") == pytest.approx(0.116, abs=0.005)
    assert mean(rating, "HR@10 filtered") < 0.05
    # the untrained head of retrieval-only predicts about the mean; training the head does much better
    assert mean(retrieval, "RMSE") == pytest.approx(1.13, abs=0.05)
    assert mean(rating, "RMSE") < 1.0 and mean("joint (1 : 1)", "RMSE") < 1.0
    stop = "joint, rating stop-gradient (1 : 1)"
    if stop in table:  # stop_gradient_point: the rating task never touches the towers
        assert mean(stop, "HR@10 filtered") == mean(retrieval, "HR@10 filtered")
    for name in table:
        assert mean(name, "HR@10 filtered") >= mean(name, "HR@10") - 1e-9, name  # filtering can only help
    assert section["tfrs_reported"]["joint (1 : 1)"] == {"top-100 (unfiltered)": 0.235, "RMSE": 1.11}
    check = section["tolerance_check"]
    assert set(check) >= {"within both tolerances", "HR@10 lost to the rating task", "RMSE above rating-only"}
    assert section["pareto_front"] and set(section["pareto_front"]) <= set(table)
    for figure in ("07_pareto.png", "07_task_losses.png"):
        assert (tmp_path / "figures" / figure).exists()
