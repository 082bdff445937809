"""Training: fit the model a run names (``config.RunConfig``: its spec builds the model, the run compiles it with
its optimiser) on a split's training part: the two-tower with per-epoch train/test top-k curves from the one
counting core (``evaluation.counting``), the multitask model, or the ranking stage's rating model (per-epoch
train/test RMSE)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd
import tensorflow as tf

from twotower_utils.config import ConfigError, RatingSpec, RunConfig
from twotower_utils.data.history import training_histories
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.pipeline import interactions_dataset
from twotower_utils.data.splits import Split
from twotower_utils.evaluation.counting import TowerScorer, metric_name, topk_accuracy
from twotower_utils.models.ranking import RatingModel
from twotower_utils.models.two_tower import TwoTowerModel


class TopKCurves(tf.keras.callbacks.Callback):
    """At each epoch end, add train and test top-k accuracy to the Keras logs.

    Keys match what TFRS logs (``factorized_top_k/top_k_categorical_accuracy`` for train,
    ``val_``-prefixed for test), so the history looks as if ``FactorizedTopK`` had run,
    while training itself runs without metrics.  Train numbers here use the end-of-epoch
    weights; TFRS's in-training numbers average over the epoch's changing weights.
    """

    def __init__(self, split: Split, ks, batch_size: int = 4096, include_train: bool = True) -> None:
        super().__init__()
        self.split = split
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self.include_train = include_train
        self.seconds = 0.0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        start = time.perf_counter()
        frames = [("val_", self.split.test)]
        if self.include_train:
            frames.insert(0, ("", self.split.train))
        scorer = TowerScorer(self.model, self.split.train)  # a sequence tower's queries: the training histories
        for prefix, frame in frames:
            for k, value in topk_accuracy(scorer, frame, self.ks, self.batch_size).items():
                logs[metric_name(k, prefix)] = value
        self.seconds += time.perf_counter() - start


@dataclass
class TrainingResult:
    model: TwoTowerModel | RatingModel
    history: pd.DataFrame
    seconds: float  # the whole fit, curves included
    curve_seconds: float = 0.0  # of which spent computing the per-epoch top-k curves

    def final(self, k: int, test: bool = True) -> float:
        return float(self.history[metric_name(k, "val_" if test else "")].iloc[-1])


def build_for(
    config: RunConfig, data: MovieLens, train_frame: pd.DataFrame | None = None
) -> TwoTowerModel | RatingModel:
    """The compiled model a run names: seeded from ``config.seed`` (same seed, same model), built by its spec
    (``config.model.build``), compiled with the run's optimiser.  ``train_frame`` (default: every rating) gives
    logQ's probabilities, a rating model's mean and the length of a cosine schedule."""
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()  # same seed, same numbers (and no slower here)
    model = config.model.build(data, train_frame, ks=config.ks)
    num_examples = len(data.ratings if train_frame is None else train_frame)  # the cosine schedule's length
    model.compile(optimizer=make_optimizer(config, num_examples), jit_compile=config.jit_compile)
    return model


def make_optimizer(config: RunConfig, num_examples: int | None = None) -> tf.keras.optimizers.Optimizer:
    """The run's optimizer, its learning rate from ``learning_rate_for``."""
    optimizers = {
        "adagrad": tf.keras.optimizers.Adagrad,
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
    }
    return optimizers[config.optimizer](learning_rate=learning_rate_for(config, num_examples))


def learning_rate_for(config: RunConfig, num_examples: int | None = None):
    """``learning_rate``, or with ``learning_rate_schedule="cosine"`` a schedule that decays it to 0
    along a half cosine over the fit's ``epochs x ceil(num_examples / batch_size)`` steps."""
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    if not num_examples or num_examples < 1:
        raise ValueError("a cosine learning-rate schedule needs the number of training examples")
    steps = config.epochs * math.ceil(num_examples / config.batch_size)
    return tf.keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)


def train(
    config: RunConfig,
    data: MovieLens,
    split: Split,
    verbose: int | str = "auto",
    curves: bool = True,
    callbacks: list[tf.keras.callbacks.Callback] | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> TrainingResult:
    """Build and fit a model; the history has one row per epoch (``epoch`` 1..n).

    With ``curves`` (default) train/test top-k come from ``TopKCurves``; with the retrieval spec's
    ``metrics_in_training`` TFRS computes them inside training, the slow way.  A rating model's
    curves are its train RMSE (``rmse``, averaged over the epoch) and test RMSE (``val_rmse``).

    With a ``strategy`` (``distributed.make_strategy``) the model is built and compiled in its scope and Keras
    runs the fit on it.  A synchronous strategy splits each batch of ``config.batch_size`` across the
    replicas and scores every replica's rows against the global batch's movies, so the losses are those of
    one device.  A ``ParameterServerStrategy`` gets the data through a ``DatasetCreator``: every worker runs
    its own steps on its shard (asynchronous training; its history's loss is that of the coordinator's last
    finished step).  Only the two-tower retrieval model is trained this way.
    """
    if strategy is not None:
        return _train_distributed(config, data, split, strategy, verbose, curves, callbacks)
    model = build_for(config, data, split.train)
    train_ds = _training_dataset(config, split.train)
    return _fit(model, config, split, train_ds, verbose, curves, callbacks)


def _training_dataset(config: RunConfig, frame: pd.DataFrame, seed: int | None = None) -> tf.data.Dataset:
    """The shuffled training batches of ``frame`` with what the run's model reads (ratings, histories)."""
    histories = training_histories(frame, config.model.history_length) if config.model.sequence else None
    return interactions_dataset(
        frame,
        config.batch_size,
        seed=config.seed if seed is None else seed,
        ratings=_reads_ratings(config),
        histories=histories,
    )


def _reads_ratings(config: RunConfig) -> bool:
    """Whether the run's model has a rating task (multitask) or is the rating model."""
    return config.model.family in ("multitask", "rating")


def _train_distributed(config, data, split, strategy, verbose, curves, callbacks) -> TrainingResult:
    """``train`` on a ``tf.distribute`` strategy (see there)."""
    if _reads_ratings(config):
        raise ConfigError("train(strategy=...) trains the two-tower retrieval model only (no rating task or head)")
    if config.model.metrics_in_training:
        raise ConfigError(
            "metrics_in_training scores each replica's rows against its own movies only: under a strategy "
            "the per-epoch top-k curves come from TopKCurves (metrics_in_training=False)"
        )
    with strategy.scope():
        model = build_for(config, data, split.train)
    if not isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        return _fit(model, config, split, _training_dataset(config, split.train), verbose, curves, callbacks)
    frame = split.train

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        # each worker: its own shard of the rows, shuffled with its own seed, repeated (epochs are counted in steps)
        shard = frame.iloc[input_context.input_pipeline_id :: input_context.num_input_pipelines]
        seed = config.seed + input_context.input_pipeline_id
        return _training_dataset(config, shard, seed=seed).repeat()

    steps = math.ceil(len(frame) / config.batch_size)
    train_ds = tf.keras.utils.experimental.DatasetCreator(dataset_fn)
    return _fit(model, config, split, train_ds, verbose, curves, callbacks, steps_per_epoch=steps)


def _fit(model, config, split, train_ds, verbose, curves, callbacks, steps_per_epoch=None) -> TrainingResult:
    """``model.fit`` with the curves the config asks for, timed; the history as a frame."""
    ratings = _reads_ratings(config)
    all_callbacks = list(callbacks or [])
    validation = None
    curve_callback = None
    if curves and isinstance(config.model, RatingSpec):
        validation = interactions_dataset(split.test, config.eval_batch_size, shuffle=False, ratings=True)
    elif curves and not config.model.metrics_in_training:
        curve_callback = TopKCurves(split, config.ks, config.eval_batch_size)
        all_callbacks.insert(0, curve_callback)
    elif curves:
        validation = interactions_dataset(split.test, config.eval_batch_size, shuffle=False, ratings=ratings)
    start = time.perf_counter()
    keras_history = model.fit(
        train_ds,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation,
        callbacks=all_callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    history = pd.DataFrame(keras_history.history)
    history.insert(0, "epoch", range(1, len(history) + 1))
    return TrainingResult(model, history, seconds, curve_callback.seconds if curve_callback else 0.0)
