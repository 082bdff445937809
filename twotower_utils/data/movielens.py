"""MovieLens through tensorflow-datasets: the ratings and movies frames and their vocabularies.

The first step of the flow (data -> features -> towers -> model -> training -> evaluation -> serving).
The ratings are kept as a pandas frame in TFDS order (every feature stays reachable), with the
integer ids ``user_idx``/``movie_idx`` that the training pipeline (``data.pipeline``) feeds the model,
so the training step holds no string lookup.  Index 0 of every vocabulary is the out-of-vocabulary
slot, as in ``tf.keras.layers.StringLookup(mask_token=None)``.
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
