"""Splits: the report's random 80/20, time-respecting splits and validation parts carved from training."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import (
    hold_out_latest,
    leave_latest_split,
    leave_one_out_split,
    make_split,
    random_split,
    shuffled_order,
    temporal_split,
    validation_split,
)


def test_shuffled_order_is_the_tfrs_tutorial_shuffle():
    values = tf.data.Dataset.range(50).map(lambda i: i * 10)
    tf.random.set_seed(42)
    expected = [int(v) // 10 for v in values.shuffle(50, seed=42, reshuffle_each_iteration=False)]
    assert shuffled_order(50, 42).tolist() == expected
    assert shuffled_order(50, 42).tolist() == expected  # reproducible
    assert sorted(expected) == list(range(50)) and expected != list(range(50))


def test_random_split_is_a_reproducible_partition(tiny_data):
    first, second = random_split(tiny_data, seed=1), random_split(tiny_data, seed=1)
    other = random_split(tiny_data, seed=2)
    assert len(first.train) == round(0.8 * len(tiny_data.ratings))
    assert len(first.train) + len(first.test) == len(tiny_data.ratings)
    pd.testing.assert_frame_equal(first.train, second.train)
    assert not first.train.equals(other.train)
    both = pd.concat([first.train, first.test])
    assert (
        both.sort_values(["user_id", "timestamp"])
        .reset_index(drop=True)
        .equals(tiny_data.ratings.sort_values(["user_id", "timestamp"]).reset_index(drop=True))
    )


def test_temporal_split_trains_on_the_past(tiny_data):
    split = make_split(tiny_data, "temporal", train_fraction=0.5)
    assert split.name == "temporal"
    assert split.train["timestamp"].max() <= split.test["timestamp"].min()
    with pytest.raises(ValueError, match="unknown split"):
        make_split(tiny_data, "sideways")
    with pytest.raises(ValueError, match="timestamp"):
        temporal_split(MovieLens.from_frames(tiny_data.ratings.drop(columns="timestamp"), tiny_data.movies))


def test_leave_latest_and_validation_splits(tiny_data):
    split = leave_latest_split(tiny_data, 0.75)
    assert len(split.train) + len(split.test) == len(tiny_data.ratings)
    for user, test in split.test.groupby("user_idx"):
        train = split.train[split.train["user_idx"] == user]
        assert len(test) >= 1 and train["timestamp"].max() <= test["timestamp"].min()
    assert make_split(tiny_data, "leave_latest", train_fraction=0.75).test.equals(split.test)
    carved = validation_split(split.train, 0.2, seed=0)
    assert len(carved.test) == round(0.2 * len(split.train))
    assert len(carved.train) + len(carved.test) == len(split.train)
    pairs = lambda frame: sorted(zip(frame["user_idx"], frame["movie_idx"], strict=True))  # noqa: E731
    assert pairs(pd.concat([carved.train, carved.test])) == pairs(split.train)


def test_leave_one_out_and_its_validation_hold_out_each_users_latest_ratings(tiny_data):
    split = leave_one_out_split(tiny_data)
    assert make_split(tiny_data, "leave_one_out").test.equals(split.test)
    assert split.test["user_idx"].is_unique and len(split.test) == tiny_data.num_users
    latest = tiny_data.ratings.sort_values("timestamp").groupby("user_idx").tail(1)
    assert sorted(zip(latest.user_idx, latest.movie_idx, strict=False)) == sorted(
        zip(split.test.user_idx, split.test.movie_idx, strict=False)
    )
    # validation the same way, inside training: each user's last training ratings, never a test rating
    sizes = split.train.groupby("user_idx").size()
    for fraction in (None, 0.25):
        validation = hold_out_latest(split.train, fraction, "validation")
        expected = 1 if fraction is None else (sizes * fraction).round().clip(lower=1)
        assert (validation.test.groupby("user_idx").size() == expected).all()
        for user, held in validation.test.groupby("user_idx"):
            kept = validation.train[validation.train["user_idx"] == user]
            assert kept["timestamp"].max() <= held["timestamp"].min()
        assert len(validation.train) + len(validation.test) == len(split.train)
    with pytest.raises(ValueError, match="strictly between"):
        hold_out_latest(split.train, 1.0)


def test_large_frames_are_shuffled_without_a_per_row_buffer(monkeypatch):
    import twotower_utils.data.pipeline as pipeline
    from twotower_utils.data.splits import shuffled_order

    tutorial = shuffled_order(50, seed=42)
    monkeypatch.setattr(pipeline, "ELEMENT_SHUFFLE_LIMIT", 10)
    large = shuffled_order(50, seed=42)
    assert sorted(large) == list(range(50)) and not np.array_equal(large, tutorial)
    assert np.array_equal(large, shuffled_order(50, seed=42))
