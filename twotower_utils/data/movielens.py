"""MovieLens through tensorflow-datasets: the ratings and movies frames and their vocabularies.

The first step of the flow (data -> features -> towers -> model -> training -> evaluation -> serving).
The ratings are kept as a pandas frame in TFDS order (every feature stays reachable), with the
integer ids ``user_idx``/``movie_idx`` that the training pipeline (``data.pipeline``) feeds the model,
so the training step holds no string lookup.  Index 0 of every vocabulary is the out-of-vocabulary
slot, as in ``tf.keras.layers.StringLookup(mask_token=None)``.

Five sets are known (``DATASETS``): 100k (the series' default), 1m, 20m, 25m and latest-small.  A split is
read in chunks (``chunk_size`` rows at a time) into columnar arrays: numbers as numpy arrays and strings
(user ids, titles, zip codes) as ``pandas.Categorical`` columns, i.e. one small table of distinct strings
plus an integer code per row, never a Python object per rating (36 bytes a rating with the integer ids, 0.9 GB
for 25M ratings, measured on a synthetic set of that shape, instead of several GB of Python strings).  The ratings frame leaves out each rating's copy of its movie's genres
(a list per row); the movies frame keeps them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf  # the package __init__ has set TF_USE_LEGACY_KERAS already
from pandas.api.types import union_categoricals

from twotower_utils.data.sets import DATASETS, DEMOGRAPHIC_COLUMNS, DEMOGRAPHIC_SETS, DatasetFacts, dataset_facts
from twotower_utils.runtime import progress

# the 100k names, kept for code that imported them
RATINGS_NAME = DATASETS["100k"].ratings_name
MOVIES_NAME = DATASETS["100k"].movies_name
MANUAL_FILE = DATASETS["100k"].archive
CHUNK_SIZE = 1_000_000


class DataUnavailableError(RuntimeError):
    """MovieLens is neither prepared on disk nor downloadable."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The TFDS data folder: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return Path(chosen).expanduser()


def _unavailable_message(name: str, data_dir: Path, cause: BaseException | None, facts: DatasetFacts) -> str:
    manual = data_dir / "downloads" / "manual" / facts.archive
    reason = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})" if cause else ""
    return (
        f"MovieLens dataset '{name}' is not prepared in {data_dir} and could not be "
        f"downloaded{reason}.\n"
        "Do one of these:\n"
        "  * point TFDS_DATA_DIR (or data_dir=) at a folder that already holds "
        f"'{name}' (version 0.1.1);\n"
        f"  * offline: put GroupLens' {facts.archive} ({facts.archive_mb:g} MB) at {manual} "
        f"(default ~/tensorflow_datasets/downloads/manual/{facts.archive}) and run again;\n"
        "  * online: run again with network access and TFDS downloads it once.\n"
        f"MovieLens {facts.name}: {facts.ratings:,} ratings by {facts.users:,} users of {facts.rated_movies:,} movies; "
        "without it, data.synthetic makes a synthetic set of the same shape."
    )


def _load_split(name: str, data_dir: Path, download: bool, facts: DatasetFacts):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(data_dir))
    if not builder.is_prepared():
        if not download:
            raise DataUnavailableError(_unavailable_message(name, data_dir, None, facts))
        try:
            builder.download_and_prepare()
        except Exception as error:  # network, checksum, permission: one clear message
            raise DataUnavailableError(_unavailable_message(name, data_dir, error, facts)) from None
    return builder, builder.as_dataset(split="train", shuffle_files=False)


def _strings(values: np.ndarray) -> pd.Categorical:
    """A chunk of byte strings as a Categorical: codes per row, each distinct string decoded once."""
    codes, uniques = pd.factorize(values, sort=False)
    categories = pd.Index([item.decode("utf-8") for item in uniques])
    return pd.Categorical.from_codes(codes, categories=categories)


def _dataset_to_frame(dataset: tf.data.Dataset) -> pd.DataFrame:
    """Read a small TFDS split (the movies table) in one batch; strings become ``Categorical``, ragged features
    (the genres) lists."""
    batch = dataset.ragged_batch(1_000_000).get_single_element()
    columns = {}
    for key, value in batch.items():
        if isinstance(value, tf.RaggedTensor):
            columns[key] = [list(row) for row in value.numpy()]
        elif value.dtype == tf.string:
            columns[key] = _strings(value.numpy())
        else:
            columns[key] = value.numpy()
    return pd.DataFrame(columns)


def _ratings_to_frame(builder, chunk_size: int = CHUNK_SIZE) -> pd.DataFrame:
    """Stream the ratings split ``chunk_size`` rows at a time into columns.

    The records are parsed a whole chunk per call (``tf.io.parse_example``, about 10x faster than TFDS's
    per-example decoding) in TFDS's own order (``shuffle_files=False``: the shards in order).  Scalar features
    only: each rating's list of its movie's genres is left out (the movies frame has it).  Numbers become
    numpy arrays; strings one ``Categorical`` per column.  Peak memory: the finished columns plus one chunk."""
    spec, casts = {}, {}
    for key, info in builder.info.features.get_serialized_info().items():
        if tuple(info.shape) != ():
            continue  # the genres sequence
        dtype = info.tf_dtype
        if dtype == tf.bool:  # tf.train.Example stores booleans as int64
            casts[key], dtype = dtype, tf.int64
        spec[key] = tf.io.FixedLenFeature([], dtype)

    @tf.autograph.experimental.do_not_convert
    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        return {key: tf.cast(value, casts[key]) if key in casts else value for key, value in parsed.items()}

    split = builder.info.splits["train"]
    files = [str(path) for path in split.filepaths]
    records = tf.data.TFRecordDataset(files).batch(chunk_size).map(parse).prefetch(1)
    parts: dict[str, list] = {key: [] for key in spec}
    chunks = -(-split.num_examples // chunk_size)
    # a bar only when there is something to wait for: 100K is one chunk
    batches = progress(records, total=chunks, desc=f"reading {builder.name}", unit="chunk") if chunks > 1 else records
    for batch in batches:
        for key, value in batch.items():
            array = value.numpy()
            parts[key].append(_strings(array) if value.dtype == tf.string else array)
    columns = {
        key: union_categoricals(chunks_of_key)
        if isinstance(chunks_of_key[0], pd.Categorical)
        else np.concatenate(chunks_of_key)
        for key, chunks_of_key in parts.items()
    }
    return pd.DataFrame(columns)


@dataclass
class MovieLens:
    """One MovieLens set (``name``): ratings (TFDS order), movies, vocabularies and genre names."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    user_vocabulary: np.ndarray
    movie_vocabulary: np.ndarray
    genre_names: list[str]
    name: str = "custom"

    @classmethod
    def load(
        cls,
        data_dir: str | os.PathLike | None = None,
        download: bool = True,
        dataset: str = "100k",
        chunk_size: int = CHUNK_SIZE,
    ) -> MovieLens:
        """Load a set's two TFDS datasets (download only if allowed and needed), ``chunk_size`` rows at a time.
        ``dataset`` is one of ``DATASETS``; ``data.loading.load_movielens`` also takes the synthetic sets' names."""
        if dataset.startswith("synthetic-"):
            raise ValueError(
                f"{dataset!r} is made in memory, not read from TFDS: use data.loading.load_movielens({dataset!r})"
            )
        facts = dataset_facts(dataset)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive whole number, got {chunk_size!r}")
        folder = resolve_data_dir(data_dir)
        builder, _ = _load_split(facts.ratings_name, folder, download, facts)
        _, movies_ds = _load_split(facts.movies_name, folder, download, facts)
        genre_names = list(builder.info.features["movie_genres"].feature.names)
        ratings = _ratings_to_frame(builder, chunk_size)
        return cls.from_frames(ratings, _dataset_to_frame(movies_ds), genre_names, name=facts.name)

    @classmethod
    def from_frames(
        cls,
        ratings: pd.DataFrame,
        movies: pd.DataFrame,
        genre_names: list[str] | None = None,
        name: str = "custom",
    ) -> MovieLens:
        """Build from frames with at least ``user_id``/``movie_title`` (ratings) and ``movie_title`` (movies).
        String columns may be plain or ``Categorical`` (the columnar form ``load`` and ``data.synthetic`` make);
        a ``Categorical``'s categories come out sorted, so sorting the column sorts its strings."""
        for frame, needed, what in (
            (ratings, ("user_id", "movie_title"), "ratings"),
            (movies, ("movie_title",), "movies"),
        ):
            missing = [c for c in needed if c not in frame.columns]
            if missing:
                raise ValueError(f"{what} frame lacks column(s) {missing}")
        if ratings.empty or movies.empty:
            raise ValueError("ratings and movies must not be empty")
        user_vocabulary = np.unique(distinct_strings(ratings["user_id"]))
        movie_vocabulary = np.unique(distinct_strings(movies["movie_title"]))
        rated = distinct_strings(ratings["movie_title"])
        unknown = rated[lookup_ids(movie_vocabulary, rated) == 0]
        if len(unknown):
            raise ValueError(f"{len(unknown)} rated title(s) are not in the movies frame, e.g. {sorted(unknown)[:3]}")
        ratings = _sorted_categories(ratings.reset_index(drop=True).copy())
        movies = _sorted_categories(movies.reset_index(drop=True).copy())
        ratings["user_idx"] = lookup_ids(user_vocabulary, ratings["user_id"])
        ratings["movie_idx"] = lookup_ids(movie_vocabulary, ratings["movie_title"])
        return cls(ratings, movies, user_vocabulary, movie_vocabulary, list(genre_names or []), name)

    @property
    def num_users(self) -> int:
        return len(self.user_vocabulary)

    @property
    def num_movies(self) -> int:
        return len(self.movie_vocabulary)

    def require(self, columns, what: str) -> None:
        """One clear error when a switch needs columns this set lacks (20m, 25m and latest-small have no
        user demographics)."""
        missing = [c for c in columns if c not in self.ratings.columns]
        if missing:
            hint = f" (of the MovieLens sets only {', '.join(DEMOGRAPHIC_SETS)} have user demographics)"
            demographic = any(c in DEMOGRAPHIC_COLUMNS for c in missing)
            raise ValueError(
                f"{what} needs the column(s) {missing}, which MovieLens '{self.name}' does not have"
                + (hint if demographic else "")
            )


def _sorted_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (a copy of the caller's) with every ``Categorical`` column's categories in sorted order."""
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].cat.reorder_categories(sorted(frame[column].cat.categories))
    return frame


def distinct_strings(values) -> np.ndarray:
    """The distinct values of a string column as a numpy string array (a Categorical's used categories,
    without touching its rows)."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        used = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories)) > 0
        return np.asarray(values.cat.categories.to_numpy(dtype=str)[used], dtype=str)
    return np.unique(np.asarray(values, dtype=str))


def lookup_ids(vocabulary: np.ndarray, values) -> np.ndarray:
    """Integer ids as ``StringLookup(vocabulary, mask_token=None)`` gives them: 0 is out-of-vocabulary.
    A ``Categorical`` is looked up once per category and spread by its codes (columnar, fast for 25M rows)."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        per_category = lookup_ids(vocabulary, values.cat.categories.to_numpy(dtype=str))
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, per_category[codes], 0).astype(np.int64)
    values = np.asarray(values, dtype=str)
    position = np.searchsorted(vocabulary, values)
    position = np.clip(position, 0, len(vocabulary) - 1)
    found = vocabulary[position] == values
    return np.where(found, position + 1, 0).astype(np.int64)
