"""Exact, fast top-k evaluation of a two-tower model.

``tfrs.metrics.FactorizedTopK`` re-embeds and re-scores every candidate for each batch.
Here the candidates are embedded once, a batch of queries is scored with one matrix
product, and for each interaction we count the candidates that score *strictly above*
the true one.  The true movie is in the top k exactly when fewer than k candidates beat
it, which is how ``FactorizedTopK`` decides too (``tf.math.in_top_k``: ties count as hits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.model import TwoTowerModel


def seen_matrix(frame: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """Boolean ``[num_users + 1, num_movies + 1]`` matrix: user id ``u`` rated movie id ``m`` in ``frame``."""
    seen = np.zeros((num_users + 1, num_movies + 1), dtype=bool)
    seen[frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy()] = True
    return seen


@tf.function(reduce_retracing=True)
def _count_beating(queries, positives, candidates, excluded):
    positive_scores = tf.reduce_sum(queries * positives, axis=1, keepdims=True)  # as FactorizedTopK
    scores = tf.matmul(queries, candidates, transpose_b=True)
    beating = tf.logical_and(scores > positive_scores, tf.logical_not(excluded))
    return tf.reduce_sum(tf.cast(beating, tf.int32), axis=1)


def candidates_beating(
    model: TwoTowerModel,
    frame: pd.DataFrame,
    batch_size: int = 4096,
    exclude: np.ndarray | None = None,
    tfrs_compatible: bool = False,
) -> np.ndarray:
    """For each interaction, how many catalogue movies score strictly above the true movie.

    ``exclude`` is an optional ``seen_matrix``: movies it marks for the user are not
    counted.  The true movie itself is never counted: ``FactorizedTopK`` scores it twice
    (a row-wise sum and a matrix product), and when rounding makes the second larger the
    movie "beats itself" and drops a place.  ``tfrs_compatible=True`` keeps that artefact,
    to reproduce ``FactorizedTopK`` number for number.
    """
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    user_table = model.user_tower.embed_all()
    movie_table = model.movie_tower.embed_all()
    candidates = movie_table[1:]  # the catalogue: every title in the vocabulary, not the OOV row
    users = frame["user_idx"].to_numpy(np.int64)
    movies = frame["movie_idx"].to_numpy(np.int64)
    counts = []
    for start in range(0, len(frame), batch_size):
        batch_users = users[start : start + batch_size]
        batch_movies = movies[start : start + batch_size]
        if exclude is None:
            excluded = np.zeros((len(batch_users), candidates.shape[0]), dtype=bool)
        else:
            excluded = exclude[batch_users, 1:].copy()
        # the true movie never counts against itself (unless we reproduce TFRS's rounding artefact)
        excluded[np.arange(len(batch_movies)), batch_movies - 1] = not tfrs_compatible
        counts.append(
            _count_beating(
                tf.gather(user_table, batch_users),
                tf.gather(movie_table, batch_movies),
                candidates,
                tf.constant(excluded),
            ).numpy()
        )
    return np.concatenate(counts).astype(np.int64)


def hit_rates_from_counts(counts: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Top-k accuracy for each k: the share of interactions with fewer than k candidates above them."""
    if len(counts) == 0:
        return {k: float("nan") for k in ks}
    return {k: float(np.mean(counts < k)) for k in ks}


def topk_accuracy(
    model: TwoTowerModel,
    frame: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    batch_size: int = 4096,
    exclude: np.ndarray | None = None,
    tfrs_compatible: bool = False,
) -> dict[int, float]:
    """``FactorizedTopK``'s top-k categorical accuracy over the whole catalogue, computed exactly and fast."""
    return hit_rates_from_counts(candidates_beating(model, frame, batch_size, exclude, tfrs_compatible), ks)


def factorized_topk_reference(model: TwoTowerModel, frame: pd.DataFrame, batch_size: int = 4096) -> dict[int, float]:
    """The same numbers the slow way: Keras ``evaluate`` with the TFRS task's ``FactorizedTopK``."""
    from twotower_utils.data import interactions_dataset

    results = model.evaluate(interactions_dataset(frame, batch_size, shuffle=False), return_dict=True, verbose=0)
    found = {re.search(r"top_(\d+)_categorical", key): value for key, value in results.items()}
    return {int(match.group(1)): float(value) for match, value in found.items() if match}


def metric_name(k: int, prefix: str = "") -> str:
    """The Keras/TFRS history key for top-k accuracy (``val_`` prefix for the test set)."""
    return f"{prefix}factorized_top_k/top_{k}_categorical_accuracy"
