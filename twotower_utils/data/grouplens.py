"""GroupLens's own MovieLens 100K files, for the published protocols TFDS cannot reproduce.

TFDS stores 100K's ratings in another order than GroupLens's ``u.data`` (1 of 100,000 rows at the same position),
so the canonical ``u1`` split -- ``u1.test`` is the first 20,000 lines of ``u.data`` and ``u1.base`` the other
80,000, as GroupLens's ``mku.sh`` makes them -- needs ``u.data`` itself.  It is read from, in this order:

1. the folder passed as ``raw_dir``;
2. the folder named by ``$TWOTOWER_ML100K_DIR``;
3. ``ml-100k.zip`` in TFDS's manual-download folder (``$TFDS_DATA_DIR/downloads/manual/ml-100k.zip``).

A folder may hold ``u.data`` (or ``u1.base`` and ``u1.test``).  MovieLens files are licensed for research use
and may not be redistributed: this project never ships them.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from twotower_utils.data.movielens import resolve_data_dir

ENVIRONMENT_VARIABLE = "TWOTOWER_ML100K_DIR"
U1_TEST_ROWS = 20_000  # mku.sh: head -20000 u.data > u1.test
COLUMNS = ("user_id", "movie_id", "user_rating", "timestamp")


class RawFilesUnavailable(FileNotFoundError):
    """GroupLens's MovieLens 100K files are not where they were looked for."""


def how_to_get() -> str:
    """One line: where the raw files are looked for and how to provide them."""
    return (
        f"GroupLens's MovieLens 100K files (u.data) were not found: set {ENVIRONMENT_VARIABLE} to the unzipped "
        "ml-100k folder, or put ml-100k.zip (5 MB, https://grouplens.org/datasets/movielens/100k/) in "
        "$TFDS_DATA_DIR/downloads/manual/"
    )


def read_u1(raw_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(u1.base, u1.test)`` as frames of ``COLUMNS`` (ids as strings, as TFDS has them), in file order.

    From ``u1.base``/``u1.test`` when a folder has them, else from ``u.data`` (first 20,000 lines: the test part).
    Raises ``RawFilesUnavailable`` (message: ``how_to_get``) when no source has the files."""
    folder = _folder(raw_dir)
    if folder is not None and (folder / "u1.base").is_file() and (folder / "u1.test").is_file():
        return _parse((folder / "u1.base").read_bytes()), _parse((folder / "u1.test").read_bytes())
    ratings = _parse(read_file("u.data", raw_dir))
    return ratings.iloc[U1_TEST_ROWS:].reset_index(drop=True), ratings.iloc[:U1_TEST_ROWS].reset_index(drop=True)


def read_file(name: str, raw_dir: str | os.PathLike | None = None) -> bytes:
    """The bytes of one of 100K's files (``u.data``, ``u.item``...) from the first source that has it."""
    folder = _folder(raw_dir)
    if folder is not None and (folder / name).is_file():
        return (folder / name).read_bytes()
    archive = resolve_data_dir() / "downloads" / "manual" / "ml-100k.zip"
    if archive.is_file():
        with zipfile.ZipFile(archive) as opened:
            member = next((m for m in opened.namelist() if m.rsplit("/", 1)[-1] == name), None)
            if member is not None:
                return opened.read(member)
    raise RawFilesUnavailable(how_to_get())


def available(raw_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``u.data`` (or u1.base and u1.test) can be read."""
    try:
        read_u1(raw_dir)
    except RawFilesUnavailable:
        return False
    return True


def _folder(raw_dir: str | os.PathLike | None) -> Path | None:
    chosen = raw_dir or os.environ.get(ENVIRONMENT_VARIABLE)
    return Path(chosen).expanduser() if chosen else None


def _parse(raw: bytes) -> pd.DataFrame:
    """Tab-separated ``user item rating timestamp`` lines (ids kept as strings, as TFDS has them)."""
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep="\t",
            header=None,
            names=list(COLUMNS),
            dtype={"user_id": str, "movie_id": str, "user_rating": np.float32, "timestamp": np.int64},
        )
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"not GroupLens's tab-separated 'user item rating timestamp' lines: {error}") from None
    return frame
