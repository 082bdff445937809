"""Counting: for each test interaction, how many catalogue movies score strictly above the true one.

This is the one core behind every hit rate of the project.  The true movie is in the top k exactly
when fewer than k candidates beat it, which is how ``tfrs.metrics.FactorizedTopK`` decides too
(``tf.math.in_top_k``: ties count as hits).  Two sources of scores go through the same loop:

* a **two-tower model** (``TowerScorer``): the catalogue is embedded once and a batch of users is scored
  with one matrix product, instead of ``FactorizedTopK``'s re-embedding of every candidate per batch;
* a **score matrix** ``[num_users + 1, num_movies + 1]`` (``MatrixScorer``), as the baselines make them
  (row 0 and column 0, the out-of-vocabulary slots, are never ranked).

Seen-item exclusion (the *filtered* protocol, TFRS issue #113) is a boolean ``seen_matrix`` of the same
shape; ``filtered_topk_accuracy`` builds it from the training frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf


def seen_matrix(frame: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """Boolean ``[num_users + 1, num_movies + 1]`` matrix: user id ``u`` rated movie id ``m`` in ``frame``."""
    seen = np.zeros((num_users + 1, num_movies + 1), dtype=bool)
    seen[frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy()] = True
    return seen


class TowerScorer:
    """Scores from a two-tower model's towers, one batch of users at a time.  A sequence user tower reads each
    user's last ratings of ``history_frame`` (the training frame) as the query (``two_tower.user_table``)."""

    def __init__(self, model, history_frame: pd.DataFrame | None = None) -> None:
        from twotower_utils.models.two_tower import user_table

        self.user_table = user_table(model, history_frame)
        self.movie_table = model.movie_tower.embed_all()
        self.shape = (int(self.user_table.shape[0]), int(self.movie_table.shape[0]))

    def batch(self, users: np.ndarray, movies: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        """``[B, num_movies]`` scores of the users against the catalogue, and each true movie's score
        computed as ``FactorizedTopK`` does (a row-wise sum, not the matrix product)."""
        queries = tf.gather(self.user_table, users)
        rows = tf.matmul(queries, self.movie_table[1:], transpose_b=True)
        positives = tf.reduce_sum(queries * tf.gather(self.movie_table, movies), axis=1)
        return rows, positives


class MatrixScorer:
    """Scores read from a ``[num_users + 1, num_movies + 1]`` score matrix."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores)
        self.shape = self.scores.shape

    def batch(self, users: np.ndarray, movies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.scores[users, 1:], self.scores[users, movies]


def scorer_for(source, history_frame: pd.DataFrame | None = None) -> TowerScorer | MatrixScorer:
    """A scorer for a two-tower model (a sequence tower's queries from ``history_frame``), a score matrix, or a
    scorer (returned as it is)."""
    if isinstance(source, (TowerScorer, MatrixScorer)):
        return source
    if isinstance(source, np.ndarray):
        return MatrixScorer(source)
    if hasattr(source, "user_tower") and hasattr(source, "movie_tower"):
        return TowerScorer(source, history_frame)
    raise TypeError(f"cannot score with a {type(source).__name__}: pass a two-tower model or a score matrix")


@tf.function(reduce_retracing=True)
def _count_beating(rows, positives, excluded):
    beating = tf.logical_and(rows > positives[:, tf.newaxis], tf.logical_not(excluded))
    return tf.reduce_sum(tf.cast(beating, tf.int32), axis=1)


def candidates_beating(
    source,
    frame: pd.DataFrame,
    batch_size: int = 4096,
    exclude: np.ndarray | None = None,
    tfrs_compatible: bool = False,
) -> np.ndarray:
    """For each interaction of ``frame``, how many catalogue movies score strictly above the true movie.

    ``source`` is a two-tower model or a score matrix (``scorer_for``).  ``exclude`` is an optional
    ``seen_matrix``: movies it marks for the user are not counted.  The true movie itself is never
    counted: ``FactorizedTopK`` scores it twice (a row-wise sum and a matrix product), and when rounding
    makes the second larger the movie "beats itself" and drops a place.  ``tfrs_compatible=True`` keeps
    that artefact, to reproduce ``FactorizedTopK`` number for number.
    """
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    scorer = scorer_for(source)
    num_candidates = scorer.shape[1] - 1
    users = frame["user_idx"].to_numpy(np.int64)
    movies = frame["movie_idx"].to_numpy(np.int64)
    counts = []
    for start in range(0, len(frame), batch_size):
        batch_users = users[start : start + batch_size]
        batch_movies = movies[start : start + batch_size]
        if exclude is None:
            excluded = np.zeros((len(batch_users), num_candidates), dtype=bool)
        else:
            excluded = exclude[batch_users, 1:].copy()
        # the true movie never counts against itself (unless we reproduce TFRS's rounding artefact)
        excluded[np.arange(len(batch_movies)), batch_movies - 1] = not tfrs_compatible
        rows, positives = scorer.batch(batch_users, batch_movies)
        counts.append(_count_beating(rows, positives, excluded).numpy())
    return np.concatenate(counts).astype(np.int64)


def hit_rates_from_counts(counts: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Top-k accuracy for each k: the share of interactions with fewer than k candidates above them."""
    if len(counts) == 0:
        return {k: float("nan") for k in ks}
    return {k: float(np.mean(counts < k)) for k in ks}


def topk_accuracy(
    source,
    frame: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    batch_size: int = 4096,
    exclude: np.ndarray | None = None,
    tfrs_compatible: bool = False,
) -> dict[int, float]:
    """``FactorizedTopK``'s top-k categorical accuracy (per-interaction hit rate @k) over the whole
    catalogue, computed exactly and fast, for a two-tower model or a score matrix."""
    return hit_rates_from_counts(candidates_beating(source, frame, batch_size, exclude, tfrs_compatible), ks)


def filtered_topk_accuracy(
    source,
    train: pd.DataFrame,
    frame: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    batch_size: int = 4096,
) -> dict[int, float]:
    """Hit rate @k with each user's ``train`` movies left out of the ranking (the filtered protocol); a
    sequence user tower reads each user's ``train`` ratings as the query."""
    scorer = scorer_for(source, train)
    seen = seen_matrix(train, scorer.shape[0] - 1, scorer.shape[1] - 1)
    return topk_accuracy(scorer, frame, ks, batch_size, exclude=seen)


def factorized_topk_reference(model, frame: pd.DataFrame, batch_size: int = 4096) -> dict[int, float]:
    """The same numbers the slow way: Keras ``evaluate`` with the TFRS task's ``FactorizedTopK``."""
    from twotower_utils.data.pipeline import interactions_dataset

    results = model.evaluate(interactions_dataset(frame, batch_size, shuffle=False), return_dict=True, verbose=0)
    found = {re.search(r"top_(\d+)_categorical", key): value for key, value in results.items()}
    return {int(match.group(1)): float(value) for match, value in found.items() if match}


def metric_name(k: int, prefix: str = "") -> str:
    """The Keras/TFRS history key for top-k accuracy (``val_`` prefix for the test set)."""
    return f"{prefix}factorized_top_k/top_{k}_categorical_accuracy"
