"""The training input pipeline."""

import pytest
import tensorflow as tf

from twotower_utils.data.pipeline import interactions_dataset


def test_interactions_dataset_yields_integer_batches(tiny_split):
    batches = list(interactions_dataset(tiny_split.train, batch_size=50, seed=0))
    assert batches[0]["user_id"].dtype == tf.int64 and batches[0]["movie_title"].shape[0] == 50
    assert sum(len(b["user_id"]) for b in batches) == len(tiny_split.train)
    epoch_one = [b["user_id"].numpy().tolist() for b in interactions_dataset(tiny_split.train, 50, seed=0)]
    epoch_two = [b["user_id"].numpy().tolist() for b in interactions_dataset(tiny_split.train, 50, seed=0)]
    assert epoch_one == epoch_two
    with pytest.raises(ValueError, match="empty"):
        interactions_dataset(tiny_split.train.iloc[:0], 10)


def test_ratings_travel_with_the_ids_in_the_same_order(tiny_split):
    plain = next(iter(interactions_dataset(tiny_split.train, 40, seed=5)))
    rated = next(iter(interactions_dataset(tiny_split.train, 40, seed=5, ratings=True)))
    assert "user_rating" not in plain and rated["user_rating"].dtype == tf.float32
    assert plain["user_id"].numpy().tolist() == rated["user_id"].numpy().tolist()  # same shuffle
    ordered = next(iter(interactions_dataset(tiny_split.train, 40, shuffle=False, ratings=True)))
    expected = tiny_split.train["user_rating"].to_numpy()[:40]
    assert ordered["user_rating"].numpy().tolist() == pytest.approx(expected.tolist())
    with pytest.raises(ValueError, match="user_rating"):
        interactions_dataset(tiny_split.train.drop(columns=["user_rating"]), 10, ratings=True)
