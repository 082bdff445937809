"""GroupLens's own 100K files and the canonical u1 split built from them."""

import os
import zipfile

import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_movielens
from twotower_utils.data import grouplens
from twotower_utils.data.splits import make_split, u1_split


def write_u_data(folder, data, order):
    """A ``u.data`` of ``data``'s ratings in ``order``, tab-separated as GroupLens writes it."""
    ratings = data.ratings.iloc[order]
    movie_ids = dict(zip(data.movies["movie_title"], data.movies["movie_id"], strict=True))
    lines = [
        f"{u}\t{movie_ids[t]}\t{int(r)}\t{ts}"
        for u, t, r, ts in zip(
            ratings["user_id"], ratings["movie_title"], ratings["user_rating"], ratings["timestamp"], strict=True
        )
    ]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    return ratings


def tiny_with_ids():
    data = synthetic_movielens(num_users=40, num_movies=40, per_user=10)
    movie_ids = dict(zip(data.movies["movie_title"], data.movies["movie_id"], strict=True))
    data.ratings["movie_id"] = data.ratings["movie_title"].map(movie_ids).astype(str)
    return data


def test_u1_is_u_data_split_at_line_20000(tmp_path, monkeypatch):
    monkeypatch.delenv(grouplens.ENVIRONMENT_VARIABLE, raising=False)
    data = tiny_with_ids()
    order = np.random.default_rng(1).permutation(len(data.ratings))
    monkeypatch.setattr(grouplens, "U1_TEST_ROWS", 100)
    written = write_u_data(tmp_path, data, order)
    split = u1_split(data, tmp_path)
    assert (len(split.train), len(split.test)) == (len(data.ratings) - 100, 100)
    assert split.test["timestamp"].tolist() == written["timestamp"].iloc[:100].tolist()
    pairs = [set(zip(f["user_id"], f["movie_title"], strict=True)) for f in (split.train, split.test)]
    assert not pairs[0] & pairs[1]
    assert len(pairs[0] | pairs[1]) == len(data.ratings)
    assert split.train.columns.tolist() == data.ratings.columns.tolist()


def test_u1_from_the_manual_zip(tmp_path, monkeypatch):
    monkeypatch.delenv(grouplens.ENVIRONMENT_VARIABLE, raising=False)
    data = tiny_with_ids()
    monkeypatch.setattr(grouplens, "U1_TEST_ROWS", 50)
    write_u_data(tmp_path, data, np.arange(len(data.ratings)))
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    with zipfile.ZipFile(manual / "ml-100k.zip", "w") as archive:
        archive.write(tmp_path / "u.data", "ml-100k/u.data")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    assert len(u1_split(data).test) == 50


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(grouplens.ENVIRONMENT_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(grouplens.RawFilesUnavailable, match="TWOTOWER_ML100K_DIR"):
        u1_split(tiny_with_ids())
    assert not grouplens.available()


def test_ratings_of_another_set_are_refused(tmp_path):
    data = tiny_with_ids()
    pd.DataFrame({"u": ["999"], "m": ["1"], "r": [3], "t": [1]}).to_csv(
        tmp_path / "u.data", sep="\t", header=False, index=False
    )
    with pytest.raises(ValueError, match="not in this MovieLens set"):
        u1_split(data, tmp_path)


def test_real_u1_split(real_data):
    if not grouplens.available():
        if os.environ.get("CI"):
            pytest.fail(f"CI must set {grouplens.ENVIRONMENT_VARIABLE}: {grouplens.how_to_get()}")
        pytest.skip(grouplens.how_to_get())
    split = make_split(real_data, "u1")
    assert (len(split.train), len(split.test)) == (80_000, 20_000)
    first = split.test.iloc[0]
    assert (first["user_id"], first["movie_id"], float(first["user_rating"])) == ("196", "242", 3.0)  # u.data line 1
    keys = [set(zip(f["user_id"], f["movie_id"], strict=True)) for f in (split.train, split.test)]
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 100_000
    # the protocol lets a movie appear only in test (cold movies) but every test user has training ratings
    assert set(split.test["user_id"]) <= set(split.train["user_id"])
