"""MovieLens from TFDS and from frames: vocabularies, integer ids, one clear error when data is missing."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import real_data_dir
from twotower_utils.data.movielens import DataUnavailableError, MovieLens, lookup_ids
from twotower_utils.data.splits import random_split


def test_lookup_ids_match_string_lookup():
    vocabulary = np.array(["a", "b", "d"])
    values = ["d", "a", "c", "b", "zz"]
    layer = tf.keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None)
    assert lookup_ids(vocabulary, values).tolist() == layer(tf.constant(values)).numpy().tolist() == [3, 1, 0, 2, 0]


def test_from_frames_builds_sorted_vocabularies_and_ids(tiny_data):
    assert list(tiny_data.user_vocabulary) == sorted(tiny_data.user_vocabulary)
    row = tiny_data.ratings.iloc[5]
    assert tiny_data.user_vocabulary[row.user_idx - 1] == row.user_id
    assert tiny_data.movie_vocabulary[row.movie_idx - 1] == row.movie_title


def test_from_frames_rejects_bad_input():
    with pytest.raises(ValueError, match="lacks column"):
        MovieLens.from_frames(pd.DataFrame({"user_id": ["1"]}), pd.DataFrame({"movie_title": ["x"]}))
    with pytest.raises(ValueError, match="not in the movies frame"):
        MovieLens.from_frames(
            pd.DataFrame({"user_id": ["1"], "movie_title": ["y"]}), pd.DataFrame({"movie_title": ["x"]})
        )


def test_missing_data_gives_one_clear_error(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        MovieLens.load(tmp_path, download=False)
    message = str(info.value)
    assert "TFDS_DATA_DIR" in message
    assert str(tmp_path / "downloads" / "manual" / "ml-100k.zip") in message
    assert "~/tensorflow_datasets/downloads/manual/ml-100k.zip" in message


def test_real_movielens_shape_and_tutorial_split(real_data):
    assert len(real_data.ratings) == 100_000 and len(real_data.movies) == 1682
    assert (real_data.num_users, real_data.num_movies) == (943, 1664)
    assert {"user_rating", "timestamp", "movie_genres", "user_occupation_text"} <= set(real_data.ratings.columns)
    split = random_split(real_data, seed=42)
    assert (len(split.train), len(split.test)) == (80_000, 20_000)
    import tensorflow_datasets as tfds

    ratings = tfds.load("movielens/100k-ratings", split="train", data_dir=real_data_dir(), download=False)
    tf.random.set_seed(42)
    shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    first = [(r["user_id"].numpy().decode(), r["movie_title"].numpy().decode()) for r in shuffled.take(5)]
    assert first == list(zip(split.train["user_id"][:5], split.train["movie_title"][:5], strict=True))
