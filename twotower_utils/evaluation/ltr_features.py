"""Features of a learning-to-rank re-ranker: one row per (user, stage-one candidate), from TRAINING data only.

``fit_signals(train, ...)`` fits everything the features read on one training frame (the frame stage one and the
baselines were fitted on) and nothing else: EASE and recency-weighted EASE scores, a rating prediction (biased MF
by ALS), the movies' and users' counts, mean ratings and last rating times.  ``candidate_matrix`` then turns a
``[num_users + 1, N]`` array of candidate ids and stage one's score matrix into ``[num_users + 1, N, F]`` features
and their names.  No function here takes a test frame: the ``data`` argument is read for its sizes and its movie
titles (the release year) only, never for ``data.ratings`` (which holds the test ratings too).

The features (``FEATURE_NAMES`` lists them in order):

* stage one: its score, the score standardised within the user's list, ``log(1 + rank)`` in its list;
* EASE's score, raw and standardised within the list (lambda: the caller's, e.g. ``presets.ease_lambda``);
* recency-weighted EASE's score (the user's latest training ratings weighted up), raw and standardised;
* the predicted rating (``models.rating_baselines.BiasedMF``), raw and standardised;
* optional extra scores (e.g. a sequence tower's), raw and standardised, named by the caller;
* the movie: popularity ``log(1 + training ratings)``, its mean training rating (shrunk to the global mean),
  its age in years (the training data's last rating's year less the title's year; no year: the median), days
  since its last training rating (never rated: since the training data's first rating);
* the user: activity ``log(1 + training ratings)``, mean training rating, days between the user's last
  training rating and the training data's end, days between the user's last rating and the movie's last
  rating (signed: positive when the movie was rated after the user's last rating);
* the movie's and the user's counts as log shares of the training ratings (``SCALE_FREE`` keeps these, not the
  raw counts and raw scores, whose scale moves between a validation fold's models and the test's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from twotower_utils.data.features import movie_year
from twotower_utils.data.history import latest_histories, longest_history
from twotower_utils.evaluation import baselines
from twotower_utils.evaluation.reranking import gather, standardise
from twotower_utils.models.rating_baselines import BiasedMF

DAY = 86400.0
YEAR = 365.25 * DAY
SHRINK = 10.0  # a movie's mean rating is pulled to the global mean as if it had this many more ratings

SCORE_FEATURES = ("stage-one score", "EASE score", "recency-weighted EASE score", "predicted rating")
MOVIE_FEATURES = (
    "movie popularity, log(1 + n)",
    "movie mean rating (shrunk)",
    "movie age, years",
    "days since the movie's last rating",
)
SHARE_FEATURES = ("movie popularity, log share of the ratings", "user activity, log share of the ratings")
USER_FEATURES = (
    "user activity, log(1 + n)",
    "user mean rating",
    "days since the user's last rating",
    "movie's last rating after the user's, days",
)


@dataclass
class TrainingSignals:
    """What the features read, all fitted on one training frame: two ``[num_users + 1, num_movies + 1]`` score
    matrices, the rating model, per-movie and per-user statistics and the frame's last timestamp."""

    ease: np.ndarray
    recency_ease: np.ndarray
    rating_model: BiasedMF
    movie_count: np.ndarray
    movie_mean: np.ndarray
    movie_last: np.ndarray
    movie_year: np.ndarray
    user_count: np.ndarray
    user_mean: np.ndarray
    user_last: np.ndarray
    end_time: float


def fit_signals(
    train: pd.DataFrame,
    num_users: int,
    num_movies: int,
    movie_titles,
    *,
    ease_lambda: float,
    recency: Mapping[str, float],
    rating_settings: Mapping[str, float] | None = None,
    seed: int = 0,
) -> TrainingSignals:
    """Fit every signal on ``train`` (``user_idx``, ``movie_idx``, ``user_rating``, ``timestamp``).
    ``movie_titles`` are the ``num_movies`` titles in id order (``data.movie_vocabulary``), read for the year only;
    ``recency`` is recency-weighted EASE's ``{"lambda", "a", "tau"}``; ``rating_settings`` ``BiasedMF``'s
    (``factors``, ``lam``, ``iterations``)."""
    users = train["user_idx"].to_numpy(np.int64)
    movies = train["movie_idx"].to_numpy(np.int64)
    ratings = train["user_rating"].to_numpy(np.float64)
    times = train["timestamp"].to_numpy(np.float64)
    ease = baselines.ease_scores(train, num_users, num_movies, ease_lambda)
    histories = latest_histories(train, np.arange(num_users + 1), longest_history(train))
    recency_ease = baselines.recency_ease_scores(
        train, histories, num_users, num_movies, recency["lambda"], recency["a"], recency["tau"]
    )
    with threadpool_limits(1):  # ALS solves thousands of small systems, which threads only slow down
        rating_model = BiasedMF(num_users, num_movies, seed=seed, **dict(rating_settings or {})).fit(train)

    mean = float(ratings.mean()) if len(ratings) else 0.0
    movie_count = np.bincount(movies, minlength=num_movies + 1).astype(np.float64)
    movie_total = np.bincount(movies, weights=ratings, minlength=num_movies + 1)
    user_count = np.bincount(users, minlength=num_users + 1).astype(np.float64)
    user_total = np.bincount(users, weights=ratings, minlength=num_users + 1)
    end_time = float(times.max()) if len(times) else 0.0
    start_time = float(times.min()) if len(times) else 0.0
    movie_last = np.full(num_movies + 1, start_time)  # never rated: as if last rated at the data's start
    np.maximum.at(movie_last, movies, times)
    user_last = np.full(num_users + 1, start_time)
    np.maximum.at(user_last, users, times)
    years = np.array([np.nan] + [movie_year(str(t)) or np.nan for t in movie_titles], dtype=np.float64)
    if len(years) != num_movies + 1:
        raise ValueError(f"{len(years) - 1} movie titles for {num_movies} movies")
    known = years[np.isfinite(years)]
    years[~np.isfinite(years)] = np.median(known) if len(known) else 1970.0  # no year in the title: the median
    return TrainingSignals(
        ease=ease,
        recency_ease=recency_ease,
        rating_model=rating_model,
        movie_count=movie_count,
        movie_mean=(movie_total + SHRINK * mean) / (movie_count + SHRINK),
        movie_last=movie_last,
        movie_year=years,
        user_count=user_count,
        user_mean=np.divide(user_total, user_count, out=np.full_like(user_total, mean), where=user_count > 0),
        user_last=user_last,
        end_time=end_time,
    )


def feature_names(extra: tuple[str, ...] = ()) -> list[str]:
    """The names of ``candidate_matrix``'s columns, in order."""
    names = []
    for name in (*SCORE_FEATURES, *extra):
        names += [name, f"{name} (standardised)"]
        if name == SCORE_FEATURES[0]:
            names.append("stage-one rank, log(1 + rank)")
    return names + list(MOVIE_FEATURES) + list(USER_FEATURES) + list(SHARE_FEATURES)


FEATURE_NAMES = feature_names()
# The features whose scale does not move with the training frame's size or the model: what a re-ranker fitted on a
# validation fold's lists (a smaller training part, another stage-one model) can apply to the test lists.  Raw
# scores and raw counts are left out (a tree's thresholds on them do not carry over); their standardised forms and
# the shares stay.
SCALE_FREE = tuple(
    name
    for name in FEATURE_NAMES
    if name not in (*SCORE_FEATURES, "movie popularity, log(1 + n)", "user activity, log(1 + n)")
)


def select(features: np.ndarray, names: list[str], keep) -> tuple[np.ndarray, list[str]]:
    """The columns of ``features`` named in ``keep`` (in ``names``' order) and their names."""
    columns = [i for i, name in enumerate(names) if name in set(keep)]
    return features[..., columns], [names[i] for i in columns]


def candidate_matrix(
    candidate_ids: np.ndarray,
    stage_one: np.ndarray,
    signals: TrainingSignals,
    extra_scores: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """``[num_users + 1, N, F]`` float32 features of each user's candidates (``candidate_ids``, stage one's top N
    best first) and their names (``feature_names``).  ``stage_one`` is stage one's ``[num_users + 1,
    num_movies + 1]`` score matrix; ``extra_scores`` more ``[num_users + 1, N]`` candidate scores by name."""
    ids = np.asarray(candidate_ids, dtype=np.int64)
    rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
    scores = {
        SCORE_FEATURES[0]: gather(stage_one, ids),
        SCORE_FEATURES[1]: gather(signals.ease, ids),
        SCORE_FEATURES[2]: gather(signals.recency_ease, ids),
        SCORE_FEATURES[3]: signals.rating_model.predict_ratings(rows, ids),
        **dict(extra_scores or {}),
    }
    columns = []
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != ids.shape:
            raise ValueError(f"{name}: {values.shape} scores for {ids.shape} candidates")
        columns += [values, standardise(values)]
        if name == SCORE_FEATURES[0]:
            columns.append(np.broadcast_to(np.log1p(np.arange(ids.shape[1], dtype=np.float64)), ids.shape))

    def per_movie(values):
        return values[ids]

    def per_user(values):
        return np.broadcast_to(values[: len(ids), None], ids.shape)

    movie_last = per_movie(signals.movie_last)
    user_last = per_user(signals.user_last)
    columns += [
        per_movie(np.log1p(signals.movie_count)),
        per_movie(signals.movie_mean),
        (signals.end_time / YEAR + 1970.0) - per_movie(signals.movie_year),
        (signals.end_time - movie_last) / DAY,
        per_user(np.log1p(signals.user_count)),
        per_user(signals.user_mean),
        (signals.end_time - user_last) / DAY,
        (movie_last - user_last) / DAY,
        per_movie(np.log1p(signals.movie_count) - np.log1p(signals.movie_count.sum())),
        per_user(np.log1p(signals.user_count) - np.log1p(signals.user_count.sum())),
    ]
    names = feature_names(tuple((extra_scores or {}).keys()))
    return np.stack(columns, axis=-1).astype(np.float32), names
