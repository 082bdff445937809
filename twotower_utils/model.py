"""The two towers and the TFRS retrieval model that joins them with a dot product."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.config import ExperimentConfig
from twotower_utils.data import MovieLens
from twotower_utils.losses import retrieval_loss


class Tower(tf.keras.Model):
    """Id -> embedding.  Accepts raw strings (looked up with ``StringLookup``) or the
    integer ids the training pipeline already made, so training needs no lookup."""

    def __init__(self, vocabulary: np.ndarray, embedding_dim: int, name: str | None = None) -> None:
        super().__init__(name=name)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None, name="lookup")
        self.embedding = tf.keras.layers.Embedding(self.lookup.vocabulary_size(), embedding_dim, name="embedding")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if inputs.dtype == tf.string:
            inputs = self.lookup(inputs)
        return self.embedding(inputs)

    def embed_all(self) -> tf.Tensor:
        """Embeddings of every id, row ``i`` for integer id ``i`` (row 0: out-of-vocabulary)."""
        return self.embedding(tf.range(self.lookup.vocabulary_size(), dtype=tf.int64))


class TwoTowerModel(tfrs.Model):
    """Score = <user tower(user), movie tower(movie)>, trained with ``tfrs.tasks.Retrieval``."""

    def __init__(
        self, user_tower: Tower, movie_tower: Tower, task: tfrs.tasks.Retrieval, metrics_in_training: bool
    ) -> None:
        super().__init__()
        self.user_tower = user_tower
        self.movie_tower = movie_tower
        self.task = task
        self.metrics_in_training = metrics_in_training

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user_embeddings = self.user_tower(features["user_id"])
        movie_embeddings = self.movie_tower(features["movie_title"])
        if training and not self.metrics_in_training:  # lean: same loss on distinct ids, no label matrix
            return retrieval_loss(user_embeddings, movie_embeddings, features["user_id"], features["movie_title"])
        return self.task(user_embeddings, movie_embeddings, compute_metrics=not training or self.metrics_in_training)


def build_towers(data: MovieLens, embedding_dim: int) -> tuple[Tower, Tower]:
    """The user tower (user id) and movie tower (movie title)."""
    return (
        Tower(data.user_vocabulary, embedding_dim, name="user_tower"),
        Tower(data.movie_vocabulary, embedding_dim, name="movie_tower"),
    )


def build_model(config: ExperimentConfig, data: MovieLens, train_frame=None) -> TwoTowerModel:
    """A compiled two-tower model; ``FactorizedTopK`` over every movie title is its task metric."""
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()  # same seed, same numbers (and no slower here)
    from twotower_utils.improvements import build_improved_model, uses_switches

    if uses_switches(config):  # issue-4 switches (logQ, side features, ...); train_frame gives logQ's frequencies
        model = build_improved_model(config, data, train_frame)
    else:
        user_tower, movie_tower = build_towers(data, config.embedding_dim)
        for tower in (user_tower, movie_tower):
            tower(tf.constant([0], dtype=tf.int64))  # build the weights so parameters can be counted
        candidate_titles = tf.data.Dataset.from_tensor_slices(data.movie_vocabulary)
        metrics = tfrs.metrics.FactorizedTopK(candidates=candidate_titles.batch(128).map(movie_tower), ks=config.ks)
        task = tfrs.tasks.Retrieval(metrics=metrics)
        model = TwoTowerModel(user_tower, movie_tower, task, config.metrics_in_training)
    num_examples = len(data.ratings if train_frame is None else train_frame)  # the cosine schedule's length
    model.compile(optimizer=make_optimizer(config, num_examples), jit_compile=config.jit_compile)
    return model


def make_optimizer(config: ExperimentConfig, num_examples: int | None = None) -> tf.keras.optimizers.Optimizer:
    """The config's optimizer, its learning rate from ``learning_rate_for``."""
    optimizers = {
        "adagrad": tf.keras.optimizers.Adagrad,
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
    }
    return optimizers[config.optimizer](learning_rate=learning_rate_for(config, num_examples))


def learning_rate_for(config: ExperimentConfig, num_examples: int | None = None):
    """``learning_rate``, or with ``learning_rate_schedule="cosine"`` a schedule that decays it to 0
    along a half cosine over the fit's ``epochs x ceil(num_examples / batch_size)`` steps."""
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    if not num_examples or num_examples < 1:
        raise ValueError("a cosine learning-rate schedule needs the number of training examples")
    steps = config.epochs * math.ceil(num_examples / config.batch_size)
    return tf.keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)


def parameter_counts(model: TwoTowerModel) -> dict[str, int]:
    """Trainable parameters of each tower (the report: 30,208 and 53,280 at dimension 32)."""
    return {
        "user_tower": int(model.user_tower.count_params()),
        "movie_tower": int(model.movie_tower.count_params()),
    }


def in_batch_scores(model: TwoTowerModel, user_ids: tf.Tensor, movie_ids: tf.Tensor) -> tf.Tensor:
    """The ``[batch, batch]`` score matrix of a batch: row i is user i against every movie of the batch."""
    return tf.matmul(model.user_tower(user_ids), model.movie_tower(movie_ids), transpose_b=True)
