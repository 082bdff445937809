"""experiments.scaling: the batch's distinct ids, FLOPs per step, the sets table, one measured size, the
extrapolation to N machines."""

import numpy as np
import pandas as pd
import pytest

from twotower_utils.data.synthetic import synthetic_movielens
from twotower_utils.experiments import scaling


def test_batch_shape_counts_distinct_ids():
    frame = pd.DataFrame({"user_idx": [1, 1, 2, 2, 3, 3], "movie_idx": [5, 6, 5, 5, 7, 8]})
    shape = scaling.batch_shape(frame, batch_size=100)  # larger than the frame: every row once
    assert shape == {"distinct_users": 3.0, "distinct_movies": 4.0}
    assert scaling.step_gflop(1000, 2000, 32) == pytest.approx(6 * 1000 * 2000 * 32 / 1e9)


def test_many_users_make_batches_of_distinct_users():
    """Why a step costs more on ML-25M's shape: nearly every rating of a batch brings its own user."""
    small = synthetic_movielens("100k", seed=0).ratings
    large = synthetic_movielens("25m", 2_000_000, seed=0).ratings
    few, many = scaling.batch_shape(small, 8192), scaling.batch_shape(large, 8192)
    assert few["distinct_users"] <= 943 and many["distinct_users"] > 4 * few["distinct_users"]


def test_sets_table_and_frame_memory():
    table = scaling.sets_table(32)
    assert table.loc["25m", "users x 100k"] == pytest.approx(162_541 / 943)
    assert table.loc["100k", "tower parameters"] == 30_208 + 53_856  # (943 + 1) x 32 + (1682 + 1) x 32
    assert table.loc["25m", "dense scores GB"] > 38
    ratings = synthetic_movielens("25m", 20_000, seed=0).ratings
    memory = scaling.frame_memory(ratings)
    assert memory.loc["all", "MB"] == pytest.approx(memory["MB"].iloc[:-1].sum())
    assert memory.loc["user_id", "bytes per rating"] < 8  # a Categorical: a small code per row


def test_measure_size_records_every_figure():
    figures = scaling.measure_size(5_000, ks=(1, 10), user_batch=64)
    assert figures["ratings"] == 5_000 and figures["train"] + figures["test"] == 5_000
    for key in ("load_s", "epoch_s", "evaluation_s", "examples_per_s", "gflop_per_step", "loss_shape_gflops"):
        assert figures[key] > 0, key
    assert 0 <= figures["hit_rate_filtered@1"] <= figures["hit_rate_filtered@10"] <= 1
    assert 0 < figures["peak_rss_gb"] < 8
    again = scaling.measure_size(5_000, ks=(1, 10), user_batch=64)
    assert again["hit_rate_filtered@10"] == figures["hit_rate_filtered@10"]  # same seed, same numbers


def test_extrapolation_divides_the_epoch_and_adds_the_exchange():
    figures = {"ratings": 1_000_000, "epoch_s": 10.0, "steps": 100, "distinct_users": 8000, "distinct_movies": 4000}
    figures["embedding_dim"] = 32
    table = scaling.extrapolate(figures, machines=(1, 2, 8))
    assert table["compute_s"].tolist() == pytest.approx([250.0, 125.0, 31.25], rel=1e-3)  # 25x the ratings
    assert table.loc[0, "exchange_s"] == 0 and np.all(np.diff(table["exchange_s"]) > 0)
    assert np.all(np.diff(table["epoch_s"]) < 0)
