"""Synthetic MovieLens: the shape of a real set, through the same MovieLens object, small here."""

import numpy as np
import pandas as pd
import pytest

import twotower_utils as tt
from twotower_utils.data.loading import load_movielens
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import random_split
from twotower_utils.data.synthetic import MIN_RATINGS_PER_USER, synthetic_movielens


@pytest.fixture(scope="module")
def small_25m() -> MovieLens:
    return synthetic_movielens("25m", 60_000, seed=3)


def test_sizes_follow_the_set(small_25m):
    data = small_25m
    assert len(data.ratings) == 60_000  # exactly
    scale = 60_000 / 25_000_095
    assert data.num_users == round(162_541 * scale)  # users scale with the ratings
    assert data.num_movies == round(59_047 * scale**0.65)  # the catalogue less than linearly
    per_user = data.ratings.groupby("user_idx").size()
    assert per_user.min() >= MIN_RATINGS_PER_USER and len(per_user) == data.num_users
    assert 0.8 * 153.8 < per_user.mean() < 1.2 * 153.8  # ML-25M's mean ratings per user
    assert not data.ratings.duplicated(["user_idx", "movie_idx"]).any()  # a user rates a movie once
    assert data.name == "synthetic-25m"


def test_columns_are_those_of_the_real_set(small_25m):
    ratings = small_25m.ratings
    assert {"user_id", "movie_title", "user_rating", "timestamp", "user_idx", "movie_idx"} <= set(ratings.columns)
    assert "bucketized_user_age" not in ratings  # 25m has no demographics ...
    assert set(np.unique(ratings["user_rating"])) <= set(np.arange(1, 11) / 2)  # ... and half stars
    years = pd.to_datetime(ratings["timestamp"], unit="s").dt.year
    assert years.min() >= 1995 and years.max() <= 2019
    assert isinstance(ratings["movie_title"].dtype, pd.CategoricalDtype)
    one_m = synthetic_movielens("1m", 5_000, seed=0)
    assert {"bucketized_user_age", "user_gender", "user_occupation_label", "user_zip_code"} <= set(one_m.ratings)
    assert set(np.unique(one_m.ratings["user_rating"])) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_popularity_is_a_long_tail(small_25m):
    counts = np.sort(small_25m.ratings["movie_idx"].value_counts().to_numpy())[::-1]
    top_tenth = counts[: len(counts) // 10].sum() / counts.sum()
    assert 0.3 < top_tenth < 0.6  # MovieLens 100K's files: 0.43


def test_same_seed_same_data_and_other_seed_other_data():
    first, again = synthetic_movielens("100k", 3_000, seed=1), synthetic_movielens("100k", 3_000, seed=1)
    pd.testing.assert_frame_equal(first.ratings, again.ratings)
    other = synthetic_movielens("100k", 3_000, seed=2)
    assert not first.ratings["movie_idx"].equals(other.ratings["movie_idx"])


def test_through_the_config_load_and_the_usual_split():
    config = tt.RunConfig(dataset="synthetic-latest-small-4000")
    data = load_movielens(config.dataset)  # no TFDS involved
    assert len(data.ratings) == 4_000 and data.name == "synthetic-latest-small"
    split = random_split(data, seed=42)
    assert (len(split.train), len(split.test)) == (3_200, 800)


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="num_ratings must be a whole number"):
        synthetic_movielens("25m", 10)
