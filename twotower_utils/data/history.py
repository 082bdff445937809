"""History features: what each user did *before* an interaction, for the sequence user towers.

One function builds every history of the project, ``histories_before``: for each query row ``(user,
timestamp)``, the movie ids of the user's last ``length`` ratings in a *context* frame whose timestamp is
**strictly earlier**, oldest first and the latest in the last column, left-padded with 0 (the
out-of-vocabulary id, which the towers mask).  Strictly earlier: a rating never sees itself, a later
rating, or a rating given in the same second (MovieLens has many; their order inside the second is unknown).

* training examples: context and queries are the training frame (``training_histories``);
* evaluation queries: each user's last training ratings (``latest_histories``, the query time at infinity);
* users without training ratings (the global time cut): context = the test period itself, so each test
  rating is scored from the ratings the user gave earlier inside the test period, never later ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_TIME_LIMIT = 2**33  # timestamps must lie in [0, 2**33) (seconds: up to the year 2242)
LATEST = _TIME_LIMIT - 1  # a query time after every rating: the user's whole history


def _keys(users: np.ndarray, times: np.ndarray) -> np.ndarray:
    if times.size and (times.min() < 0 or times.max() >= _TIME_LIMIT):
        raise ValueError(f"timestamps must lie in [0, 2**33), got {times.min()} .. {times.max()}")
    return users.astype(np.int64) * _TIME_LIMIT + times.astype(np.int64)


def histories_before(context: pd.DataFrame, queries: pd.DataFrame, length: int) -> np.ndarray:
    """``[len(queries), length]`` int64 movie ids: for each query row (``user_idx``, ``timestamp``), the user's
    last ``length`` ratings of ``context`` with a strictly earlier timestamp, in time order (latest last),
    left-padded with 0.  Rows keep the order of ``queries``."""
    if not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"the history length must be a positive whole number, got {length!r}")
    for frame, what in ((context, "context"), (queries, "queries")):
        missing = {"user_idx", "timestamp"} - set(frame.columns)
        if missing:
            raise ValueError(f"{what} frame lacks column(s) {sorted(missing)}")
    if "movie_idx" not in context.columns:
        raise ValueError("context frame lacks column 'movie_idx'")
    ordered = context.sort_values(["user_idx", "timestamp"], kind="stable")
    keys = _keys(ordered["user_idx"].to_numpy(), ordered["timestamp"].to_numpy())
    movies = ordered["movie_idx"].to_numpy(np.int64)
    query_users = queries["user_idx"].to_numpy(np.int64)
    end = np.searchsorted(keys, _keys(query_users, queries["timestamp"].to_numpy()), side="left")
    start = np.searchsorted(keys, _keys(query_users, np.zeros_like(query_users)), side="left")
    positions = end[:, None] - length + np.arange(length)[None, :]
    valid = positions >= start[:, None]
    if not len(movies):
        return np.zeros((len(queries), length), dtype=np.int64)
    return np.where(valid, movies[np.clip(positions, 0, None)], 0).astype(np.int64)


def training_histories(train: pd.DataFrame, length: int) -> np.ndarray:
    """Each training interaction's history: the user's last ``length`` strictly earlier training ratings."""
    return histories_before(train, train, length)


def latest_histories(context: pd.DataFrame, users, length: int) -> np.ndarray:
    """``[len(users), length]``: each user's last ``length`` ratings of ``context`` (the evaluation query)."""
    users = np.asarray(users, dtype=np.int64)
    queries = pd.DataFrame({"user_idx": users, "timestamp": np.full(len(users), LATEST, dtype=np.int64)})
    return histories_before(context, queries, length)


def history_lengths(histories: np.ndarray) -> np.ndarray:
    """How many real (non-padding) movies each history holds."""
    return (np.asarray(histories) > 0).sum(axis=1)


def longest_history(frame: pd.DataFrame) -> int:
    """The most ratings any user has in ``frame`` (at least 1): a length that keeps every whole history."""
    return max(1, int(frame.groupby("user_idx").size().max())) if len(frame) else 1
