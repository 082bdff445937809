"""SASRec's own training for the sequence tower (models.sequential): every position predicts the next movie."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import twotower_utils as tt
from twotower_utils.evaluation.metrics import model_scores
from twotower_utils.models.sequential import (
    EarlyStopping,
    NextItemModel,
    fit_next_item,
    next_item_sequences,
    sequence_dataset,
)
from twotower_utils.training import build_for

KINDS = ("gru", "sasrec")
LENGTH = 5


def build(tiny_data, kind, **changes):
    run = tt.RunConfig(tt.RetrievalSpec(embedding_dim=8), optimizer="adam", learning_rate=0.01, seed=3)
    extra = {"blocks": 2} if kind == "sasrec" else {}
    return build_for(run.replace(user_tower=kind, history_length=LENGTH, **extra, **changes), tiny_data)


def batch(targets_ahead=1):
    """Two users: one with a full window, one with padding in front."""
    frame = pd.DataFrame(
        {
            "user_idx": [1] * 7 + [2] * 3,
            "movie_idx": [3, 7, 1, 9, 4, 12, 5, 8, 2, 6],
            "timestamp": list(range(7)) + [10, 11, 12],
        }
    )
    return next_item_sequences(frame, LENGTH, targets_ahead=targets_ahead, windows="last")


def softmax_loss(state, table, target):
    logits = table[1:] @ state  # id 0 is never a candidate
    return np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[target - 1]


def test_the_training_sequences_are_the_history_shifted_by_one():
    frame = pd.DataFrame({"user_idx": [1, 1, 1, 1, 2], "movie_idx": [5, 6, 7, 8, 9], "timestamp": [4, 1, 2, 3, 0]})
    found = next_item_sequences(frame, 2)  # user 1 in time order: 6 7 8 5; user 2 has no target
    np.testing.assert_array_equal(found["user_id"], [1, 1])
    np.testing.assert_array_equal(found["history"], [[7, 8], [0, 6]])
    np.testing.assert_array_equal(found["targets"], [[8, 5], [0, 7]])
    ahead = next_item_sequences(frame, 2, targets_ahead=2, windows="last")
    np.testing.assert_array_equal(ahead["history"], [[7, 8]])
    np.testing.assert_array_equal(ahead["targets"], [[[8, 5], [5, 0]]])  # past the end: padding


@pytest.mark.parametrize("kind", KINDS)
def test_the_all_positions_loss_is_the_per_position_loss(tiny_data, kind):
    model = build(tiny_data, kind)
    trainer = NextItemModel(model.user_tower, model.movie_tower)
    data = batch()
    losses, counts = trainer.position_losses({k: tf.constant(v) for k, v in data.items()})
    table = model.movie_tower.embed_all().numpy()
    expected = np.zeros(data["targets"].shape)
    for b, t in zip(*np.nonzero(data["targets"]), strict=True):
        row = {"user_id": data["user_id"][b : b + 1], "history": data["history"][b : b + 1]}
        state = model.user_tower.encode_positions(row).numpy()[0, t]
        if kind == "gru":  # no positions: the prefix alone through the serving path gives the same vector
            prefix = np.zeros((1, LENGTH), np.int64)
            prefix[0, LENGTH - t - 1 :] = data["history"][b, : t + 1]
            np.testing.assert_allclose(model.user_tower({**row, "history": prefix}).numpy()[0], state, atol=1e-5)
        expected[b, t] = softmax_loss(state, table, data["targets"][b, t])
    np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(counts.numpy(), data["targets"] > 0)
    mean = trainer.compute_batch_loss({k: tf.constant(v) for k, v in data.items()}).numpy()
    np.testing.assert_allclose(mean, expected.sum() / (data["targets"] > 0).sum(), rtol=1e-5)


def test_several_targets_ahead_add_their_cross_entropies(tiny_data):
    model = build(tiny_data, "sasrec")
    trainer = NextItemModel(model.user_tower, model.movie_tower)
    data = batch(targets_ahead=3)
    losses, counts = trainer.position_losses({k: tf.constant(v) for k, v in data.items()})
    table = model.movie_tower.embed_all().numpy()
    states = model.user_tower.encode_positions(data).numpy()
    expected = np.zeros(counts.shape)
    for b, t, j in zip(*np.nonzero(data["targets"]), strict=True):
        expected[b, t] += softmax_loss(states[b, t], table, data["targets"][b, t, j])
    np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(counts.numpy(), (data["targets"] > 0).sum(axis=-1))


@pytest.mark.parametrize("kind", KINDS)
def test_padding_is_never_an_input_nor_a_target(tiny_data, kind):
    model = build(tiny_data, kind)
    trainer = NextItemModel(model.user_tower, model.movie_tower)
    data = {k: tf.constant(v) for k, v in batch().items()}
    with tf.GradientTape() as tape:
        loss = trainer.compute_batch_loss(data)
    table = model.movie_tower.embedding.embeddings
    gradient = tf.convert_to_tensor(tape.gradient(loss, table)).numpy()
    assert np.all(gradient[0] == 0)  # row 0 (padding) neither read nor scored
    assert np.any(gradient[1:] != 0)
    real = data["history"].numpy() > 0
    before = model.user_tower.encode_positions(data).numpy()
    weights = table.numpy()
    table.assign(np.concatenate([np.full((1, weights.shape[1]), 7.0, np.float32), weights[1:]]))
    np.testing.assert_allclose(trainer.compute_batch_loss(data).numpy(), loss.numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.user_tower.encode_positions(data).numpy()[real], before[real], atol=1e-6)
    # a target of 0 (padding) adds nothing, wherever it is
    losses, counts = trainer.position_losses(data)
    assert np.all(losses.numpy()[data["targets"].numpy() == 0] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_each_position_reads_only_itself_and_earlier_movies(tiny_data, kind):
    tower = build(tiny_data, kind).user_tower
    history = np.array([[0, 3, 7, 1, 9]])
    changed = np.array([[0, 3, 7, 11, 2]])  # the last two positions differ
    a = tower.encode_positions({"user_id": [0], "history": history}).numpy()
    b = tower.encode_positions({"user_id": [0], "history": changed}).numpy()
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not np.allclose(a[:, 3:], b[:, 3:])


@pytest.mark.parametrize("kind, changes", [("gru", {}), ("sasrec", {"use_user_id": True, "dropout": 0.3})])
def test_the_serving_call_is_the_last_position(tiny_data, kind, changes):
    tower = build(tiny_data, kind, **changes).user_tower
    inputs = {"user_id": np.array([1, 2, 3]), "history": np.array([[0, 3, 7, 1, 9], [0, 0, 0, 4, 2], [0, 0, 0, 0, 0]])}
    np.testing.assert_allclose(
        tower.encode_positions(inputs).numpy()[:, -1], tower(inputs).numpy(), rtol=1e-5, atol=1e-6
    )


def test_batches_cut_to_their_longest_history_change_no_loss(tiny_data):
    model = build(tiny_data, "sasrec")
    trainer = NextItemModel(model.user_tower, model.movie_tower)
    data = {k: v[1:] for k, v in batch().items()}  # the user with padding in front: 2 real columns of 5
    (trimmed,) = list(sequence_dataset(data, 8, seed=0, multiple=1))
    assert trimmed["history"].shape[1] == 2
    np.testing.assert_allclose(
        trainer.compute_batch_loss(trimmed).numpy(),
        trainer.compute_batch_loss({k: tf.constant(v) for k, v in data.items()}).numpy(),
        rtol=1e-6,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_trained_tower_serves_the_two_tower_query_path(tiny_data, kind):
    from twotower_utils.data.splits import leave_one_out_split

    split = leave_one_out_split(tiny_data)
    model = build(tiny_data, kind)
    for loss in ("softmax", "sampled"):
        trainer = NextItemModel(
            model.user_tower,
            model.movie_tower,
            loss=loss,
            negatives=6,
            sampling="popularity",
            popularity=np.bincount(split.train["movie_idx"], minlength=tiny_data.num_movies + 1),
        )
        history = fit_next_item(trainer, next_item_sequences(split.train, LENGTH), epochs=2, batch_size=8)
        assert np.all(np.isfinite(history.history["loss"]))
    scores = model_scores(model, split.train)
    assert scores.shape == (tiny_data.num_users + 1, tiny_data.num_movies + 1)


class _Drifting(tf.keras.Model):
    """One weight that grows by one each epoch (one batch an epoch), whatever the gradient."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(0.0)

    def train_step(self, data):
        self.w.assign_add(1.0)
        return {"loss": self.w}


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.95])
    model = _Drifting()
    model.compile()
    logged = []
    stopper = EarlyStopping(lambda: next(scores), patience=2, log=logged.append)
    model.fit(tf.data.Dataset.from_tensors(0.0), epochs=50, verbose=0, callbacks=[stopper])
    report = stopper.report()
    assert report["curve"] == [0.1, 0.3, 0.2, 0.25]  # two epochs without a better score after epoch 2: stop
    assert report["best_epoch"] == 2 and report["best"] == 0.3 and report["stopped_early"]
    assert len(report["epoch_seconds"]) == 4 and len(logged) == 4
    assert model.w.numpy() == 2.0  # the weights after epoch 2, restored


def test_a_post_norm_tower_reads_its_last_position_too(tiny_data):
    from twotower_utils.models.towers import SequenceTower

    table = tf.keras.layers.Embedding(tiny_data.num_movies + 1, 8)
    tower = SequenceTower("sasrec", table, 8, LENGTH, tiny_data.num_users, blocks=2, dropout=0.2, norm="post")
    inputs = {"user_id": np.array([1, 2, 3]), "history": np.array([[0, 3, 7, 1, 9], [0, 0, 0, 4, 2], [0] * 5])}
    served = tower(inputs).numpy()
    every = tower.encode_positions(inputs).numpy()
    np.testing.assert_allclose(every[:, -1], served, rtol=1e-5, atol=1e-6)
    changed = {**inputs, "history": np.array([[0, 3, 7, 11, 2], [0, 0, 0, 4, 2], [0] * 5])}
    np.testing.assert_allclose(tower.encode_positions(changed).numpy()[0, :3], every[0, :3], atol=1e-6)
