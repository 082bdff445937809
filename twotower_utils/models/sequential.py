"""SASRec's own training for the sequence user tower: every position of a user's sequence predicts the next movie.

The two-tower's retrieval loss trains a sequence tower on one example per rating (the rating's last L movies in,
that movie out), re-reading the same history once per rating.  SASRec (Kang & McAuley 2018) and its
full-softmax variant SASRec+ (Klenitskiy & Vasilev, RecSys 2023) train differently: a user's whole sequence goes
through the causal encoder *once*, and every position t predicts the movie at t + 1, so one pass over the users
is one epoch over every rating.  This module is that training for ``towers.SequenceTower`` (``gru`` and
``sasrec``), with the tower's own weights, so the trained tower serves the two-tower's query path
(``TwoTowerModel.query_table``, ``TowerScorer``) unchanged:

* ``next_item_sequences``: a training frame as ``[N, L]`` left-padded input sequences (latest last) and
  ``[N, L]`` next-movie targets (``[N, L, k]`` with ``targets_ahead=k``); 0 is padding, never an input and
  never a target;
* ``NextItemModel``: the training model (the tower, the movie tower's table); its loss is the softmax
  cross-entropy of every real position against the whole catalogue (or against ``negatives`` sampled movies,
  logQ-corrected, for large catalogues), averaged over the batch's real positions;
* ``EarlyStopping``: a validation score (any callable, e.g. filtered HR@10 of the two-tower) after every epoch,
  the curve, the epoch times, the best epoch's weights kept, and a stop after ``patience`` epochs without a
  better score;
* ``fit_next_item``: the loop that ties them together.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.models.towers import SequenceTower, Tower

LOSSES = ("softmax", "sampled")
SAMPLING = ("uniform", "popularity")


# --- training sequences ---------------------------------------------------------------------------------------


def next_item_sequences(
    frame: pd.DataFrame, length: int, targets_ahead: int = 1, windows: str = "all"
) -> dict[str, np.ndarray]:
    """The all-positions training examples of ``frame`` (``user_idx``, ``movie_idx``, ``timestamp``).

    Each user's ratings in time order (ties kept in the frame's order, as ``splits.hold_out_latest`` and
    ``data.history`` sort them) are cut from the end into windows of ``length + 1`` movies: ``history`` is a
    window without its last movie and ``targets`` is the window shifted by one, so position t's target is the
    movie after it.  Both are left-padded with 0 (the latest last, the layout of ``data.history``).  With
    ``windows="all"`` a history longer than ``length`` gives several windows (ending at its end, ``length``
    earlier, ...), so every rating but each user's first is a target exactly once; ``"last"`` keeps only each
    user's latest window (SASRec's own).  ``targets_ahead=k`` makes ``targets`` ``[N, length, k]``: the next k
    movies of each position (0 where the user's training sequence ends), for leave-latest-out, whose test is
    the user's next several movies.

    Returns ``{"user_id": [N], "history": [N, length], "targets": [N, length] or [N, length, k]}``, int64.
    """
    if length < 1 or targets_ahead < 1:
        raise ValueError(f"length and targets_ahead must be positive, got {length!r} and {targets_ahead!r}")
    if windows not in ("all", "last"):
        raise ValueError(f"windows must be 'all' or 'last', got {windows!r}")
    ordered = frame.sort_values(["user_idx", "timestamp"], kind="stable")
    users = ordered["user_idx"].to_numpy(np.int64)
    movies = ordered["movie_idx"].to_numpy(np.int64)
    bounds = np.flatnonzero(np.diff(users)) + 1
    starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(users)]])
    rows_user, rows_history, rows_targets = [], [], []
    offsets = np.arange(targets_ahead)
    for start, end in zip(starts, ends, strict=True):
        sequence = movies[start:end]
        n = len(sequence)
        stop = n  # the window's targets are sequence[stop - length : stop]
        while stop >= 2:
            first = max(0, stop - 1 - length)  # the window's first input
            inputs = sequence[first : stop - 1]
            ahead = np.arange(first + 1, stop)[:, None] + offsets[None, :]  # [len(inputs), k] target positions
            targets = np.where(ahead < n, sequence[np.minimum(ahead, n - 1)], 0)
            history = np.zeros(length, np.int64)
            history[length - len(inputs) :] = inputs
            padded = np.zeros((length, targets_ahead), np.int64)
            padded[length - len(inputs) :] = targets
            rows_user.append(users[start])
            rows_history.append(history)
            rows_targets.append(padded)
            if windows == "last":
                break
            stop -= length
    history = np.stack(rows_history) if rows_history else np.zeros((0, length), np.int64)
    targets = np.stack(rows_targets) if rows_targets else np.zeros((0, length, targets_ahead), np.int64)
    return {
        "user_id": np.asarray(rows_user, np.int64),
        "history": history,
        "targets": targets[:, :, 0] if targets_ahead == 1 else targets,
    }


# --- the training model ---------------------------------------------------------------------------------------


class NextItemModel(tf.keras.Model):
    """A sequence tower trained SASRec's way: ``{"user_id", "history", "targets"}`` batches, every real position
    scored against the catalogue (the movie tower's ``embed_all``, the table the two-tower ranks with).

    ``loss="softmax"``: the cross-entropy of the full softmax over every movie (column 0, the padding and
    out-of-vocabulary id, is never a candidate).  ``loss="sampled"``: a softmax over the target and
    ``negatives`` movies drawn per batch (``sampling="uniform"``, or ``"popularity"`` in proportion to
    ``popularity``, the training counts per movie id), each logit corrected by ``-log q`` (logQ) and a
    negative equal to the position's target removed.  A position with ``k`` targets (``targets_ahead``) adds
    the ``k`` cross-entropies of its one softmax.  The loss is averaged over the batch's real (position,
    target) pairs, so its scale does not depend on how much of a batch is padding; ``position_losses`` gives
    the ``[B, L]`` sums.
    """

    def __init__(
        self,
        user_tower: SequenceTower,
        movie_tower: Tower,
        *,
        loss: str = "softmax",
        negatives: int = 0,
        sampling: str = "uniform",
        popularity: np.ndarray | None = None,
        temperature: float = 1.0,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
        if loss == "sampled" and negatives < 1:
            raise ValueError("the sampled softmax needs negatives >= 1")
        if sampling == "popularity" and loss == "sampled" and popularity is None:
            raise ValueError("popularity sampling needs the training counts per movie id (popularity=)")
        self.user_tower = user_tower
        self.movie_tower = movie_tower
        self.loss_kind = loss
        self.negatives = int(negatives)
        self.temperature = float(temperature)
        size = int(movie_tower.lookup.vocabulary_size())
        if sampling == "popularity" and loss == "sampled":
            weights = np.asarray(popularity, np.float64)[:size].copy()
            weights[0] = 0.0
            weights = np.maximum(weights, 0.0) + (weights[1:].sum() * 1e-6 / max(size - 1, 1))  # no zero chance
            weights[0] = 0.0
        else:
            weights = np.r_[0.0, np.ones(size - 1)]
        probability = weights / weights.sum()
        self.log_probability = tf.constant(np.log(np.maximum(probability, 1e-30)), tf.float32)
        self.generator = tf.random.Generator.from_seed(seed)
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """``[B, L, d]``: the tower's output at every position (``SequenceTower.encode_positions``)."""
        return self.user_tower.encode_positions(inputs, training=training)

    def position_losses(
        self, inputs: dict[str, tf.Tensor], training: bool | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``([B, L] loss, [B, L] number of real targets)``: each position's summed cross-entropy over its
        targets (0 where it has none)."""
        targets = tf.cast(inputs["targets"], tf.int64)
        if targets.shape.rank == 2:
            targets = targets[:, :, tf.newaxis]
        states = self(inputs, training=training)  # [B, L, d]
        real = targets > 0  # [B, L, k]
        counts = tf.reduce_sum(tf.cast(real, tf.float32), axis=-1)  # [B, L]
        where = tf.where(counts > 0)  # [N, 2]: the positions with a target
        chosen_states = tf.gather_nd(states, where)  # [N, d]
        chosen_targets = tf.gather_nd(targets, where)  # [N, k]
        losses = self._target_losses(chosen_states, chosen_targets)  # [N]
        return tf.scatter_nd(where, losses, tf.shape(counts, out_type=tf.int64)), counts

    def _target_losses(self, states: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """``[N]``: the summed cross-entropy of each state's real targets (``[N, k]``, 0 = none)."""
        table = self.movie_tower(tf.range(self.movie_tower.lookup.vocabulary_size(), dtype=tf.int64))
        real = tf.cast(targets > 0, tf.float32)
        if self.loss_kind == "softmax":
            logits = tf.matmul(states, table, transpose_b=True) / self.temperature  # [N, V]
            logits = tf.concat([tf.fill([tf.shape(logits)[0], 1], -1e9), logits[:, 1:]], axis=1)  # never id 0
            normaliser = tf.reduce_logsumexp(logits, axis=1, keepdims=True)  # [N, 1]
            picked = tf.gather(logits, targets, batch_dims=1)  # [N, k]
            return tf.reduce_sum((normaliser - picked) * real, axis=1)
        sampled = self._sample()  # [S]
        negative = tf.matmul(states, tf.gather(table, sampled), transpose_b=True) / self.temperature  # [N, S]
        negative -= tf.gather(self.log_probability, sampled)[tf.newaxis]
        positive = tf.einsum("nd,nkd->nk", states, tf.gather(table, targets)) / self.temperature  # [N, k]
        positive -= tf.gather(self.log_probability, targets)
        hits = tf.equal(targets[:, :, tf.newaxis], sampled[tf.newaxis, tf.newaxis])  # [N, k, S]
        negative = tf.where(hits, -1e9, negative[:, tf.newaxis])  # [N, k, S]: the target is no negative
        logits = tf.concat([positive[:, :, tf.newaxis], negative], axis=2)
        return tf.reduce_sum((tf.reduce_logsumexp(logits, axis=2) - positive) * real, axis=1)

    def _sample(self) -> tf.Tensor:
        """``negatives`` movie ids drawn (with replacement) from ``exp(log_probability)``, never id 0."""
        seeds = self.generator.make_seeds(1)[:, 0]
        draws = tf.random.stateless_categorical(self.log_probability[tf.newaxis], self.negatives, seeds)
        return tf.cast(draws[0], tf.int64)

    def compute_batch_loss(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """The training objective: the mean cross-entropy over the batch's real (position, target) pairs, plus
        the towers' own penalties (``self.losses``)."""
        losses, counts = self.position_losses(inputs, training=training)
        loss = tf.reduce_sum(losses) / tf.maximum(tf.reduce_sum(counts), 1.0)
        return loss + tf.add_n(self.losses) if self.losses else loss

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self.compute_batch_loss(data, training=True)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        self.loss_tracker.update_state(self.compute_batch_loss(data, training=False))
        return {"loss": self.loss_tracker.result()}


# --- early stopping -------------------------------------------------------------------------------------------


class EarlyStopping(tf.keras.callbacks.Callback):
    """After every epoch, ``score()`` (higher is better: e.g. filtered HR@10 on the temporal validation, passed
    in as a function so the models need not import the evaluation); the curve and each epoch's training time are
    recorded, the best epoch's weights kept, and training stops once ``patience`` epochs in a row have not
    beaten the best by more than ``min_delta``.  At the end the best weights are restored (``restore_best``).

    ``curve[i]`` is the score after epoch ``i + 1``; ``best_epoch`` counts from 1 (0: no epoch ran);
    ``epoch_seconds[i]`` is epoch ``i + 1``'s training time without the scoring.
    """

    def __init__(
        self,
        score: Callable[[], float],
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience!r}")
        self.score = score
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.restore_best = restore_best
        self.log = log
        self.curve: list[float] = []
        self.epoch_seconds: list[float] = []
        self.best_epoch = 0
        self.best = -np.inf
        self.best_weights: list[np.ndarray] | None = None
        self.stopped_early = False
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._started)
        value = float(self.score())
        self.curve.append(value)
        if value > self.best + self.min_delta:
            self.best, self.best_epoch = value, len(self.curve)
            self.best_weights = [w.copy() for w in self.model.get_weights()]
        elif len(self.curve) - self.best_epoch >= self.patience:
            self.model.stop_training = True
            self.stopped_early = True
        if self.log is not None:
            loss = (logs or {}).get("loss", float("nan"))
            self.log(
                f"epoch {len(self.curve)}: loss {loss:.4f}, validation {value:.4f} "
                f"(best {self.best:.4f} at {self.best_epoch}), {self.epoch_seconds[-1]:.1f} s"
            )

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def report(self) -> dict:
        """The curve, the best epoch and score, the epoch times, and whether patience ran out."""
        return {
            "curve": list(self.curve),
            "best_epoch": self.best_epoch,
            "best": float(self.best) if self.curve else None,
            "epochs": len(self.curve),
            "epoch_seconds": list(self.epoch_seconds),
            "stopped_early": self.stopped_early,
        }


# --- the loop -------------------------------------------------------------------------------------------------


def sequence_dataset(
    sequences: dict[str, np.ndarray], batch_size: int, seed: int | None = 0, bucket: int = 32, multiple: int = 8
) -> tf.data.Dataset:
    """Batches of ``next_item_sequences``'s arrays, a new order every epoch (``seed``; None: in order, untrimmed).

    Most histories are shorter than L, so a batch is cut to its longest real history (rounded up to
    ``multiple`` columns): the leading columns that are padding in every row go.  That changes no number --
    the towers count positions from the latest column and mask padding -- and saves most of an epoch's work.
    To make the cut worth it, each epoch's shuffled examples are sorted by length inside groups of ``bucket``
    batches, and the batches are shuffled again."""
    history, targets, users = sequences["history"], sequences["targets"], sequences["user_id"]
    lengths = (history > 0).sum(axis=1)
    width = history.shape[1]
    target_shape = (None, None) + targets.shape[2:]
    signature = {
        "user_id": tf.TensorSpec((None,), tf.int64),
        "history": tf.TensorSpec((None, None), tf.int64),
        "targets": tf.TensorSpec(target_shape, tf.int64),
    }
    epoch = [0]

    def batches():
        if seed is None:
            order = np.arange(len(history))
            groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        else:
            rng = np.random.default_rng([seed, epoch[0]])
            epoch[0] += 1
            order = rng.permutation(len(history))
            chunk = batch_size * bucket
            groups = []
            for i in range(0, len(order), chunk):
                part = order[i : i + chunk]
                part = part[np.argsort(-lengths[part], kind="stable")]
                groups.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
            groups = [groups[i] for i in rng.permutation(len(groups))]
        for rows in groups:
            keep = width if seed is None else min(width, -(-max(int(lengths[rows].max()), 1) // multiple) * multiple)
            yield {
                "user_id": users[rows],
                "history": history[rows, width - keep :],
                "targets": targets[rows, width - keep :],
            }

    return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)


def fit_next_item(
    model: NextItemModel,
    sequences: dict[str, np.ndarray],
    epochs: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    callbacks: list[tf.keras.callbacks.Callback] | None = None,
) -> tf.keras.callbacks.History:
    """Train ``model`` on ``sequences`` for up to ``epochs`` epochs (Adam; ``EarlyStopping`` among
    ``callbacks`` may end it sooner and restore its best epoch's weights)."""
    if model.optimizer is None:
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    return model.fit(
        sequence_dataset(sequences, batch_size, seed), epochs=epochs, verbose=0, callbacks=list(callbacks or [])
    )
