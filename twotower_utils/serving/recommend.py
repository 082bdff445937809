"""Recommendations from a trained model: movie titles for raw user ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.data.movielens import MovieLens, lookup_ids
from twotower_utils.evaluation.counting import SeenMovies, TowerScorer
from twotower_utils.evaluation.metrics import top_k_lists
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
    user_batch: int = 1024,
) -> pd.DataFrame:
    """Top-k titles per user by dot-product score, optionally leaving out movies the user
    rated in ``exclude`` (e.g. the training interactions; an excluded movie, listed only when the user saw
    nearly the whole catalogue, scores -inf).

    Only the requested users are scored, ``user_batch`` at a time, and only each row's top k is kept
    (``metrics.top_k_lists``): peak memory ``~3 user_batch num_movies`` float32 scores plus the embedding
    tables, never the ``[users x movies]`` matrix."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = user_ids_to_index(data, user_ids)
    seen = None if exclude is None else SeenMovies.from_frame(exclude, data.num_users, data.num_movies)
    top, scores = top_k_lists(TowerScorer(model), min(k, data.num_movies), seen, users, user_batch, with_scores=True)
    return pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray([str(u) for u in user_ids], dtype=object), top.shape[1]),
            "rank": np.tile(np.arange(1, top.shape[1] + 1), len(users)),
            "movie_title": np.asarray(data.movie_vocabulary, dtype=object)[top.ravel() - 1],
            "score": scores.ravel().astype(np.float64),
        }
    )


def brute_force_index(model: TwoTowerModel, data: MovieLens, k: int = 10) -> tfrs.layers.factorized_top_k.BruteForce:
    """A TFRS retrieval layer that maps raw user-id strings straight to (scores, titles)."""
    index = tfrs.layers.factorized_top_k.BruteForce(model.user_tower, k=k)
    titles = tf.constant(data.movie_vocabulary)
    index.index(model.movie_tower(titles), titles)
    return index
