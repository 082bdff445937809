"""Rating baselines every rating model must beat, fitted in closed form with NumPy (seconds, no TensorFlow).

* ``GlobalMean``: every pair gets the training mean ``mu``.
* ``Biases``: ``mu + b_user + b_movie``, ridge-regularised (``lam``), fitted by alternating exact updates.
* ``BiasedMF``: ``mu + b_user + b_movie + <p_user, q_movie>`` fitted by alternating least squares with
  weighted-lambda regularisation (ALS-WR, Zhou et al. 2008: each user's ridge penalty is ``lam * n_user``,
  each movie's ``lam * n_movie``), the classic strong baseline of the Netflix Prize.

Each has ``fit(frame)`` (``user_idx``, ``movie_idx``, ``user_rating``) and ``predict_ratings(users, movies)``,
the interface of the TensorFlow rating models, so ``evaluation.rating.rating_metrics`` scores them all alike.
Ids the fit never saw get the mean (and zero biases and factors).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def rating_columns(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = {"user_idx", "movie_idx", "user_rating"} - set(frame.columns)
    if missing:
        raise ValueError(f"the frame needs the columns {sorted(missing)}")
    if frame.empty:
        raise ValueError("cannot fit a rating model on an empty frame")
    return (
        frame["user_idx"].to_numpy(np.int64),
        frame["movie_idx"].to_numpy(np.int64),
        frame["user_rating"].to_numpy(np.float64),
    )


class GlobalMean:
    """Predicts the training mean for every pair."""

    name = "global mean"

    def __init__(self, num_users: int, num_movies: int) -> None:
        self.mu = 0.0

    def fit(self, frame: pd.DataFrame) -> GlobalMean:
        self.mu = float(rating_columns(frame)[2].mean())
        return self

    def predict_ratings(self, users, movies) -> np.ndarray:
        return np.full(np.shape(users), self.mu)


class Biases(GlobalMean):
    """``mu + b_user + b_movie`` with ridge penalty ``lam`` on each bias (alternating exact updates)."""

    name = "user + movie biases"

    def __init__(self, num_users: int, num_movies: int, lam: float = 5.0, iterations: int = 10) -> None:
        super().__init__(num_users, num_movies)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        self.lam, self.iterations = float(lam), int(iterations)
        self.user_bias = np.zeros(num_users + 1)
        self.movie_bias = np.zeros(num_movies + 1)

    def fit(self, frame: pd.DataFrame) -> Biases:
        users, movies, ratings = rating_columns(frame)
        self.mu = float(ratings.mean())
        user_counts = np.bincount(users, minlength=len(self.user_bias))
        movie_counts = np.bincount(movies, minlength=len(self.movie_bias))
        for _ in range(self.iterations):
            residual = ratings - self.mu - self.movie_bias[movies]
            self.user_bias = _ratio(np.bincount(users, residual, len(self.user_bias)), self.lam + user_counts)
            residual = ratings - self.mu - self.user_bias[users]
            self.movie_bias = _ratio(np.bincount(movies, residual, len(self.movie_bias)), self.lam + movie_counts)
        return self

    def predict_ratings(self, users, movies) -> np.ndarray:
        users, movies = np.asarray(users), np.asarray(movies)
        return self.mu + self.user_bias[users] + self.movie_bias[movies]


class BiasedMF(Biases):
    """``mu + b_user + b_movie + <p_user, q_movie>`` by ALS-WR: ``factors`` dimensions, penalty ``lam * n``."""

    name = "biased matrix factorisation (ALS)"

    def __init__(
        self, num_users: int, num_movies: int, factors: int = 120, lam: float = 0.1, iterations: int = 15, seed: int = 0
    ) -> None:
        super().__init__(num_users, num_movies, lam, iterations)
        if factors < 1:
            raise ValueError(f"factors must be at least 1, got {factors}")
        rng = np.random.default_rng(seed)
        self.factors = int(factors)
        self.user_factors = 0.1 * rng.standard_normal((num_users + 1, factors))
        self.movie_factors = 0.1 * rng.standard_normal((num_movies + 1, factors))

    def fit(self, frame: pd.DataFrame) -> BiasedMF:
        users, movies, ratings = rating_columns(frame)
        self.mu = float(ratings.mean())
        target = ratings - self.mu
        by_user, by_movie = _groups(users), _groups(movies)
        for _ in range(self.iterations):
            # users: solve for [p_u, b_u] against the fixed movie side [q_m, 1], target r - mu - b_m
            self.user_factors, self.user_bias = _solve_side(
                by_user, movies, target - self.movie_bias[movies], self.movie_factors, self.lam, self.user_factors
            )
            self.movie_factors, self.movie_bias = _solve_side(
                by_movie, users, target - self.user_bias[users], self.user_factors, self.lam, self.movie_factors
            )
        return self

    def predict_ratings(self, users, movies) -> np.ndarray:
        users, movies = np.asarray(users), np.asarray(movies)
        dot = np.einsum("...f,...f->...", self.user_factors[users], self.movie_factors[movies])
        return self.mu + self.user_bias[users] + self.movie_bias[movies] + dot


def _ratio(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``total / count``, 0 where ``count`` is 0 (an id without ratings keeps a zero bias)."""
    return np.divide(total, count, out=np.zeros(len(total)), where=count > 0)


def _groups(ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(id, row positions)`` for every id present, in id order."""
    order = np.argsort(ids, kind="stable")
    present, starts = np.unique(ids[order], return_index=True)
    return list(zip(present.tolist(), np.split(order, starts[1:]), strict=True))


def _solve_side(groups, other_ids, target, other_factors, lam, own_factors):
    """One ALS half-step: for each id, ridge regression of ``target`` on ``[other factors, 1]`` with penalty
    ``lam * n`` (the bias column penalised too).  Ids without rows keep zero factors and bias."""
    factors = np.zeros_like(own_factors)
    bias = np.zeros(len(own_factors))
    size = own_factors.shape[1] + 1
    for own, rows in groups:
        design = np.concatenate([other_factors[other_ids[rows]], np.ones((len(rows), 1))], axis=1)
        gram = design.T @ design + lam * len(rows) * np.eye(size)
        solution = np.linalg.solve(gram, design.T @ target[rows])
        factors[own], bias[own] = solution[:-1], solution[-1]
    return factors, bias
