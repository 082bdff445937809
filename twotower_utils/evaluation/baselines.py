"""Baselines that every two-tower model must beat: random, most-popular and EASE; for the temporal protocols
(notebook 10) also "movies like the user's last one" (item-to-item cosine) and recency-weighted EASE.

Each returns a score matrix ``[num_users + 1, num_movies + 1]`` indexed by the integer ids
(row 0 and column 0, out-of-vocabulary, are unused), the shape of ``counting.seen_matrix``,
so they go through exactly the same metrics as the two-tower (``metrics.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from twotower_utils.evaluation.counting import filtered_topk_accuracy

EASE_LAMBDAS = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0)
RECENCY_STRENGTHS = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)  # a of 1 + a exp(-rank / tau)
RECENCY_SCALES = (1.0, 3.0, 10.0, 30.0, 100.0)  # tau, in ratings


def interaction_matrix(frame: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """Binary ``[num_users + 1, num_movies + 1]`` float matrix of the interactions in ``frame``."""
    matrix = np.zeros((num_users + 1, num_movies + 1), dtype=np.float64)
    matrix[frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy()] = 1.0
    return matrix


def random_scores(num_users: int, num_movies: int, seed: int = 0) -> np.ndarray:
    """Uniform random scores: the chance level (hit rate @k about k / catalogue)."""
    return np.random.default_rng(seed).random((num_users + 1, num_movies + 1))


def popularity_scores(train: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """Every user gets the same list: movies by number of training interactions
    (equal counts: the lower movie id first, so no two movies tie)."""
    counts = np.bincount(train["movie_idx"].to_numpy(), minlength=num_movies + 1).astype(np.float64)
    counts -= np.arange(num_movies + 1) / (num_movies + 1)  # tie-break below one interaction
    return np.broadcast_to(counts, (num_users + 1, num_movies + 1)).copy()


def ease_weights(matrix: np.ndarray, lam: float) -> np.ndarray:
    """EASE (Steck 2019): ``P = (X^T X + lam I)^-1``, ``B = -P / diag(P)`` column-wise, ``diag(B) = 0``."""
    gram = matrix.T @ matrix
    gram[np.diag_indices_from(gram)] += lam
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease_scores(train: pd.DataFrame, num_users: int, num_movies: int, lam: float) -> np.ndarray:
    """Scores ``X B`` of an EASE model fitted on ``train``, ties (e.g. a user without training
    interactions: all zeros) broken by popularity, so such users get the most-popular list."""
    matrix = interaction_matrix(train, num_users, num_movies)
    return _popularity_ties(matrix @ ease_weights(matrix, lam), train, num_users, num_movies)


def _popularity_ties(scores: np.ndarray, train: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    tie_break = popularity_scores(train, num_users, num_movies)[0]
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
    for lam in lambdas:
        scores = ease_scores(train, num_users, num_movies, lam)
        found[float(lam)] = filtered_topk_accuracy(scores, train, validation, [k])[k]
    best = max(found, key=lambda lam: (found[lam], -lam))
    return best, found
