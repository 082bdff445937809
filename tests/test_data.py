import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import real_data_dir
from twotower_utils.data import (
    DataUnavailableError,
    MovieLens,
    interactions_dataset,
    lookup_ids,
    make_split,
    random_split,
    shuffled_order,
    temporal_split,
)


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


def test_shuffled_order_is_the_tfrs_tutorial_shuffle():
    values = tf.data.Dataset.range(50).map(lambda i: i * 10)
    tf.random.set_seed(42)
    expected = [int(v) // 10 for v in values.shuffle(50, seed=42, reshuffle_each_iteration=False)]
    assert shuffled_order(50, 42).tolist() == expected
    assert shuffled_order(50, 42).tolist() == expected  # reproducible
    assert sorted(expected) == list(range(50)) and expected != list(range(50))


def test_random_split_is_a_reproducible_partition(tiny_data):
    first, second = random_split(tiny_data, seed=1), random_split(tiny_data, seed=1)
    other = random_split(tiny_data, seed=2)
    assert len(first.train) == round(0.8 * len(tiny_data.ratings))
    assert len(first.train) + len(first.test) == len(tiny_data.ratings)
    pd.testing.assert_frame_equal(first.train, second.train)
    assert not first.train.equals(other.train)
    both = pd.concat([first.train, first.test])
    assert (
        both.sort_values(["user_id", "timestamp"])
        .reset_index(drop=True)
        .equals(tiny_data.ratings.sort_values(["user_id", "timestamp"]).reset_index(drop=True))
    )


def test_temporal_split_trains_on_the_past(tiny_data):
    split = make_split(tiny_data, "temporal", train_fraction=0.5)
    assert split.name == "temporal"
    assert split.train["timestamp"].max() <= split.test["timestamp"].min()
    with pytest.raises(ValueError, match="unknown split"):
        make_split(tiny_data, "sideways")
    with pytest.raises(ValueError, match="timestamp"):
        temporal_split(MovieLens.from_frames(tiny_data.ratings.drop(columns="timestamp"), tiny_data.movies))


def test_interactions_dataset_yields_integer_batches(tiny_split):
    batches = list(interactions_dataset(tiny_split.train, batch_size=50, seed=0))
    assert batches[0]["user_id"].dtype == tf.int64 and batches[0]["movie_title"].shape[0] == 50
    assert sum(len(b["user_id"]) for b in batches) == len(tiny_split.train)
    epoch_one = [b["user_id"].numpy().tolist() for b in interactions_dataset(tiny_split.train, 50, seed=0)]
    epoch_two = [b["user_id"].numpy().tolist() for b in interactions_dataset(tiny_split.train, 50, seed=0)]
    assert epoch_one == epoch_two
    with pytest.raises(ValueError, match="empty"):
        interactions_dataset(tiny_split.train.iloc[:0], 10)


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
