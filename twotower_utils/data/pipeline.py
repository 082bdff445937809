"""The training input pipeline: integer ids made once, cached, shuffled, batched, prefetched.

Two ways to shuffle, the same idea (a new random order of the interactions every epoch, fixed by the seed):

* ``"elements"``: tf.data's shuffle buffer over every interaction, the TFRS tutorial's way and every notebook's
  numbers.  The buffer keeps a tensor per interaction: ~450 bytes each (4.9 GB and 80 s for a first epoch of 10M
  ratings on 2 cores, measured), fine up to a few million;
* ``"indices"``: the columns stay as they are and each batch gathers the rows of a slice of a permutation of
  ``0..n-1`` (``tf.random.experimental.index_shuffle``, a stateless bijection, reseeded each epoch): 8 bytes a
  column per interaction and no per-element work.  A different order than ``"elements"``, so other numbers.

``shuffle_mode="auto"`` (the default) picks ``"elements"`` up to ``ELEMENT_SHUFFLE_LIMIT`` interactions, ``"indices"``
above (MovieLens 1M and up).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

ELEMENT_SHUFFLE_LIMIT = 2_000_000
SHUFFLES = ("auto", "elements", "indices")


def interactions_dataset(
    frame: pd.DataFrame,
    batch_size: int,
    seed: int | None = None,
    shuffle: bool = True,
    strings: bool = False,
    ratings: bool = False,
    histories: np.ndarray | None = None,
    shuffle_mode: str = "auto",
) -> tf.data.Dataset:
    """Cached, (re)shuffled, batched, prefetched ``{user_id, movie_title}`` pipeline of integer
    ids (``strings=True``: the raw strings, for models that do their own lookups; ``ratings=True``
    adds each interaction's ``user_rating`` as float32, for models with a rating task; ``histories``, one
    row per interaction from ``data.history``, adds them as ``history``, for the sequence user towers).
    ``shuffle_mode``: ``"auto"``, ``"elements"`` or ``"indices"`` (module docstring)."""
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
    if shuffle_mode not in SHUFFLES:
        raise ValueError(f"shuffle_mode must be one of {SHUFFLES}, got {shuffle_mode!r}")
    if shuffle and (shuffle_mode == "indices" or (shuffle_mode == "auto" and len(frame) > ELEMENT_SHUFFLE_LIMIT)):
        return _index_shuffled(columns, len(frame), batch_size, seed)
    dataset = tf.data.Dataset.from_tensor_slices(columns).cache()
    if shuffle:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _index_shuffled(columns: dict[str, np.ndarray], size: int, batch_size: int, seed: int | None) -> tf.data.Dataset:
    """Batches that gather rows ``perm[i * B : (i + 1) * B]`` of a fresh permutation per epoch (the per-epoch
    key comes from ``Dataset.random(..., rerandomize_each_iteration=True)``, so epoch e's order is fixed by
    ``seed``)."""
    tensors = {key: tf.constant(value) for key, value in columns.items()}
    base = 0 if seed is None else int(seed)
    keys = tf.data.Dataset.random(seed=base, rerandomize_each_iteration=True).take(1)

    @tf.autograph.experimental.do_not_convert
    def epoch(key):
        @tf.autograph.experimental.do_not_convert
        def gather(positions):
            seeds = tf.stack([tf.constant(base, tf.int64), key])
            rows = tf.random.experimental.index_shuffle(positions, seeds, size - 1)
            return {name: tf.gather(tensor, rows) for name, tensor in tensors.items()}

        return tf.data.Dataset.range(size).batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    return keys.flat_map(epoch).prefetch(tf.data.AUTOTUNE)
