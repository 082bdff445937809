"""Features: what the towers and the loss know about a user or a movie besides its id.

Side features are fixed per user (age bucket, gender, occupation, first zip digit) and per
movie (genres, decade of the title's year).  Each is a constant ``[vocabulary + 1, features]``
multi-hot table indexed by the integer id (row 0, out-of-vocabulary, is zero), so a tower
gathers its row and still maps ids to embeddings (``models.towers.Tower``).

``movie_sampling_probability`` is how often in-batch sampling draws each movie as a negative,
the ``Q`` of the logQ correction (``models.two_tower``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from twotower_utils.data.movielens import MovieLens, lookup_ids
from twotower_utils.data.sets import USER_FEATURE_COLUMNS


def _one_hot(codes: np.ndarray, size: int) -> np.ndarray:
    table = np.zeros((len(codes), size), dtype=np.float32)
    table[np.arange(len(codes)), codes] = 1.0
    return table


def user_feature_table(data: MovieLens, names) -> np.ndarray:
    """``[num_users + 1, F]`` multi-hot side features per user id (row 0, out-of-vocabulary, is zero); one clear
    error when the set has no demographics (MovieLens 20m, 25m and latest-small)."""
    data.require([USER_FEATURE_COLUMNS[name] for name in names], f"user_features={tuple(names)!r}")
    users = data.ratings.drop_duplicates("user_id").set_index("user_id")
    users = users.loc[data.user_vocabulary]  # row i-1 is user id i
    blocks = []
    for name in names:
        if name == "age":
            ages = users["bucketized_user_age"].to_numpy()
            levels = np.unique(ages)
            blocks.append(_one_hot(np.searchsorted(levels, ages), len(levels)))
        elif name == "gender":
            blocks.append(users["user_gender"].to_numpy(np.float32)[:, None])
        elif name == "occupation":
            labels = users["user_occupation_label"].to_numpy(np.int64)
            blocks.append(_one_hot(labels, int(labels.max()) + 1))
        elif name == "zip":
            first = users["user_zip_code"].astype(str).str[:1].to_numpy()
            codes = np.array([int(c) if c.isdigit() else 10 for c in first])
            blocks.append(_one_hot(codes, 11))
    return _with_oov_row(np.concatenate(blocks, axis=1))


def movie_year(title: str) -> int | None:
    """The release year in a MovieLens title such as ``'Heat (1995)'``."""
    found = re.findall(r"\((\d{4})\)", title)
    return int(found[-1]) if found else None


def movie_feature_table(data: MovieLens, names) -> np.ndarray:
    """``[num_movies + 1, F]`` multi-hot side features per movie id (genres, decade)."""
    movies = data.movies.drop_duplicates("movie_title").set_index("movie_title").loc[data.movie_vocabulary]
    blocks = []
    for name in names:
        if name == "genres":
            size = max(len(data.genre_names), 1 + max((max(g) for g in movies["movie_genres"] if len(g)), default=0))
            table = np.zeros((len(movies), size), dtype=np.float32)
            for row, genres in enumerate(movies["movie_genres"]):
                table[row, list(genres)] = 1.0
            blocks.append(table)
        elif name == "year":
            years = [movie_year(t) for t in data.movie_vocabulary]
            # one-hot decade: 1920s and before, 1930s, ..., 1990s
            decades = np.array([min(max((y or 1990) // 10 - 192, 0), 7) for y in years])
            blocks.append(_one_hot(decades, 8))
    return _with_oov_row(np.concatenate(blocks, axis=1))


def _with_oov_row(table: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((1, table.shape[1]), dtype=np.float32), table]).astype(np.float32)


def movie_sampling_probability(data: MovieLens, train_frame: pd.DataFrame | None) -> np.ndarray:
    """``[num_movies + 1]``: each movie's share of the training interactions, i.e. how often
    in-batch sampling draws it as a negative (logQ correction).  Unseen movies get half a count."""
    frame = data.ratings if train_frame is None else train_frame
    ids = (
        frame["movie_idx"].to_numpy()
        if "movie_idx" in frame
        else lookup_ids(data.movie_vocabulary, frame["movie_title"])
    )
    counts = np.bincount(ids, minlength=data.num_movies + 1).astype(np.float64)
    counts = np.maximum(counts, 0.5)
    return (counts / counts[1:].sum()).astype(np.float32)
