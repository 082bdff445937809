"""The sequence user towers (models.towers.SequenceTower) as switches of the one two-tower model."""

import numpy as np
import pytest
import tensorflow as tf

import twotower_utils as tt
from twotower_utils.config import ConfigError
from twotower_utils.data.history import training_histories
from twotower_utils.data.splits import leave_latest_split
from twotower_utils.evaluation.counting import filtered_topk_accuracy
from twotower_utils.evaluation.metrics import model_scores
from twotower_utils.training import build_for, train

KINDS = ("mean", "attention", "gru", "sasrec")


def sequence_config(kind, **changes):
    run = tt.RunConfig(
        tt.RetrievalSpec(embedding_dim=8), epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam", seed=3
    )
    return run.replace(**{"user_tower": kind, "history_length": 4, **changes})


@pytest.mark.parametrize("kind", KINDS)
def test_the_tower_reads_the_history_shares_the_movie_table_and_ignores_padding(tiny_data, kind):
    model = build_for(sequence_config(kind), tiny_data)
    tower = model.user_tower
    assert tower.item_embedding is model.movie_tower.embedding  # one table for history and candidates
    ids = {v.ref() for v in model.trainable_variables}
    assert len(ids) == len(model.trainable_variables)  # the shared table is trained once per step
    history = np.array([[0, 0, 3, 5], [0, 0, 5, 3], [0, 0, 0, 0]])
    out = tower.embed(history)
    assert out.shape == (3, 8)
    # the same movies with more padding in front: the same vector (left padding is masked)
    longer = build_for(sequence_config(kind, history_length=6), tiny_data).user_tower
    longer.set_weights(_copy_weights(tower, longer))
    np.testing.assert_allclose(longer.embed(np.array([[0, 0, 0, 0, 3, 5]])), out[:1], rtol=1e-5, atol=1e-6)
    if kind != "mean":  # order matters except for the mean
        assert not np.allclose(out[0], out[1])
    else:
        np.testing.assert_allclose(out[0], out[1], rtol=1e-6)
    assert np.all(np.isfinite(out[2]))  # an empty history is a finite vector (the output layer's bias)


def _copy_weights(source, target):
    """Source weights for a tower of another history length (the position table is cut from the front)."""
    weights = []
    for mine, theirs in zip(source.get_weights(), target.get_weights(), strict=True):
        if mine.shape != theirs.shape:  # positions: [L, d], row 0 the latest
            theirs = np.concatenate([mine, np.zeros((theirs.shape[0] - mine.shape[0], mine.shape[1]), mine.dtype)])
            weights.append(theirs)
        else:
            weights.append(mine)
    return weights


@pytest.mark.parametrize(
    "kind, loss",
    [("mean", {"negatives": "catalogue"}), ("sasrec", {"negatives": "catalogue"}), ("gru", {"logq_correction": 1.0})],
)
def test_a_sequence_tower_trains_and_is_scored_from_the_training_histories(tiny_data, kind, loss):
    split = leave_latest_split(tiny_data, 0.75)
    config = sequence_config(kind, epochs=3, use_user_id=kind == "sasrec", **loss)
    result = train(config, tiny_data, split, verbose=0)
    assert np.all(np.isfinite(result.history["loss"])) and result.history["loss"].iloc[-1] < result.history["loss"][0]
    table = result.model.query_table(split.train).numpy()
    assert table.shape == (tiny_data.num_users + 1, 8)
    scores = model_scores(result.model, split.train)
    from_towers = filtered_topk_accuracy(result.model, split.train, split.test, [1, 5])
    assert from_towers == filtered_topk_accuracy(scores, split.train, split.test, [1, 5])
    with pytest.raises(ValueError, match="histories"):
        result.model.query_table()


def test_in_batch_loss_keeps_every_row_of_a_user_apart(tiny_data):
    """Two rows of one user have different histories, so the loss must not merge them by user id."""
    model = build_for(sequence_config("mean"), tiny_data)
    frame = tiny_data.ratings.iloc[:8]
    features = {
        "user_id": tf.constant(frame["user_idx"].to_numpy()),
        "movie_title": tf.constant(frame["movie_idx"].to_numpy()),
        "history": tf.constant(training_histories(frame, 4)),
    }
    row_ids, _, users, movies = model.embed_batch(features)
    assert list(row_ids.numpy()) == list(range(8))
    from twotower_utils.models.losses import retrieval_loss

    dense = retrieval_loss(users, movies)  # the textbook B x B loss, no merging at all
    np.testing.assert_allclose(model.compute_loss(features, training=True).numpy(), dense.numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"user_tower": "lstm"}, "user_tower kind must be one of"),
        ({"history_length": 8}, "only for a sequence user tower"),
        ({"use_user_id": True}, "only for a sequence user tower"),
        ({"user_tower": "gru", "history_length": 0}, "history_length must be"),
        ({"user_tower": "gru", "blocks": 3}, "only for the 'sasrec' sequence tower"),
        ({"user_tower": "sasrec", "dropout": 1.0}, "dropout must be"),
        ({"user_tower": "mean", "user_features": ("age",)}, "not available with a sequence user tower"),
        ({"model": tt.MultitaskSpec(), "user_tower": "mean"}, "the multitask model has the id user tower only"),
    ],
)
def test_bad_sequence_settings_are_one_clear_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        tt.RunConfig().replace(**changes)


def test_the_sequence_tower_is_a_spec_of_its_own():
    spec = tt.RetrievalSpec(user_tower=tt.SequenceTower("gru", history_length=7, dropout=0.1))
    assert spec.sequence and spec.history_length == 7 and spec.user_tower.blocks == 1
    assert tt.RetrievalSpec().replace(user_tower="gru", history_length=7, dropout=0.1) == spec
    assert not tt.RetrievalSpec().sequence and tt.RetrievalSpec().history_length is None
