"""The training input pipeline: integer ids made once, cached, shuffled, batched, prefetched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf


def interactions_dataset(
    frame: pd.DataFrame,
    batch_size: int,
    seed: int | None = None,
    shuffle: bool = True,
    strings: bool = False,
    ratings: bool = False,
    histories: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Cached, (re)shuffled, batched, prefetched ``{user_id, movie_title}`` pipeline of integer
    ids (``strings=True``: the raw strings, for models that do their own lookups; ``ratings=True``
    adds each interaction's ``user_rating`` as float32, for models with a rating task; ``histories``, one
    row per interaction from ``data.history``, adds them as ``history``, for the sequence user towers)."""
    if frame.empty:
        raise ValueError("cannot build a pipeline from an empty frame")
    if ratings and "user_rating" not in frame.columns:
        raise ValueError("ratings=True needs a 'user_rating' column in the frame")
    if strings:
        columns = {"user_id": frame["user_id"].to_numpy(str), "movie_title": frame["movie_title"].to_numpy(str)}
    else:
        columns = {
            "user_id": frame["user_idx"].to_numpy(np.int64),
            "movie_title": frame["movie_idx"].to_numpy(np.int64),
        }
    if ratings:
        columns["user_rating"] = frame["user_rating"].to_numpy(np.float32)
    if histories is not None:
        if len(histories) != len(frame):
            raise ValueError(f"{len(histories)} histories for {len(frame)} interactions")
        columns["history"] = np.asarray(histories, dtype=np.int64)
    dataset = tf.data.Dataset.from_tensor_slices(columns).cache()
    if shuffle:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
