"""Baselines that every two-tower model must beat: random, most-popular and EASE; for the temporal protocols
(notebook 09) also "movies like the user's last one" (item-to-item cosine) and recency-weighted EASE.

Each returns a score matrix ``[num_users + 1, num_movies + 1]`` indexed by the integer ids
(row 0 and column 0, out-of-vocabulary, are unused), the shape of ``counting.seen_matrix``,
so they go through exactly the same metrics as the two-tower (``metrics.py``).

Those matrices are dense: 77 GB of float64 for MovieLens 25M's 162,541 users x 59,047 movies, and EASE's
item-item inverse 28 GB more.  Every dense array is checked against ``max_bytes`` (``DENSE_LIMIT_BYTES`` by
default) before it is allocated, and a refusal says how many bytes it would need.  The baseline that scales,
most-popular, also comes as ``PopularityScorer``: the score rows of a batch of users for ``metrics.evaluate``,
one ``[num_movies]`` vector in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.evaluation.counting import Scorer, filtered_topk_accuracy

EASE_LAMBDAS = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0)
RECENCY_STRENGTHS = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)  # a of 1 + a exp(-rank / tau)
RECENCY_SCALES = (1.0, 3.0, 10.0, 30.0, 100.0)  # tau, in ratings
# The most a dense baseline array may take (4 GiB: MovieLens 1M's EASE needs 0.3 GB, 20M's 29 GB).
DENSE_LIMIT_BYTES = 4 * 2**30


def require_dense(what: str, shape: tuple[int, ...], count: int = 1, max_bytes: int = DENSE_LIMIT_BYTES) -> None:
    """One clear ``ValueError`` instead of an allocation of tens of GB: ``count`` float64 arrays of ``shape``."""
    needed = 8 * count * int(np.prod(shape, dtype=np.float64))
    if needed > max_bytes:
        dims = " x ".join(f"{d:,}" for d in shape)
        raise ValueError(
            f"{what} needs {count} dense float64 array(s) of {dims} = {needed / 1e9:.1f} GB, over the limit of "
            f"{max_bytes / 1e9:.1f} GB (max_bytes, baselines.DENSE_LIMIT_BYTES); at this size use the "
            "most-popular baseline (PopularityScorer with metrics.evaluate) or raise max_bytes on a machine "
            "with the memory"
        )


def interaction_matrix(
    frame: pd.DataFrame, num_users: int, num_movies: int, max_bytes: int = DENSE_LIMIT_BYTES
) -> np.ndarray:
    """Binary ``[num_users + 1, num_movies + 1]`` float matrix of the interactions in ``frame``."""
    require_dense("the interaction matrix", (num_users + 1, num_movies + 1), max_bytes=max_bytes)
    matrix = np.zeros((num_users + 1, num_movies + 1), dtype=np.float64)
    matrix[frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy()] = 1.0
    return matrix


def random_scores(num_users: int, num_movies: int, seed: int = 0) -> np.ndarray:
    """Uniform random scores: the chance level (hit rate @k about k / catalogue)."""
    require_dense("the random baseline", (num_users + 1, num_movies + 1))
    return np.random.default_rng(seed).random((num_users + 1, num_movies + 1))


def popularity_vector(train: pd.DataFrame, num_movies: int) -> np.ndarray:
    """``[num_movies + 1]``: each movie's number of training interactions, less ``id / (num_movies + 1)``
    (equal counts: the lower movie id first, so no two movies tie)."""
    counts = np.bincount(train["movie_idx"].to_numpy(), minlength=num_movies + 1).astype(np.float64)
    return counts - np.arange(num_movies + 1) / (num_movies + 1)  # tie-break below one interaction


def popularity_scores(train: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """Every user gets the same list: movies by number of training interactions
    (equal counts: the lower movie id first, so no two movies tie); ``popularity_vector`` on every row."""
    require_dense("the most-popular score matrix", (num_users + 1, num_movies + 1))
    return np.broadcast_to(popularity_vector(train, num_movies), (num_users + 1, num_movies + 1)).copy()


class PopularityScorer(Scorer):
    """Most-popular without a ``[users x movies]`` matrix: every user's row is the same vector, broadcast per
    batch (``4 B M`` bytes).  The scores are ``num_movies - rank`` in float32 (rank 0: the most popular, ties
    broken as ``popularity_vector`` does), exact integers below 2**24 movies, so the order, the hits and the
    lists are those of ``popularity_scores`` while a batch costs half the bytes of float64."""

    def __init__(self, train: pd.DataFrame, num_users: int, num_movies: int) -> None:
        order = np.argsort(-popularity_vector(train, num_movies)[1:], kind="stable")
        rank = np.empty(num_movies, dtype=np.int64)
        rank[order] = np.arange(num_movies)
        self.row = tf.constant((num_movies - rank).astype(np.float32))
        self.shape = (num_users + 1, num_movies + 1)

    def rows(self, users: np.ndarray, width: int | None = None) -> tf.Tensor:
        width = self.shape[1] - 1 if width is None else width
        return tf.broadcast_to(tf.pad(self.row, [[0, width - len(self.row)]]), [len(users), width])


def ease_weights(matrix: np.ndarray, lam: float, max_bytes: int = DENSE_LIMIT_BYTES) -> np.ndarray:
    """EASE (Steck 2019): ``P = (X^T X + lam I)^-1``, ``B = -P / diag(P)`` column-wise, ``diag(B) = 0``.

    Peak memory: three dense float64 ``[M + 1, M + 1]`` arrays (the Gram matrix, its inverse, the weights),
    ``24 (M + 1)^2`` bytes: 0.07 GB for 100K's 1,682 movies, 84 GB for 25M's 59,047, which is refused
    (``require_dense``) above ``max_bytes``."""
    require_ease(matrix.shape[1] - 1, max_bytes)
    gram = matrix.T @ matrix
    gram[np.diag_indices_from(gram)] += lam
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def require_ease(num_movies: int, max_bytes: int = DENSE_LIMIT_BYTES) -> None:
    """EASE's dense item-item inverse, refused in one clear error when the catalogue is too large for it."""
    require_dense(f"EASE on {num_movies:,} movies (its M x M inverse)", (num_movies + 1, num_movies + 1), 3, max_bytes)


def ease_scores(
    train: pd.DataFrame, num_users: int, num_movies: int, lam: float, max_bytes: int = DENSE_LIMIT_BYTES
) -> np.ndarray:
    """Scores ``X B`` of an EASE model fitted on ``train``, ties (e.g. a user without training
    interactions: all zeros) broken by popularity, so such users get the most-popular list.  Peak memory:
    ``ease_weights``'s ``24 (M + 1)^2`` bytes plus two ``[U + 1, M + 1]`` float64 matrices (X and the scores),
    each checked against ``max_bytes`` first."""
    require_ease(num_movies, max_bytes)
    require_dense("EASE's interaction and score matrices", (num_users + 1, num_movies + 1), 2, max_bytes)
    matrix = interaction_matrix(train, num_users, num_movies, max_bytes)
    return _popularity_ties(matrix @ ease_weights(matrix, lam, max_bytes), train, num_users, num_movies)


def _popularity_ties(scores: np.ndarray, train: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    tie_break = popularity_vector(train, num_movies)
    return scores + 1e-9 * tie_break / max(tie_break.max(), 1.0)


def recency_matrix(histories: np.ndarray, num_movies: int, strength: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """``[len(histories), num_movies + 1]``: row i weights the movies of history i (``data.history``: latest in
    the last column, 0 padding) by ``1 + strength * exp(-rank / scale)``, rank 0 the latest.  Strength 0 is
    the binary interaction matrix of the histories."""
    histories = np.asarray(histories, dtype=np.int64)
    ranks = np.arange(histories.shape[1])[::-1]
    weights = np.broadcast_to(1.0 + strength * np.exp(-ranks / scale), histories.shape)
    matrix = np.zeros((len(histories), num_movies + 1))
    rows = np.broadcast_to(np.arange(len(histories))[:, None], histories.shape)
    real = histories > 0
    matrix[rows[real], histories[real]] = weights[real]
    matrix[:, 0] = 0.0
    return matrix


def recency_ease_scores(
    train: pd.DataFrame,
    histories: np.ndarray,
    num_users: int,
    num_movies: int,
    lam: float,
    strength: float,
    scale: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Recency-weighted EASE: EASE's item-item weights (fitted on ``train``; pass ``weights`` to reuse them)
    applied to each history with recent ratings weighted up (``recency_matrix``); one row per history (per
    user id when the histories are ``latest_histories`` of every id), popularity breaking ties."""
    if weights is None:
        weights = ease_weights(interaction_matrix(train, num_users, num_movies), lam)
    scores = recency_matrix(histories, num_movies, strength, scale) @ weights
    return _popularity_ties(scores, train, num_users, num_movies)


def item_similarity(train: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """``[num_movies + 1, num_movies + 1]`` cosine similarity of the movies' training-user columns (diagonal 0)."""
    require_dense("the item-item similarity", (num_movies + 1, num_movies + 1), 2)
    matrix = interaction_matrix(train, num_users, num_movies)
    norms = np.sqrt(matrix.sum(axis=0))
    similarity = (matrix.T @ matrix) / np.maximum(np.outer(norms, norms), 1e-12)
    similarity[np.diag_indices_from(similarity)] = 0.0
    return similarity


def last_item_scores(
    train: pd.DataFrame, histories: np.ndarray, num_users: int, num_movies: int, similarity: np.ndarray | None = None
) -> np.ndarray:
    """ "Movies like the user's last one": each history's latest movie's cosine row (``item_similarity``);
    an empty history scores nothing, so popularity (the tie-break) decides."""
    if similarity is None:
        similarity = item_similarity(train, num_users, num_movies)
    last = np.asarray(histories, dtype=np.int64)[:, -1]
    scores = similarity[last]
    scores[last == 0] = 0.0
    return _popularity_ties(scores, train, num_users, num_movies)


def tune_recency_ease(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    histories: np.ndarray,
    num_users: int,
    num_movies: int,
    lambdas: Sequence[float] = EASE_LAMBDAS,
    strengths: Sequence[float] = RECENCY_STRENGTHS,
    scales: Sequence[float] = RECENCY_SCALES,
    k: int = 10,
) -> tuple[dict[str, float], dict[tuple[float, float, float], float]]:
    """Choose recency-weighted EASE's lambda, strength a and scale tau by filtered hit rate @k on
    ``validation`` (each user's last training ratings); ``histories`` are every user id's ``train`` history
    (``latest_histories``).  Returns the best ``{"lambda", "a", "tau"}`` and every setting's hit rate."""
    found = {}
    require_ease(num_movies)
    matrix = interaction_matrix(train, num_users, num_movies)
    for lam in lambdas:
        weights = ease_weights(matrix, lam)
        for strength in strengths:
            for scale in scales if strength else scales[:1]:
                scores = recency_ease_scores(train, histories, num_users, num_movies, lam, strength, scale, weights)
                found[(float(lam), float(strength), float(scale))] = filtered_topk_accuracy(
                    scores, train, validation, [k]
                )[k]
    lam, strength, scale = max(found, key=lambda key: (found[key], -key[1], -key[0]))
    return {"lambda": lam, "a": strength, "tau": scale}, found


def tune_ease(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    num_users: int,
    num_movies: int,
    lambdas: Sequence[float] = EASE_LAMBDAS,
    k: int = 10,
) -> tuple[float, dict[float, float]]:
    """Pick EASE's regularisation by filtered hit rate @k on ``validation`` (carved out of training).

    Returns the best lambda and the validation hit rate of every lambda tried.
    """
    found = {}
    require_ease(num_movies)
    for lam in lambdas:
        scores = ease_scores(train, num_users, num_movies, lam)
        found[float(lam)] = filtered_topk_accuracy(scores, train, validation, [k])[k]
    best = max(found, key=lambda lam: (found[lam], -lam))
    return best, found
