"""Recommendations from a trained model: movie titles for raw user ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.data import MovieLens, lookup_ids
from twotower_utils.model import TwoTowerModel


def user_ids_to_index(data: MovieLens, user_ids: Sequence[str]) -> np.ndarray:
    """Integer ids for raw user ids; an unknown id is an error (its embedding was never trained)."""
    user_ids = [str(u) for u in user_ids]
    index = lookup_ids(data.user_vocabulary, user_ids)
    unknown = [u for u, i in zip(user_ids, index, strict=True) if i == 0]
    if unknown:
        raise ValueError(f"unknown user id(s) {unknown[:5]}; known ids run from {data.user_vocabulary[0]!r} upwards")
    return index


def recommend(
    model: TwoTowerModel,
    data: MovieLens,
    user_ids: Sequence[str],
    k: int = 10,
    exclude: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Top-k titles per user by dot-product score, optionally leaving out movies the user
    rated in ``exclude`` (e.g. the training interactions)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = user_ids_to_index(data, user_ids)
    queries = tf.gather(model.user_tower.embed_all(), users)
    scores = tf.matmul(queries, model.movie_tower.embed_all()[1:], transpose_b=True).numpy()
    if exclude is not None:
        for row, user in enumerate(users):
            seen = exclude.loc[exclude["user_idx"] == user, "movie_idx"].to_numpy()
            scores[row, seen - 1] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = [
        {
            "user_id": user_id,
            "rank": rank + 1,
            "movie_title": data.movie_vocabulary[item],
            "score": float(scores[r, item]),
        }
        for r, user_id in enumerate(user_ids)
        for rank, item in enumerate(top[r])
    ]
    return pd.DataFrame(rows)


def brute_force_index(model: TwoTowerModel, data: MovieLens, k: int = 10) -> tfrs.layers.factorized_top_k.BruteForce:
    """A TFRS retrieval layer that maps raw user-id strings straight to (scores, titles)."""
    index = tfrs.layers.factorized_top_k.BruteForce(model.user_tower, k=k)
    titles = tf.constant(data.movie_vocabulary)
    index.index(model.movie_tower(titles), titles)
    return index
