"""Train/test splits of the ratings: the report's random 80/20, time-respecting splits, and
validation parts carved out of training (for choosing anything; the test split stays untouched)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.data import grouplens, pipeline
from twotower_utils.data.movielens import MovieLens


@dataclass
class Split:
    """Training and test interactions (rows of ``MovieLens.ratings``)."""

    train: pd.DataFrame
    test: pd.DataFrame
    name: str


def shuffled_order(num_rows: int, seed: int) -> np.ndarray:
    """The order TFRS's tutorial gets from ``tf.random.set_seed(seed)`` and
    ``ratings.shuffle(num_rows, seed=seed, reshuffle_each_iteration=False)``.  Above
    ``pipeline.ELEMENT_SHUFFLE_LIMIT`` rows, where that buffer would hold a tensor per rating (~11 GB for 25M),
    a numpy permutation of the same seed instead (another order, 8 bytes a row)."""
    if num_rows > pipeline.ELEMENT_SHUFFLE_LIMIT:
        return np.random.default_rng(seed).permutation(num_rows)
    tf.random.set_seed(seed)
    order = tf.data.Dataset.range(num_rows).shuffle(num_rows, seed=seed, reshuffle_each_iteration=False)
    return order.batch(num_rows).get_single_element().numpy()


def random_split(data: MovieLens, seed: int = 42, train_fraction: float = 0.8) -> Split:
    """The seed report's random split: shuffle everything once, first 80% train, rest test."""
    order = shuffled_order(len(data.ratings), seed)
    num_train = int(round(len(order) * train_fraction))
    # each part taken straight from the ratings: no shuffled copy of the whole frame (1 GB at 25M)
    train = data.ratings.iloc[order[:num_train]].reset_index(drop=True)
    return Split(train, data.ratings.iloc[order[num_train:]].reset_index(drop=True), "random")


def temporal_split(data: MovieLens, train_fraction: float = 0.8) -> Split:
    """A global time cut: the earliest ``train_fraction`` of ratings train, the later ones test."""
    if "timestamp" not in data.ratings.columns:
        raise ValueError("a temporal split needs the 'timestamp' column")
    ordered = data.ratings.sort_values("timestamp", kind="stable").reset_index(drop=True)
    num_train = int(round(len(ordered) * train_fraction))
    return Split(
        ordered.iloc[:num_train].reset_index(drop=True), ordered.iloc[num_train:].reset_index(drop=True), "temporal"
    )


def leave_latest_split(data: MovieLens, train_fraction: float = 0.8) -> Split:
    """Per-user leave-latest-out: each user's latest ``1 - train_fraction`` of ratings (at least one) test."""
    if "timestamp" not in data.ratings.columns:
        raise ValueError("a leave-latest split needs the 'timestamp' column")
    return hold_out_latest(data.ratings, 1 - train_fraction, "leave_latest")


def leave_one_out_split(data: MovieLens) -> Split:
    """Per-user leave-one-out: each user's single latest rating is test (ranked against the whole catalogue)."""
    if "timestamp" not in data.ratings.columns:
        raise ValueError("a leave-one-out split needs the 'timestamp' column")
    return hold_out_latest(data.ratings, None, "leave_one_out")


def hold_out_latest(frame: pd.DataFrame, fraction: float | None, name: str = "latest") -> Split:
    """Each user's latest ``fraction`` of the ratings in ``frame`` (rounded, at least one) held out, or with
    ``fraction=None`` exactly the latest one; both parts ordered by user then time (stable).  Applied to a
    training frame it is the temporal protocols' validation: each user's last *training* ratings."""
    if fraction is not None and not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must lie strictly between 0 and 1, got {fraction!r}")
    ordered = frame.sort_values(["user_idx", "timestamp"], kind="stable")
    position = ordered.groupby("user_idx").cumcount().to_numpy()
    sizes = ordered.groupby("user_idx")["user_idx"].transform("size").to_numpy()
    num_test = np.ones_like(sizes) if fraction is None else np.maximum(1, np.round(sizes * fraction).astype(int))
    is_test = position >= sizes - num_test
    return Split(ordered[~is_test].reset_index(drop=True), ordered[is_test].reset_index(drop=True), name)


def validation_split(train: pd.DataFrame, fraction: float = 0.1, seed: int = 0, fold: int = 0) -> Split:
    """Carve a seeded random ``fraction`` of the training frame out as validation (for tuning;
    the test set stays untouched).  Both parts keep the frame's row order.

    ``fold`` picks which block of the seeded permutation is validation: folds ``0, 1, ...`` of
    the same seed have disjoint validation parts (k-fold cross-validation, ``tuning.py``)."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must lie strictly between 0 and 1, got {fraction!r}")
    num_validation = max(1, int(round(len(train) * fraction)))
    if not isinstance(fold, int) or fold < 0 or (fold + 1) * num_validation > len(train):
        most = len(train) // num_validation
        raise ValueError(f"fold must be a whole number from 0 to {most - 1} for fraction {fraction}, got {fold!r}")
    order = np.random.default_rng(seed).permutation(len(train))
    held_out = order[fold * num_validation : (fold + 1) * num_validation]
    kept = np.concatenate([order[: fold * num_validation], order[(fold + 1) * num_validation :]])
    return Split(
        train.iloc[np.sort(kept)].reset_index(drop=True),
        train.iloc[np.sort(held_out)].reset_index(drop=True),
        "validation" if fold == 0 else f"validation fold {fold}",
    )


def u1_split(data: MovieLens, raw_dir=None) -> Split:
    """MovieLens 100K's canonical ``u1`` split (GroupLens's ``u1.base`` / ``u1.test``: ``u.data``'s first 20,000
    lines are the test part), as rows of ``data.ratings`` matched by (user id, movie id) -- a user rates a movie
    once in 100K.  The raw files come from ``grouplens.read_u1`` (``raw_dir``, ``$TWOTOWER_ML100K_DIR`` or TFDS's
    manual folder); ``grouplens.RawFilesUnavailable`` says how to get them when they are missing."""
    base, test = grouplens.read_u1(raw_dir)
    keys = pd.MultiIndex.from_arrays([data.ratings["user_id"].astype(str), data.ratings["movie_id"].astype(str)])
    if not keys.is_unique:
        raise ValueError("the u1 split needs one rating per (user, movie): this is not MovieLens 100K")
    parts = []
    for frame, what in ((base, "u1.base"), (test, "u1.test")):
        rows = keys.get_indexer(pd.MultiIndex.from_arrays([frame["user_id"], frame["movie_id"]]))
        if (rows < 0).any():
            raise ValueError(f"{int((rows < 0).sum())} ratings of {what} are not in this MovieLens set (not 100K?)")
        parts.append(data.ratings.iloc[rows].reset_index(drop=True))
    return Split(parts[0], parts[1], "u1")


def make_split(data: MovieLens, split: str = "random", seed: int = 42, train_fraction: float = 0.8) -> Split:
    """The split an experiment asks for by name (``u1``: MovieLens 100K's canonical split, ``u1_split``)."""
    if split == "random":
        return random_split(data, seed, train_fraction)
    if split == "temporal":
        return temporal_split(data, train_fraction)
    if split == "leave_latest":
        return leave_latest_split(data, train_fraction)
    if split == "leave_one_out":
        return leave_one_out_split(data)
    if split == "u1":
        return u1_split(data)
    raise ValueError(f"unknown split {split!r}; use 'random', 'temporal', 'leave_latest', 'leave_one_out' or 'u1'")
