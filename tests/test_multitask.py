"""The multitask model on tiny synthetic data: one set of towers, a retrieval and a rating task, weighted."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import synthetic_movielens
from twotower_utils.config import MultitaskSpec, RetrievalSpec
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.pipeline import interactions_dataset
from twotower_utils.data.splits import random_split
from twotower_utils.evaluation.rating import rating_metrics
from twotower_utils.models.multitask import MultitaskModel, RatingHead
from twotower_utils.training import build_for, train


@pytest.fixture(scope="module")
def multitask(tiny_config):
    return tiny_config.replace(model=MultitaskSpec(embedding_dim=8, rating_layers=(8,)))


def _batch(frame, size=48):
    return next(iter(interactions_dataset(frame, size, shuffle=False, ratings=True)))


def test_the_loss_is_the_weighted_sum_of_the_two_task_losses(tiny_data, tiny_split, multitask):
    model = build_for(multitask.replace(retrieval_weight=0.7, rating_weight=3.0), tiny_data, tiny_split.train)
    assert isinstance(model, MultitaskModel)
    batch = _batch(tiny_split.train)
    retrieval, rating = (float(x) for x in model.task_losses(batch, training=True))
    assert float(model.compute_loss(batch, training=True)) == pytest.approx(0.7 * retrieval + 3.0 * rating, rel=1e-5)
    # the retrieval part is the two-tower's loss, the rating part the summed squared error of the predictions
    two_tower = build_for(multitask.replace(model=RetrievalSpec(embedding_dim=8)), tiny_data, tiny_split.train)
    assert retrieval == pytest.approx(float(two_tower.compute_loss(batch, training=True)), rel=1e-5)
    predicted = model.predict_ratings(batch["user_id"], batch["movie_title"]).numpy()
    assert rating == pytest.approx(float(np.sum((predicted - batch["user_rating"].numpy()) ** 2)), rel=1e-5)


def test_retrieval_only_trains_the_same_towers_as_the_two_tower(tiny_data, tiny_split, tiny_config):
    """w_rating = 0: the head is built but the towers learn exactly what the two-tower learns."""
    switches = {"logq_correction": 1.0, "l2_regularization": 0.01, "optimizer": "adam", "learning_rate": 0.05}
    plain = train(tiny_config.replace(**switches), tiny_data, tiny_split, verbose=0, curves=False).model
    config = tiny_config.replace(model=MultitaskSpec(embedding_dim=8, rating_weight=0.0)).replace(**switches)
    joint = train(config, tiny_data, tiny_split, verbose=0, curves=False).model
    for name in ("user_tower", "movie_tower"):
        np.testing.assert_allclose(getattr(joint, name).embed_all(), getattr(plain, name).embed_all(), atol=1e-6)
    head = joint.rating_head
    assert float(head.global_bias) == pytest.approx(tiny_split.train["user_rating"].mean())  # never trained
    assert not np.any(head.user_bias.embeddings.numpy())


def test_the_rating_task_learns_planted_biases(tiny_config):
    """Ratings = 3 + a user bias + a movie bias: rating-only training recovers them."""
    base = synthetic_movielens(num_users=24, num_movies=40, per_user=10, seed=1)
    ratings = base.ratings.copy()
    user_bias = np.where(ratings["user_idx"] % 2 == 0, 0.8, -0.8)
    movie_bias = np.where(ratings["movie_idx"] % 3 == 0, 0.6, -0.3)
    ratings["user_rating"] = 3.0 + user_bias + movie_bias
    data = MovieLens.from_frames(ratings.drop(columns=["user_idx", "movie_idx"]), base.movies, base.genre_names)
    split = random_split(data, seed=3, train_fraction=0.8)
    spec = MultitaskSpec(embedding_dim=8, retrieval_weight=0.0, rating_layers=())
    config = tiny_config.replace(model=spec, optimizer="adam", learning_rate=0.05, epochs=60)
    model = train(config, data, split, verbose=0, curves=False).model
    assert rating_metrics(model, split.train)["rmse"] < 0.1
    learned = model.rating_head.user_bias.embeddings.numpy()[1:, 0]
    planted = np.where(np.arange(1, data.num_users + 1) % 2 == 0, 0.8, -0.8)
    assert np.corrcoef(learned, planted)[0, 1] > 0.9


def test_stop_gradient_keeps_the_rating_task_out_of_the_towers(tiny_data, tiny_split, multitask):
    model = build_for(multitask.replace(rating_stop_gradient=True), tiny_data, tiny_split.train)
    batch = _batch(tiny_split.train)
    with tf.GradientTape(persistent=True) as tape:
        _, rating = model.task_losses(batch, training=True)
    towers = model.user_tower.trainable_variables + model.movie_tower.trainable_variables
    assert all(g is None for g in tape.gradient(rating, towers))
    assert all(g is not None for g in tape.gradient(rating, model.rating_head.trainable_variables))


def test_rating_only_steps_take_the_rating_gradient_alone(tiny_data, tiny_split, multitask):
    """w_retrieval = 0: the softmax is still computed (and logged) but kept out of the backward pass; the gradient
    is the rating loss's, exactly."""
    model = build_for(multitask.replace(retrieval_weight=0.0, rating_weight=1.0), tiny_data, tiny_split.train)
    batch = _batch(tiny_split.train)
    with tf.GradientTape(persistent=True) as tape:
        total = model.compute_loss(batch, training=True)
        _, rating = model.task_losses(batch, training=True)
    variables = model.user_tower.trainable_variables + model.rating_head.trainable_variables
    for mine, theirs in zip(tape.gradient(total, variables), tape.gradient(rating, variables), strict=True):
        np.testing.assert_array_equal(tf.convert_to_tensor(mine).numpy(), tf.convert_to_tensor(theirs).numpy())
    assert float(total) == pytest.approx(float(rating), rel=1e-6)
    assert float(model.retrieval_tracker.result()) > 0  # the retrieval loss is still logged


def test_history_logs_both_task_losses_and_the_rmse(tiny_data, tiny_split, multitask):
    result = train(multitask, tiny_data, tiny_split, verbose=0, curves=False)
    history = result.history
    for column in ("retrieval_loss", "rating_loss", "rmse"):
        assert column in history and len(history[column]) == multitask.epochs
    assert history["rating_loss"].iloc[-1] < history["rating_loss"].iloc[0]
    assert history["retrieval_loss"].iloc[-1] < history["retrieval_loss"].iloc[0]
    # per example: the RMSE on training batches is the square root of the rating loss
    assert history["rmse"].iloc[-1] == pytest.approx(np.sqrt(history["rating_loss"].iloc[-1]), rel=1e-4)


def test_same_seed_same_numbers(tiny_data, tiny_split, multitask):
    first = train(multitask, tiny_data, tiny_split, verbose=0, curves=False)
    second = train(multitask, tiny_data, tiny_split, verbose=0, curves=False)
    assert rating_metrics(first.model, tiny_split.test) == rating_metrics(second.model, tiny_split.test)


def test_rating_head_l2_penalises_weights_and_looked_up_biases():
    head = RatingHead(num_users=3, num_movies=4, layers=(4,), global_mean=3.5, l2=0.5)
    users, movies = tf.constant([1, 2], tf.int64), tf.constant([3, 3], tf.int64)
    embeddings = tf.ones((2, 5))
    prediction = head(users, movies, embeddings, embeddings, training=True)
    assert prediction.shape == (2,)
    assert len(head.losses) == 3  # two kernels and the bias rows
    head(users, movies, embeddings, embeddings, training=False)
    assert len(head.losses) == 2  # no bias rows outside training


def test_build_refuses_frames_without_ratings(tiny_data, tiny_split, multitask):
    with pytest.raises(ValueError, match="user_rating"):
        build_for(multitask, tiny_data, tiny_split.train.drop(columns=["user_rating"]))
