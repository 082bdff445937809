"""Bayesian matrix factorisation by Gibbs sampling (Salakhutdinov & Mnih 2008), in NumPy, with biases and
optional time effects (the baseline terms of Koren's timeSVD++, 2009), plus a point-estimate time-effects
biases model.

``BayesianMF``: ``r = mu + b_user + b_movie + <p_user, q_movie> [+ time terms] + noise``.

* Each user's ``x_u = [p_u, b_u (, a_u)]`` and each movie's ``y_m = [q_m, b_m]`` have a Gaussian prior whose
  mean and precision matrix get a Gaussian-Wishart hyperprior (BPMF's ``mu0 = 0, beta0 = 2, W0 = I,
  nu0 = dim``), so the bias and the factors share one learned prior.  Given the other side, every user's (resp.
  movie's) vector has a Gaussian conditional; all of them are drawn at once (batched Cholesky).
* The noise precision ``alpha`` is drawn from its Gamma conditional (or held fixed with ``noise_precision``).
* ``time_effects=True`` adds timeSVD++'s baseline terms: a per-user drift ``a_u * dev_u(t)`` with
  ``dev_u(t) = sign(t - t_u) |t - t_u| ** 0.4`` (days; ``t_u`` the user's mean rating day) as a third user
  coordinate, a per-movie time-bin bias ``b_{m, bin(t)}`` and a per-(user, day) bias ``b_{u, day}``; each group of
  scalar terms has its own Gamma-distributed precision.
* Predictions average ``samples`` draws after ``burn_in`` sweeps: the mean of ``mu + x_u . [y_m, 1]`` for every
  (user, movie) pair is accumulated as one dense matrix (943 x 1,682 for 100K), the time terms (linear) as
  running means.  Predictions are clipped to the rating scale.

Ids without training ratings keep zero vectors, so an unseen user gets ``mu + b_movie``, an unseen movie
``mu + b_user`` and an unseen pair of both the mean; a (user, day) or (movie, bin) the fit never saw adds 0.

``TimeBiases``: the same time terms fitted as ridge point estimates (``mu + b_u + a_u dev_u(t) + b_{u,day}
+ b_m + b_{m,bin(t)}``), by alternating exact updates -- timeSVD++'s baseline predictor.

Both have ``fit(frame)``, ``predict(users, movies, timestamps=None)``, ``predict_frame(frame)`` (uses the
``timestamp`` column when there is one) and ``predict_ratings(users, movies)`` (no time terms but the drift-free
ones), the interface of ``models.rating_baselines``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy import sparse, stats

from twotower_utils.models.rating_baselines import rating_columns

SECONDS_PER_DAY = 86_400.0
DRIFT_EXPONENT = 0.4


class TimeClock:
    """The time features of timeSVD++: the day of a rating, the user's mean day, ``dev_u(t)`` and the bin."""

    def __init__(self, num_users: int, bins: int = 30) -> None:
        self.num_users, self.bins = int(num_users), int(bins)
        self.user_mean_day = np.zeros(num_users + 1)
        self.first_day, self.last_day = 0.0, 1.0
        self.day_keys: dict[tuple[int, int], int] = {}

    def fit(self, users: np.ndarray, timestamps: np.ndarray) -> TimeClock:
        days = np.asarray(timestamps, dtype=np.float64) / SECONDS_PER_DAY
        counts = np.bincount(users, minlength=self.num_users + 1)
        total = np.bincount(users, days, minlength=self.num_users + 1)
        self.user_mean_day = np.divide(total, counts, out=np.zeros(len(total)), where=counts > 0)
        self.first_day, self.last_day = float(days.min()), float(days.max())
        keys = pd.unique(users * 1_000_000 + np.floor(days).astype(np.int64))
        self.day_keys = {int(k): i for i, k in enumerate(keys)}
        return self

    def deviation(self, users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        gap = np.asarray(timestamps, dtype=np.float64) / SECONDS_PER_DAY - self.user_mean_day[users]
        return np.sign(gap) * np.abs(gap) ** DRIFT_EXPONENT

    def bin(self, timestamps: np.ndarray) -> np.ndarray:
        days = np.asarray(timestamps, dtype=np.float64) / SECONDS_PER_DAY
        width = max(self.last_day - self.first_day, 1e-9) / self.bins
        return np.clip(((days - self.first_day) / width).astype(np.int64), 0, self.bins - 1)

    def day_index(self, users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """Index of each rating's (user, day) among the fit's; -1 for a (user, day) the fit never saw."""
        keys = users * 1_000_000 + np.floor(np.asarray(timestamps, dtype=np.float64) / SECONDS_PER_DAY).astype(np.int64)
        return np.array([self.day_keys.get(int(k), -1) for k in keys], dtype=np.int64)


def _gram(own, other, factors, extras, target, num_own):
    """Per own id: ``sum d d^T`` and ``sum d * target`` over its ratings, with design rows
    ``d = [factors[other], extras]`` (``extras``: ``[n, e]`` per-rating columns), via sparse products."""
    n, dim = len(own), factors.shape[1]
    size = dim + extras.shape[1]
    num_other = len(factors)

    def per_pair(weights):
        return sparse.csr_matrix((weights, (own, other)), shape=(num_own, num_other))

    ones = per_pair(np.ones(n))
    outer = np.einsum("id,ie->ide", factors, factors).reshape(num_other, dim * dim)
    gram = np.zeros((num_own, size, size))
    gram[:, :dim, :dim] = (ones @ outer).reshape(num_own, dim, dim)
    rhs = np.zeros((num_own, size))
    rhs[:, :dim] = per_pair(target) @ factors
    for k in range(extras.shape[1]):
        cross = per_pair(extras[:, k]) @ factors
        gram[:, :dim, dim + k] = cross
        gram[:, dim + k, :dim] = cross
        for j in range(k, extras.shape[1]):
            value = np.bincount(own, extras[:, k] * extras[:, j], minlength=num_own)
            gram[:, dim + k, dim + j] = value
            gram[:, dim + j, dim + k] = value
        rhs[:, dim + k] = np.bincount(own, extras[:, k] * target, minlength=num_own)
    return gram, rhs


def _draw_gaussians(precision, linear, rng):
    """One draw from ``N(precision^-1 linear, precision^-1)`` for each row (batched)."""
    chol = np.linalg.cholesky(precision)
    mean = np.linalg.solve(precision, linear[..., None])[..., 0]
    noise = rng.standard_normal(linear.shape)
    return mean + np.linalg.solve(np.swapaxes(chol, 1, 2), noise[..., None])[..., 0]


def _draw_hyper(vectors, rng, beta0=2.0):
    """Gaussian-Wishart conditional of the prior's mean and precision given the vectors (BPMF, W0 = I)."""
    count, dim = vectors.shape
    nu0 = dim
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    scatter = centred.T @ centred
    beta_n, nu_n = beta0 + count, nu0 + count
    mu_n = count * mean / beta_n
    inverse_scale = np.eye(dim) + scatter + beta0 * count / beta_n * np.outer(mean, mean)
    scale = np.linalg.inv(inverse_scale)
    scale = (scale + scale.T) / 2
    precision = stats.wishart.rvs(df=nu_n, scale=scale, random_state=rng)
    precision = np.atleast_2d(precision)
    prior_mean = rng.multivariate_normal(mu_n, np.linalg.inv(beta_n * precision))
    return prior_mean, precision


def _draw_scalars(groups, residual, num_groups, alpha, tau, rng):
    """Gaussian conditional of one scalar term per group (e.g. per (user, day)), prior ``N(0, 1/tau)``."""
    count = np.bincount(groups, minlength=num_groups)
    total = np.bincount(groups, residual, minlength=num_groups)
    precision = tau + alpha * count
    return alpha * total / precision + rng.standard_normal(num_groups) / np.sqrt(precision)


def _draw_precision(values, rng, shape0=1.0, rate0=1.0):
    """Gamma conditional of a zero-mean Gaussian's precision given its values."""
    return rng.gamma(shape0 + values.size / 2, 1.0 / (rate0 + float(values @ values) / 2))


class _TimedPredictions:
    """``predict_ratings`` (pairs) and ``predict_frame`` (a frame's pairs at its ratings' times) from ``predict``."""

    def predict_ratings(self, users, movies) -> np.ndarray:
        return self.predict(users, movies)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        stamps = frame["timestamp"].to_numpy() if "timestamp" in frame.columns else None
        return self.predict(frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy(), stamps)


class BayesianMF(_TimedPredictions):
    """Bayesian (time-aware) biased MF by Gibbs sampling; see the module docstring."""

    name = "Bayesian MF (Gibbs)"

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        factors: int = 10,
        burn_in: int = 50,
        samples: int = 150,
        time_effects: bool = False,
        day_bias: bool = True,
        bins: int = 30,
        noise_precision: float | None = None,
        seed: int = 0,
        low: float = 1.0,
        high: float = 5.0,
        verbose: bool = False,
    ) -> None:
        if factors < 1:
            raise ValueError(f"factors must be at least 1, got {factors}")
        if samples < 1 or burn_in < 0:
            raise ValueError(f"need samples >= 1 and burn_in >= 0, got {samples} and {burn_in}")
        self.num_users, self.num_movies = int(num_users), int(num_movies)
        self.factors, self.burn_in, self.samples = int(factors), int(burn_in), int(samples)
        self.time_effects, self.day_bias, self.bins = bool(time_effects), bool(day_bias), int(bins)
        self.noise_precision, self.seed = noise_precision, int(seed)
        self.low, self.high, self.verbose = low, high, verbose
        self.mu = 0.0
        self.mean_scores: np.ndarray | None = None  # [users + 1, movies + 1]: mean of x_u . [y_m, 1]
        self.drift = np.zeros(num_users + 1)
        self.bin_bias = np.zeros((num_movies + 1, bins))
        self.day_bias_values = np.zeros(0)
        self.clock: TimeClock | None = None
        self.alpha_trace: list[float] = []
        self.fit_seconds = 0.0

    def fit(self, frame: pd.DataFrame) -> BayesianMF:
        start = time.perf_counter()
        users, movies, ratings = rating_columns(frame)
        rng = np.random.default_rng(self.seed)
        num_u, num_m, dim = self.num_users + 1, self.num_movies + 1, self.factors
        self.mu = float(ratings.mean())
        seen_users = np.bincount(users, minlength=num_u) > 0
        seen_movies = np.bincount(movies, minlength=num_m) > 0
        timed = self.time_effects
        if timed:
            if "timestamp" not in frame.columns:
                raise ValueError("time effects need the 'timestamp' column")
            stamps = frame["timestamp"].to_numpy(np.float64)
            self.clock = TimeClock(self.num_users, self.bins).fit(users, stamps)
            deviation = self.clock.deviation(users, stamps)
            movie_bins = movies * self.bins + self.clock.bin(stamps)
            days = self.clock.day_index(users, stamps)
            num_days = len(self.clock.day_keys)
        user_dim = dim + 1 + int(timed)
        user_vectors = np.zeros((num_u, user_dim))
        movie_vectors = np.zeros((num_m, dim + 1))
        user_vectors[seen_users, :dim] = 0.1 * rng.standard_normal((int(seen_users.sum()), dim))
        movie_vectors[seen_movies, :dim] = 0.1 * rng.standard_normal((int(seen_movies.sum()), dim))
        bin_terms = np.zeros(num_m * self.bins)
        day_terms = np.zeros(num_days if timed else 0)
        bin_tau = day_tau = 100.0
        alpha = 2.0 if self.noise_precision is None else float(self.noise_precision)
        total = np.zeros((num_u, num_m))
        drift_total, bin_total, day_total = np.zeros(num_u), np.zeros(num_m * self.bins), np.zeros(len(day_terms))
        extra_time = np.zeros(len(ratings))
        self.alpha_trace = []
        for sweep in range(self.burn_in + self.samples):
            if timed:
                extra_time = bin_terms[movie_bins] + (day_terms[days] if self.day_bias else 0.0)
            # users: target r - mu - b_m - time scalars, design [q_m, 1 (, dev)]
            prior_mean, prior_precision = _draw_hyper(user_vectors[seen_users], rng)
            target = ratings - self.mu - movie_vectors[movies, dim] - extra_time
            extras = np.ones((len(ratings), 1)) if not timed else np.stack([np.ones(len(ratings)), deviation], 1)
            gram, rhs = _gram(users, movies, movie_vectors[:, :dim], extras, target, num_u)
            drawn = _draw_gaussians(prior_precision + alpha * gram, prior_precision @ prior_mean + alpha * rhs, rng)
            user_vectors = np.where(seen_users[:, None], drawn, 0.0)
            # movies: target r - mu - b_u (- a_u dev) - time scalars, design [p_u, 1]
            prior_mean, prior_precision = _draw_hyper(movie_vectors[seen_movies], rng)
            user_offset = user_vectors[users, dim] + (user_vectors[users, dim + 1] * deviation if timed else 0.0)
            target = ratings - self.mu - user_offset - extra_time
            gram, rhs = _gram(movies, users, user_vectors[:, :dim], np.ones((len(ratings), 1)), target, num_m)
            drawn = _draw_gaussians(prior_precision + alpha * gram, prior_precision @ prior_mean + alpha * rhs, rng)
            movie_vectors = np.where(seen_movies[:, None], drawn, 0.0)
            core = (
                np.einsum("nd,nd->n", user_vectors[users, :dim], movie_vectors[movies, :dim])
                + user_offset
                + movie_vectors[movies, dim]
            )
            if timed:
                residual = ratings - self.mu - core - (day_terms[days] if self.day_bias else 0.0)
                bin_terms = _draw_scalars(movie_bins, residual, len(bin_terms), alpha, bin_tau, rng)
                bin_tau = _draw_precision(bin_terms[np.bincount(movie_bins, minlength=len(bin_terms)) > 0], rng)
                if self.day_bias:
                    residual = ratings - self.mu - core - bin_terms[movie_bins]
                    day_terms = _draw_scalars(days, residual, num_days, alpha, day_tau, rng)
                    day_tau = _draw_precision(day_terms, rng)
                extra_time = bin_terms[movie_bins] + (day_terms[days] if self.day_bias else 0.0)
            if self.noise_precision is None:
                error = ratings - self.mu - core - extra_time
                alpha = rng.gamma(1.0 + len(ratings) / 2, 1.0 / (1.0 + float(error @ error) / 2))
            self.alpha_trace.append(float(alpha))
            if sweep >= self.burn_in:
                total += (
                    user_vectors[:, : dim + 1] @ np.concatenate([movie_vectors[:, :dim], np.ones((num_m, 1))], axis=1).T
                )
                total += movie_vectors[None, :, dim]
                if timed:
                    drift_total += user_vectors[:, dim + 1]
                    bin_total += bin_terms
                    day_total += day_terms
            if self.verbose and (sweep + 1) % 25 == 0:
                print(f"  sweep {sweep + 1}: noise sd {1 / np.sqrt(alpha):.4f}", flush=True)
        self.mean_scores = total / self.samples
        if timed:
            self.drift = drift_total / self.samples
            self.bin_bias = (bin_total / self.samples).reshape(num_m, self.bins)
            self.day_bias_values = day_total / self.samples
        self.fit_seconds = time.perf_counter() - start
        return self

    def predict(self, users, movies, timestamps=None) -> np.ndarray:
        if self.mean_scores is None:
            raise ValueError("fit the model first")
        users, movies = np.asarray(users, dtype=np.int64), np.asarray(movies, dtype=np.int64)
        score = self.mu + self.mean_scores[users, movies]
        if self.time_effects and timestamps is not None:
            stamps = np.asarray(timestamps, dtype=np.float64)
            score = score + self.drift[users] * self.clock.deviation(users, stamps)
            score = score + self.bin_bias[movies, self.clock.bin(stamps)]
            if self.day_bias:
                days = self.clock.day_index(users.reshape(-1), stamps.reshape(-1)).reshape(users.shape)
                score = score + np.where(days >= 0, self.day_bias_values[np.maximum(days, 0)], 0.0)
        return np.clip(score, self.low, self.high)


class TimeBiases(_TimedPredictions):
    """timeSVD++'s baseline predictor as ridge point estimates:
    ``mu + b_u + a_u dev_u(t) + b_{u,day} + b_m + b_{m,bin(t)}``, fitted by alternating exact updates
    (each term's penalty: ``lam``, ``lam_drift``, ``lam_day``, ``lam``, ``lam_bin``)."""

    name = "time-aware biases"

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        lam: float = 5.0,
        lam_drift: float = 50.0,
        lam_day: float = 5.0,
        lam_bin: float = 20.0,
        bins: int = 30,
        iterations: int = 15,
        low: float = 1.0,
        high: float = 5.0,
    ) -> None:
        self.num_users, self.num_movies, self.bins = int(num_users), int(num_movies), int(bins)
        self.lam, self.lam_drift, self.lam_day, self.lam_bin = lam, lam_drift, lam_day, lam_bin
        self.iterations, self.low, self.high = int(iterations), low, high
        self.mu = 0.0
        self.user_bias, self.movie_bias = np.zeros(num_users + 1), np.zeros(num_movies + 1)
        self.drift = np.zeros(num_users + 1)
        self.bin_bias = np.zeros((num_movies + 1, bins))
        self.day_bias_values = np.zeros(0)
        self.clock: TimeClock | None = None

    def fit(self, frame: pd.DataFrame) -> TimeBiases:
        users, movies, ratings = rating_columns(frame)
        if "timestamp" not in frame.columns:
            raise ValueError("time effects need the 'timestamp' column")
        stamps = frame["timestamp"].to_numpy(np.float64)
        self.clock = TimeClock(self.num_users, self.bins).fit(users, stamps)
        deviation = self.clock.deviation(users, stamps)
        bins = movies * self.bins + self.clock.bin(stamps)
        days = self.clock.day_index(users, stamps)
        num_u, num_m = self.num_users + 1, self.num_movies + 1
        self.mu = float(ratings.mean())
        b_u, b_m, a_u = np.zeros(num_u), np.zeros(num_m), np.zeros(num_u)
        b_bin, b_day = np.zeros(num_m * self.bins), np.zeros(len(self.clock.day_keys))

        def ridge(groups, residual, size, lam, weight=None):
            weight = np.ones(len(residual)) if weight is None else weight
            total = np.bincount(groups, residual * weight, minlength=size)
            return total / (lam + np.bincount(groups, weight * weight, minlength=size))

        for _ in range(self.iterations):
            base = self.mu + b_m[movies] + b_bin[bins] + a_u[users] * deviation + b_day[days]
            b_u = ridge(users, ratings - base, num_u, self.lam)
            base = self.mu + b_u[users] + b_m[movies] + b_bin[bins] + b_day[days]
            a_u = ridge(users, ratings - base, num_u, self.lam_drift, deviation)
            base = self.mu + b_u[users] + a_u[users] * deviation + b_bin[bins] + b_day[days]
            b_m = ridge(movies, ratings - base, num_m, self.lam)
            base = self.mu + b_u[users] + a_u[users] * deviation + b_m[movies] + b_day[days]
            b_bin = ridge(bins, ratings - base, len(b_bin), self.lam_bin)
            base = self.mu + b_u[users] + a_u[users] * deviation + b_m[movies] + b_bin[bins]
            b_day = ridge(days, ratings - base, len(b_day), self.lam_day)
        self.user_bias, self.movie_bias, self.drift = b_u, b_m, a_u
        self.bin_bias, self.day_bias_values = b_bin.reshape(num_m, self.bins), b_day
        return self

    def predict(self, users, movies, timestamps=None) -> np.ndarray:
        users, movies = np.asarray(users, dtype=np.int64), np.asarray(movies, dtype=np.int64)
        score = self.mu + self.user_bias[users] + self.movie_bias[movies]
        if self.clock is not None and timestamps is not None:
            stamps = np.asarray(timestamps, dtype=np.float64)
            score = score + self.drift[users] * self.clock.deviation(users, stamps)
            score = score + self.bin_bias[movies, self.clock.bin(stamps)]
            days = self.clock.day_index(users.reshape(-1), stamps.reshape(-1)).reshape(users.shape)
            score = score + np.where(days >= 0, self.day_bias_values[np.maximum(days, 0)], 0.0)
        return np.clip(score, self.low, self.high)
