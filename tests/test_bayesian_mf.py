"""Bayesian MF by Gibbs sampling and the time-aware biases: planted signals, determinism, fallbacks."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_movielens
from twotower_utils.models.bayesian_mf import BayesianMF, TimeBiases, TimeClock


def planted(num_users=40, num_movies=50, rank=2, seed=0, density=0.5, noise=0.1):
    """Ratings = 3 + biases + a rank-``rank`` interaction + noise on a random ``density`` of pairs (ids from 1),
    with timestamps; returns (training frame, held-out frame)."""
    rng = np.random.default_rng(seed)
    users, movies = np.nonzero(rng.random((num_users, num_movies)) < density)
    users, movies = users + 1, movies + 1
    p, q = rng.normal(0, 0.7, (num_users + 1, rank)), rng.normal(0, 0.7, (num_movies + 1, rank))
    ratings = 3 + rng.normal(0, 0.3, num_users + 1)[users] + rng.normal(0, 0.3, num_movies + 1)[movies]
    ratings = ratings + np.sum(p[users] * q[movies], axis=1) + rng.normal(0, noise, len(users))
    frame = pd.DataFrame(
        {
            "user_idx": users,
            "movie_idx": movies,
            "user_rating": np.clip(ratings, 1, 5),
            "timestamp": 880_000_000 + rng.integers(0, 200 * 86_400, len(users)),
        }
    )
    held_out = rng.random(len(frame)) < 0.2
    return frame[~held_out].reset_index(drop=True), frame[held_out].reset_index(drop=True)


def rmse(predicted, frame):
    return float(np.sqrt(np.mean((predicted - frame["user_rating"].to_numpy()) ** 2)))


@pytest.mark.parametrize("time_effects", [False, True])
def test_beats_the_mean_on_a_planted_low_rank_signal(time_effects):
    train, held_out = planted()
    model = BayesianMF(40, 50, factors=4, burn_in=20, samples=40, time_effects=time_effects, seed=0).fit(train)
    mean = train["user_rating"].mean()
    assert rmse(model.predict_frame(held_out), held_out) < 0.6 * rmse(np.full(len(held_out), mean), held_out)
    assert len(model.alpha_trace) == 60


def test_deterministic_for_a_seed():
    train, held_out = planted(seed=1)

    def fitted(seed):
        return BayesianMF(40, 50, factors=3, burn_in=3, samples=5, time_effects=True, seed=seed).fit(train)

    first, again, other = fitted(7), fitted(7), fitted(8)
    np.testing.assert_array_equal(first.predict_frame(held_out), again.predict_frame(held_out))
    assert not np.array_equal(first.predict_frame(held_out), other.predict_frame(held_out))


def test_a_user_without_ratings_gets_the_mean_plus_the_movie_bias():
    """Only observed ratings enter the conditionals: a user id with none keeps a zero vector."""
    train, held_out = planted(seed=2)
    base = BayesianMF(41, 50, factors=3, burn_in=2, samples=3, seed=0).fit(train)
    assert base.mean_scores.shape == (42, 51)
    # a user without ratings keeps zero vectors: mean + movie bias
    unseen = base.predict(np.array([41]), np.array([5]))
    assert unseen[0] == pytest.approx(np.clip(base.mu + base.mean_scores[0, 5], 1, 5))


def test_unseen_ids_fall_back_to_biases():
    train, _ = planted(num_users=10, num_movies=12, seed=3)
    model = BayesianMF(11, 13, factors=2, burn_in=2, samples=3, seed=0).fit(train)
    # user 11 and movie 13 never appear in training
    both = model.predict(np.array([11]), np.array([13]))
    assert both[0] == pytest.approx(np.clip(model.mu, 1, 5))
    movie_only = model.predict(np.array([11, 11]), np.array([1, 2]))
    assert np.all((movie_only >= 1) & (movie_only <= 5))


def test_time_biases_fit_a_planted_day_effect():
    rng = np.random.default_rng(0)
    users = rng.integers(1, 21, 2000)
    movies = rng.integers(1, 31, 2000)
    day = rng.integers(0, 5, 2000)
    day_effect = rng.normal(0, 0.8, (21, 5))
    ratings = 3 + day_effect[users, day] + rng.normal(0, 0.1, 2000)
    frame = pd.DataFrame(
        {"user_idx": users, "movie_idx": movies, "user_rating": ratings, "timestamp": 880_000_000 + day * 86_400}
    )
    train, held_out = frame.iloc[:1600], frame.iloc[1600:]
    model = TimeBiases(20, 30, lam_day=1.0).fit(train)
    assert rmse(model.predict_frame(held_out), held_out) < 0.5 * rmse(
        model.predict_ratings(held_out["user_idx"], held_out["movie_idx"]), held_out
    )


def test_time_clock_and_synthetic_movielens():
    data = synthetic_movielens()
    frame = data.ratings
    clock = TimeClock(data.num_users, bins=4).fit(frame["user_idx"].to_numpy(), frame["timestamp"].to_numpy())
    bins = clock.bin(frame["timestamp"].to_numpy())
    assert bins.min() == 0 and bins.max() == 3
    assert (clock.day_index(np.array([1]), np.array([10**10])) == -1).all()
    model = BayesianMF(data.num_users, data.num_movies, factors=2, burn_in=2, samples=2, time_effects=True).fit(frame)
    predicted = model.predict_frame(frame)
    assert predicted.shape == (len(frame),) and np.all((predicted >= 1) & (predicted <= 5))


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        BayesianMF(3, 3, factors=0)
    with pytest.raises(ValueError):
        BayesianMF(3, 3, samples=0)
    with pytest.raises(ValueError, match="timestamp"):
        BayesianMF(3, 3, time_effects=True).fit(pd.DataFrame({"user_idx": [1], "movie_idx": [1], "user_rating": [3.0]}))
