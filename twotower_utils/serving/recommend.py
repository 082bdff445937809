"""Recommendations from a trained model: movie titles for raw user ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.data.movielens import MovieLens, lookup_ids
from twotower_utils.evaluation.counting import seen_matrix
from twotower_utils.evaluation.metrics import model_scores, top_k_lists
from twotower_utils.models.two_tower import TwoTowerModel


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
    scores = model_scores(model)
    seen = None if exclude is None else seen_matrix(exclude, data.num_users, data.num_movies)
    top = top_k_lists(scores, min(k, data.num_movies), seen, users)
    rows = [
        {
            "user_id": user_id,
            "rank": rank + 1,
            "movie_title": data.movie_vocabulary[movie - 1],
            "score": float(scores[user, movie]) if seen is None or not seen[user, movie] else -np.inf,
        }
        for user_id, user, movies in zip(user_ids, users, top, strict=True)
        for rank, movie in enumerate(movies)
    ]
    return pd.DataFrame(rows)


def brute_force_index(model: TwoTowerModel, data: MovieLens, k: int = 10) -> tfrs.layers.factorized_top_k.BruteForce:
    """A TFRS retrieval layer that maps raw user-id strings straight to (scores, titles)."""
    index = tfrs.layers.factorized_top_k.BruteForce(model.user_tower, k=k)
    titles = tf.constant(data.movie_vocabulary)
    index.index(model.movie_tower(titles), titles)
    return index
