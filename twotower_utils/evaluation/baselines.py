"""Baselines that every two-tower model must beat: random, most-popular and EASE.

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
    tie_break = popularity_scores(train, num_users, num_movies)[0]
    return matrix @ ease_weights(matrix, lam) + 1e-9 * tie_break / max(tie_break.max(), 1.0)


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
