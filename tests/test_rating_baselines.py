"""Rating baselines fitted in closed form: the mean, regularised biases, biased MF by ALS."""

import numpy as np
import pandas as pd
import pytest

from twotower_utils.evaluation.rating import rating_metrics
from twotower_utils.models.rating_baselines import BiasedMF, Biases, GlobalMean


def _frame(users, movies, ratings):
    return pd.DataFrame({"user_idx": users, "movie_idx": movies, "user_rating": ratings})


def planted(num_users=30, num_movies=40, rank=0, seed=0, density=0.6):
    """Ratings = 3 + user bias + movie bias (+ a rank-``rank`` interaction) on a random ``density`` of pairs."""
    rng = np.random.default_rng(seed)
    users, movies = np.nonzero(rng.random((num_users, num_movies)) < density)
    users, movies = users + 1, movies + 1  # ids start at 1
    user_bias, movie_bias = rng.normal(0, 0.5, num_users + 1), rng.normal(0, 0.5, num_movies + 1)
    ratings = 3 + user_bias[users] + movie_bias[movies]
    if rank:
        p, q = rng.normal(0, 0.7, (num_users + 1, rank)), rng.normal(0, 0.7, (num_movies + 1, rank))
        ratings = ratings + np.sum(p[users] * q[movies], axis=1)
    return _frame(users, movies, ratings), user_bias


def test_global_mean():
    frame = _frame([1, 2], [1, 1], [2.0, 4.0])
    model = GlobalMean(2, 1).fit(frame)
    assert model.predict_ratings(np.array([1, 2, 0]), np.array([1, 0, 0])).tolist() == [3.0, 3.0, 3.0]


def test_biases_recover_planted_biases_and_shrink_with_the_penalty():
    frame, user_bias = planted()
    model = Biases(30, 40, lam=0.0, iterations=50).fit(frame)
    assert rating_metrics(model, frame)["rmse"] < 1e-3
    centred = user_bias[1:] - user_bias[1:].mean()
    np.testing.assert_allclose(model.user_bias[1:] - model.user_bias[1:].mean(), centred, atol=1e-2)
    shrunk = Biases(30, 40, lam=1000.0).fit(frame)
    assert np.abs(shrunk.user_bias).max() < 0.1 * np.abs(model.user_bias).max()
    assert model.predict_ratings(np.array([0]), np.array([0]))[0] == pytest.approx(model.mu)  # unseen ids: the mean


def test_biased_mf_fits_a_low_rank_matrix_and_predicts_held_out_pairs():
    frame, _ = planted(rank=2, density=0.7)
    held_out = frame.sample(frac=0.15, random_state=0)
    train = frame.drop(held_out.index)
    biases = Biases(30, 40, lam=1.0).fit(train)
    mf = BiasedMF(30, 40, factors=2, lam=0.01, iterations=30, seed=0).fit(train)
    assert rating_metrics(mf, held_out)["rmse"] < 0.5 * rating_metrics(biases, held_out)["rmse"]
    again = BiasedMF(30, 40, factors=2, lam=0.01, iterations=30, seed=0).fit(train)
    np.testing.assert_array_equal(again.predict_ratings([1, 2], [3, 4]), mf.predict_ratings([1, 2], [3, 4]))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="columns"):
        Biases(2, 2).fit(pd.DataFrame({"user_idx": [1], "movie_idx": [1]}))
    with pytest.raises(ValueError, match="empty"):
        GlobalMean(2, 2).fit(_frame([], [], []))
    with pytest.raises(ValueError, match="factors"):
        BiasedMF(2, 2, factors=0)
