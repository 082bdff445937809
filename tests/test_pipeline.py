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
