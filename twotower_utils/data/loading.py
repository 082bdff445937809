"""One loader for every data set name: a real MovieLens set through TFDS (``MovieLens.load``) or a synthetic set of a
real set's shape (``synthetic.synthetic_movielens``), so callers take a name and never care which."""

from __future__ import annotations

import os

from twotower_utils.data.movielens import CHUNK_SIZE, MovieLens
from twotower_utils.data.synthetic import synthetic_movielens


def load_movielens(
    dataset: str = "100k",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> MovieLens:
    """``dataset`` is one of ``sets.DATASETS`` (read from TFDS in ``data_dir``, downloaded only if allowed and
    needed) or ``synthetic-<set>[-<ratings>]`` (made in memory, no TFDS involved)."""
    if dataset.startswith("synthetic-"):
        return synthetic_movielens(dataset)
    return MovieLens.load(data_dir, download, dataset=dataset, chunk_size=chunk_size)
