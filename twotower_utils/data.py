"""MovieLens 100K through tensorflow-datasets: frames, vocabularies, splits, pipelines.

The ratings are kept as a pandas frame in TFDS order (every feature stays reachable);
the model trains on integer ids made here, in the input pipeline, so the training step
holds no string lookup.  Index 0 of every vocabulary is the out-of-vocabulary slot,
as in ``tf.keras.layers.StringLookup(mask_token=None)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf  # the package __init__ has set TF_USE_LEGACY_KERAS already

RATINGS_NAME = "movielens/100k-ratings"
MOVIES_NAME = "movielens/100k-movies"
MANUAL_FILE = "ml-100k.zip"
_TEXT_COLUMNS = ("movie_id", "movie_title", "user_id", "user_occupation_text", "user_zip_code")


class DataUnavailableError(RuntimeError):
    """MovieLens is neither prepared on disk nor downloadable."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The TFDS data folder: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return Path(chosen).expanduser()


def _unavailable_message(name: str, data_dir: Path, cause: BaseException | None) -> str:
    manual = data_dir / "downloads" / "manual" / MANUAL_FILE
    reason = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})" if cause else ""
    return (
        f"MovieLens dataset '{name}' is not prepared in {data_dir} and could not be "
        f"downloaded{reason}.\n"
        "Do one of these:\n"
        "  * point TFDS_DATA_DIR (or data_dir=) at a folder that already holds "
        f"'{name}' (version 0.1.1);\n"
        f"  * offline: put GroupLens' {MANUAL_FILE} at {manual} "
        f"(default ~/tensorflow_datasets/downloads/manual/{MANUAL_FILE}) and run again;\n"
        "  * online: run again with network access and TFDS downloads it once."
    )


def _load_split(name: str, data_dir: Path, download: bool):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(data_dir))
    if not builder.is_prepared():
        if not download:
            raise DataUnavailableError(_unavailable_message(name, data_dir, None))
        try:
            builder.download_and_prepare()
        except Exception as error:  # network, checksum, permission: one clear message
            raise DataUnavailableError(_unavailable_message(name, data_dir, error)) from None
    return builder, builder.as_dataset(split="train", shuffle_files=False)


def _dataset_to_frame(dataset: tf.data.Dataset) -> pd.DataFrame:
    """Read a whole (small) TFDS split in one batch; ragged features become lists."""
    batch = dataset.ragged_batch(1_000_000).get_single_element()
    columns = {}
    for key, value in batch.items():
        if isinstance(value, tf.RaggedTensor):
            columns[key] = [list(row) for row in value.numpy()]
        elif value.dtype == tf.string:
            columns[key] = [item.decode("utf-8") for item in value.numpy()]
        else:
            columns[key] = value.numpy()
    return pd.DataFrame(columns)


@dataclass
class MovieLens:
    """MovieLens 100K: ratings (TFDS order), movies, vocabularies and genre names."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    user_vocabulary: np.ndarray
    movie_vocabulary: np.ndarray
    genre_names: list[str]

    @classmethod
    def load(cls, data_dir: str | os.PathLike | None = None, download: bool = True) -> MovieLens:
        """Load both TFDS datasets (download only if allowed and needed)."""
        folder = resolve_data_dir(data_dir)
        builder, ratings_ds = _load_split(RATINGS_NAME, folder, download)
        _, movies_ds = _load_split(MOVIES_NAME, folder, download)
        genre_names = list(builder.info.features["movie_genres"].feature.names)
        return cls.from_frames(_dataset_to_frame(ratings_ds), _dataset_to_frame(movies_ds), genre_names)

    @classmethod
    def from_frames(
        cls, ratings: pd.DataFrame, movies: pd.DataFrame, genre_names: list[str] | None = None
    ) -> MovieLens:
        """Build from frames with at least ``user_id``/``movie_title`` (ratings) and ``movie_title`` (movies)."""
        for frame, needed, what in (
            (ratings, ("user_id", "movie_title"), "ratings"),
            (movies, ("movie_title",), "movies"),
        ):
            missing = [c for c in needed if c not in frame.columns]
            if missing:
                raise ValueError(f"{what} frame lacks column(s) {missing}")
        if ratings.empty or movies.empty:
            raise ValueError("ratings and movies must not be empty")
        user_vocabulary = np.unique(ratings["user_id"].to_numpy(dtype=str))
        movie_vocabulary = np.unique(movies["movie_title"].to_numpy(dtype=str))
        unknown = set(ratings["movie_title"]) - set(movie_vocabulary)
        if unknown:
            raise ValueError(f"{len(unknown)} rated title(s) are not in the movies frame, e.g. {sorted(unknown)[:3]}")
        ratings = ratings.reset_index(drop=True).copy()
        ratings["user_idx"] = lookup_ids(user_vocabulary, ratings["user_id"])
        ratings["movie_idx"] = lookup_ids(movie_vocabulary, ratings["movie_title"])
        return cls(ratings, movies.reset_index(drop=True), user_vocabulary, movie_vocabulary, list(genre_names or []))

    @property
    def num_users(self) -> int:
        return len(self.user_vocabulary)

    @property
    def num_movies(self) -> int:
        return len(self.movie_vocabulary)


def lookup_ids(vocabulary: np.ndarray, values) -> np.ndarray:
    """Integer ids as ``StringLookup(vocabulary, mask_token=None)`` gives them: 0 is out-of-vocabulary."""
    values = np.asarray(values, dtype=str)
    position = np.searchsorted(vocabulary, values)
    position = np.clip(position, 0, len(vocabulary) - 1)
    found = vocabulary[position] == values
    return np.where(found, position + 1, 0).astype(np.int64)


@dataclass
class Split:
    """Training and test interactions (rows of ``MovieLens.ratings``)."""

    train: pd.DataFrame
    test: pd.DataFrame
    name: str


def shuffled_order(num_rows: int, seed: int) -> np.ndarray:
    """The order TFRS's tutorial gets from ``tf.random.set_seed(seed)`` and
    ``ratings.shuffle(num_rows, seed=seed, reshuffle_each_iteration=False)``."""
    tf.random.set_seed(seed)
    order = tf.data.Dataset.range(num_rows).shuffle(num_rows, seed=seed, reshuffle_each_iteration=False)
    return order.batch(num_rows).get_single_element().numpy()


def random_split(data: MovieLens, seed: int = 42, train_fraction: float = 0.8) -> Split:
    """The seed report's random split: shuffle everything once, first 80% train, rest test."""
    order = shuffled_order(len(data.ratings), seed)
    num_train = int(round(len(order) * train_fraction))
    shuffled = data.ratings.iloc[order].reset_index(drop=True)
    return Split(
        shuffled.iloc[:num_train].reset_index(drop=True), shuffled.iloc[num_train:].reset_index(drop=True), "random"
    )


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
    ordered = data.ratings.sort_values(["user_idx", "timestamp"], kind="stable")
    position = ordered.groupby("user_idx").cumcount().to_numpy()
    sizes = ordered.groupby("user_idx")["user_idx"].transform("size").to_numpy()
    num_test = np.maximum(1, np.round(sizes * (1 - train_fraction)).astype(int))
    is_test = position >= sizes - num_test
    return Split(ordered[~is_test].reset_index(drop=True), ordered[is_test].reset_index(drop=True), "leave_latest")


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


def make_split(data: MovieLens, split: str = "random", seed: int = 42, train_fraction: float = 0.8) -> Split:
    """The split an experiment asks for by name."""
    if split == "random":
        return random_split(data, seed, train_fraction)
    if split == "temporal":
        return temporal_split(data, train_fraction)
    if split == "leave_latest":
        return leave_latest_split(data, train_fraction)
    raise ValueError(f"unknown split {split!r}; use 'random', 'temporal' or 'leave_latest'")


def interactions_dataset(
    frame: pd.DataFrame, batch_size: int, seed: int | None = None, shuffle: bool = True, strings: bool = False
) -> tf.data.Dataset:
    """Cached, (re)shuffled, batched, prefetched ``{user_id, movie_title}`` pipeline of integer
    ids (``strings=True``: the raw strings, for models that do their own lookups)."""
    if frame.empty:
        raise ValueError("cannot build a pipeline from an empty frame")
    if strings:
        columns = {"user_id": frame["user_id"].to_numpy(str), "movie_title": frame["movie_title"].to_numpy(str)}
    else:
        columns = {
            "user_id": frame["user_idx"].to_numpy(np.int64),
            "movie_title": frame["movie_idx"].to_numpy(np.int64),
        }
    dataset = tf.data.Dataset.from_tensor_slices(columns).cache()
    if shuffle:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
