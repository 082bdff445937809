"""The training input pipeline."""

import numpy as np
import pandas as pd
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


def _epochs(dataset, count=2):
    return [np.concatenate([b["user_id"].numpy() for b in dataset]) for _ in range(count)]


def test_index_shuffle_visits_every_row_once_per_epoch_in_a_new_seeded_order():
    frame = pd.DataFrame({"user_idx": np.arange(1, 101), "movie_idx": np.arange(101, 201)})
    dataset = interactions_dataset(frame, 16, seed=5, shuffle_mode="indices")
    first, second = _epochs(dataset)
    assert sorted(first) == sorted(second) == list(range(1, 101))  # a permutation each epoch
    assert not np.array_equal(first, second)  # reshuffled
    batch = next(iter(dataset))
    assert np.array_equal(batch["movie_title"].numpy() - 100, batch["user_id"].numpy())  # rows stay whole
    again = interactions_dataset(frame, 16, seed=5, shuffle_mode="indices")
    assert all(np.array_equal(a, b) for a, b in zip(_epochs(again), (first, second), strict=True))  # same seed
    other = interactions_dataset(frame, 16, seed=6, shuffle_mode="indices")
    assert not np.array_equal(_epochs(other, 1)[0], first)


def test_auto_shuffle_switches_to_indices_above_the_limit(monkeypatch):
    import twotower_utils.data.pipeline as pipeline

    frame = pd.DataFrame({"user_idx": np.arange(1, 41), "movie_idx": np.arange(1, 41)})
    elements = _epochs(interactions_dataset(frame, 8, seed=1), 1)[0]
    monkeypatch.setattr(pipeline, "ELEMENT_SHUFFLE_LIMIT", 10)
    auto = _epochs(interactions_dataset(frame, 8, seed=1), 1)[0]
    indices = _epochs(interactions_dataset(frame, 8, seed=1, shuffle_mode="indices"), 1)[0]
    assert np.array_equal(auto, indices) and not np.array_equal(auto, elements)
    with pytest.raises(ValueError, match="shuffle_mode must be one of"):
        interactions_dataset(frame, 8, shuffle_mode="blocks")
