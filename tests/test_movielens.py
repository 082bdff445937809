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
    assert {"user_rating", "timestamp", "user_occupation_text"} <= set(real_data.ratings.columns)
    assert "movie_genres" in real_data.movies.columns  # the ratings leave out their copy of the genres
    split = random_split(real_data, seed=42)
    assert (len(split.train), len(split.test)) == (80_000, 20_000)
    import tensorflow_datasets as tfds

    ratings = tfds.load("movielens/100k-ratings", split="train", data_dir=real_data_dir(), download=False)
    tf.random.set_seed(42)
    shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    first = [(r["user_id"].numpy().decode(), r["movie_title"].numpy().decode()) for r in shuffled.take(5)]
    assert first == list(zip(split.train["user_id"][:5], split.train["movie_title"][:5], strict=True))


def test_streaming_in_chunks_reads_the_same_columns(real_data):
    """Chunks of 7,000 rows (15 chunks, the last one short) give the same frame as one read, in TFDS order."""
    chunked = MovieLens.load(real_data_dir(), download=False, chunk_size=7_000)
    pd.testing.assert_frame_equal(chunked.ratings, real_data.ratings)
    for column in ("user_id", "movie_title", "user_zip_code"):  # columnar strings, not a Python object per row
        assert isinstance(real_data.ratings[column].dtype, pd.CategoricalDtype)
    assert list(real_data.ratings["user_id"].cat.categories) == sorted(real_data.ratings["user_id"].cat.categories)


@pytest.mark.parametrize("name", ["1m", "20m", "25m", "latest-small"])
def test_each_missing_set_names_its_own_archive(tmp_path, name):
    with pytest.raises(DataUnavailableError) as info:
        MovieLens.load(tmp_path, download=False, dataset=name)
    message = str(info.value)
    assert f"movielens/{name}-ratings" in message
    assert str(tmp_path / "downloads" / "manual" / f"ml-{name}.zip") in message
    assert "synthetic" in message


def test_bad_dataset_names_and_chunk_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="known sets: 100k, 1m, 20m, 25m, latest-small"):
        MovieLens.load(tmp_path, download=False, dataset="10m")
    with pytest.raises(ValueError, match="chunk_size"):
        MovieLens.load(tmp_path, download=False, chunk_size=0)


def test_lookup_ids_of_a_categorical_column_match_plain_strings():
    vocabulary = np.array(["a", "b", "d"])
    values = pd.Series(["d", "a", "c", "b", "d"], dtype="category")
    assert lookup_ids(vocabulary, values).tolist() == lookup_ids(vocabulary, values.astype(str)).tolist()


def test_a_switch_needing_demographics_says_which_sets_have_them(tiny_data):
    from twotower_utils.data.features import user_feature_table

    with pytest.raises(ValueError, match=r"does not have \(of the MovieLens sets only 100k, 1m have"):
        user_feature_table(tiny_data, ("age",))
