"""History features (data.history): time order, padding, and no leakage of the target or of later ratings."""

import pandas as pd
import pytest

from tests.conftest import synthetic_movielens
from twotower_utils.data.history import (
    histories_before,
    history_lengths,
    latest_histories,
    longest_history,
    training_histories,
)
from twotower_utils.data.splits import temporal_split


def frame(rows):
    """Ratings as ``(user_idx, movie_idx, timestamp)``."""
    return pd.DataFrame(rows, columns=["user_idx", "movie_idx", "timestamp"])


# user 1 rates movies 5, 3, 9 (9 and 4 in the same second), 4; user 2 rates 7 then 5; rows deliberately unsorted
RATINGS = frame([(1, 9, 30), (2, 5, 20), (1, 5, 10), (1, 4, 30), (2, 7, 15), (1, 3, 20)])


def test_training_histories_are_strictly_earlier_in_time_order_and_left_padded():
    histories = training_histories(RATINGS, 3)
    assert histories.shape == (6, 3)
    expected = {
        (1, 9): [0, 5, 3],  # the rating in the same second (movie 4) is not "earlier"
        (2, 5): [0, 0, 7],
        (1, 5): [0, 0, 0],  # a first rating has an empty history
        (1, 4): [0, 5, 3],
        (2, 7): [0, 0, 0],
        (1, 3): [0, 0, 5],
    }
    for row, history in zip(RATINGS.itertuples(), histories, strict=False):
        assert list(history) == expected[(row.user_idx, row.movie_idx)]


def test_a_history_is_cut_to_the_last_length_ratings():
    histories = training_histories(RATINGS, 1)
    assert list(histories[:, 0]) == [3, 7, 0, 3, 0, 5]
    assert list(history_lengths(training_histories(RATINGS, 3))) == [2, 1, 0, 2, 0, 1]


def test_no_target_or_later_rating_appears_in_its_own_history():
    data = synthetic_movielens(num_users=12, num_movies=30, per_user=10, seed=4)
    ratings = data.ratings.copy()
    ratings["timestamp"] = ratings["timestamp"] // 3  # many ratings in the same "second"
    histories = training_histories(ratings, 6)
    time_of = {(r.user_idx, r.movie_idx): r.timestamp for r in ratings.itertuples()}
    for row, history in zip(ratings.itertuples(), histories, strict=False):
        real = history[history > 0]
        assert row.movie_idx not in real
        assert all(time_of[(row.user_idx, m)] < row.timestamp for m in real)
        earlier = ratings[(ratings.user_idx == row.user_idx) & (ratings.timestamp < row.timestamp)]
        assert len(real) == min(6, len(earlier))  # nothing earlier is missing either
        times = [time_of[(row.user_idx, m)] for m in real]
        assert times == sorted(times)


def test_latest_histories_are_the_whole_training_history_as_the_query():
    histories = latest_histories(RATINGS, [0, 1, 2], 5)
    assert list(histories[0]) == [0, 0, 0, 0, 0]  # an id with no ratings
    assert list(histories[1]) == [0, 5, 3, 9, 4]  # same-second ratings keep the frame's order
    assert list(histories[2]) == [0, 0, 0, 7, 5]
    assert longest_history(RATINGS) == 4


def test_unseen_users_on_the_time_cut_are_read_from_strictly_earlier_test_ratings():
    data = synthetic_movielens(num_users=16, num_movies=30, per_user=10, seed=1)
    split = temporal_split(data, 0.5)
    unseen = split.test[~split.test["user_idx"].isin(set(split.train["user_idx"]))]
    assert len(unseen)  # the synthetic users rate one after the other: the later half is unseen
    histories = histories_before(split.test, unseen, 4)
    train_movies = set(zip(split.train.user_idx, split.train.movie_idx, strict=False))
    for row, history in zip(unseen.itertuples(), histories, strict=False):
        real = history[history > 0]
        assert not any((row.user_idx, m) in train_movies for m in real)
        earlier = split.test[(split.test.user_idx == row.user_idx) & (split.test.timestamp < row.timestamp)]
        assert list(real) == list(earlier.sort_values("timestamp", kind="stable").movie_idx)[-4:]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="positive whole number"):
        training_histories(RATINGS, 0)
    with pytest.raises(ValueError, match="timestamp"):
        training_histories(RATINGS.drop(columns="timestamp"), 2)
    with pytest.raises(ValueError, match="2\\*\\*33"):
        training_histories(frame([(1, 2, -5)]), 2)
    assert histories_before(RATINGS.iloc[:0], RATINGS, 2).tolist() == [[0, 0]] * 6
    assert latest_histories(RATINGS, [], 3).shape == (0, 3)
