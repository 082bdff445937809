"""The second stage: re-order the retrieval model's top-N candidates.

Stage one is any score matrix ``[num_users + 1, num_movies + 1]`` (the two-tower's ``metrics.model_scores``):
``candidates`` takes each user's top N, the user's training movies left out.  Stage two gives every
candidate a new score, and ``two_stage_scores`` writes the result back as a score matrix in which the N
candidates keep their place above every other movie and are ordered by the new score, so the pipeline
goes through the same metrics as every other model (``evaluation.metrics``; N >= k keeps a movie outside
the candidates out of the top k).

Re-rankers (each returns ``[num_users + 1, N]`` scores for the candidates):

* ``by_rating``: the rating model's predicted rating alone;
* ``blend``: ``(1 - w) * z(retrieval score) + w * z(predicted rating)``, both standardised over each user's
  N candidates, so ``w = 0`` is stage one's own order and ``w = 1`` the rating order;
* ``LearnedReranker``: a linear model or small network trained *for the retrieval objective* on stage-one candidates:
  the user's held-out movies among their N candidates are the positives, the other candidates the
  (hard) negatives, a listwise softmax loss over each user's list; its inputs are ``candidate_features``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.evaluation.counting import seen_matrix
from twotower_utils.evaluation.metrics import top_k_lists
from twotower_utils.runtime import TFDATA_REWRITE, filtered_stderr


def candidates(scores: np.ndarray, exclude: np.ndarray | None, n: int) -> np.ndarray:
    """``[num_users + 1, n]`` movie ids: each user's n best movies by ``scores``, best first, ``exclude``d
    movies (the user's training movies) left out; ties: the lower movie id first.  Row 0 is unused.
    (``metrics.top_k_lists`` of every row, with the catalogue's bound checked.)"""
    if not 1 <= n <= scores.shape[1] - 1:
        raise ValueError(f"n must be from 1 to the catalogue's {scores.shape[1] - 1} movies, got {n}")
    return top_k_lists(scores, n, exclude)


def gather(matrix: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """``matrix[u, candidate_ids[u, j]]`` for every user row and candidate: ``[num_users + 1, N]``."""
    return np.take_along_axis(matrix, candidate_ids, axis=1)


def two_stage_scores(candidate_ids: np.ndarray, rerank: np.ndarray, num_movies: int) -> np.ndarray:
    """A ``[num_users + 1, num_movies + 1]`` score matrix of the pipeline: the candidates ordered by ``rerank``
    (ties: stage one's order), all above the movies stage one did not pass on (which score ``-inf``)."""
    if candidate_ids.shape != rerank.shape:
        raise ValueError(f"{candidate_ids.shape} candidates but {rerank.shape} re-ranking scores")
    n = candidate_ids.shape[1]
    order = np.lexsort((np.broadcast_to(np.arange(n), rerank.shape), -rerank), axis=1)
    scores = np.full((len(candidate_ids), num_movies + 1), -np.inf)
    ranked = np.take_along_axis(candidate_ids, order, axis=1)
    np.put_along_axis(scores, ranked, np.broadcast_to(np.arange(n, 0, -1, dtype=np.float64), ranked.shape), axis=1)
    return scores


def standardise(values: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (a constant row becomes zeros)."""
    centred = values - values.mean(axis=1, keepdims=True)
    spread = values.std(axis=1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred, dtype=np.float64), where=spread > 0)


def blend(retrieval: np.ndarray, rating: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * z(retrieval) + weight * z(rating)`` over each user's candidates (rows)."""
    if not 0 <= weight <= 1:
        raise ValueError(f"the blend weight must lie in [0, 1], got {weight}")
    return (1 - weight) * standardise(retrieval) + weight * standardise(rating)


def candidate_features(
    candidate_ids: np.ndarray, scores: Mapping[str, np.ndarray], train: pd.DataFrame
) -> tuple[np.ndarray, list[str]]:
    """``[num_users + 1, N, F]`` inputs of the learned re-ranker and their names.

    For each named ``[num_users + 1, N]`` score of the candidates (retrieval, predicted rating, EASE ...): the raw
    score and the score standardised within the user's list; then stage one's rank (``log(1 + rank)``), the
    movie's popularity (``log(1 + training ratings)``) and the user's activity (``log(1 + training ratings)``)."""
    n = candidate_ids.shape[1]
    columns, names = [], []
    for name, values in scores.items():
        if values.shape != candidate_ids.shape:
            raise ValueError(f"{name}: {values.shape} scores for {candidate_ids.shape} candidates")
        values = values.astype(np.float64)
        columns += [values, standardise(values)]
        names += [name, f"{name} (standardised)"]
    movie_counts = np.bincount(train["movie_idx"].to_numpy(), minlength=int(candidate_ids.max()) + 1)
    user_counts = np.bincount(train["user_idx"].to_numpy(), minlength=len(candidate_ids))[: len(candidate_ids)]
    columns.append(np.broadcast_to(np.log1p(np.arange(n, dtype=np.float64)), candidate_ids.shape))
    columns.append(np.log1p(movie_counts[candidate_ids].astype(np.float64)))
    columns.append(np.broadcast_to(np.log1p(user_counts.astype(np.float64))[:, None], candidate_ids.shape))
    names += ["stage-one rank, log(1 + rank)", "movie popularity, log(1 + n)", "user activity, log(1 + n)"]
    return np.stack(columns, axis=-1).astype(np.float32), names


def candidate_labels(candidate_ids: np.ndarray, held_out: pd.DataFrame, num_movies: int) -> np.ndarray:
    """``[num_users + 1, N]`` 1.0 where the candidate is one of the user's ``held_out`` movies, else 0.0."""
    positives = seen_matrix(held_out, len(candidate_ids) - 1, num_movies)
    return gather(positives, candidate_ids).astype(np.float32)


@contextlib.contextmanager
def quiet_keras() -> Iterator[None]:
    """A small Keras model's fit and predict without TensorFlow's noise: the error-level line about a rewritten
    tf.data node (``runtime.TFDATA_REWRITE``) and the retracing warning (each fitted network's first predict
    traces anew)."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        with filtered_stderr(TFDATA_REWRITE):
            yield
    finally:
        logger.setLevel(level)


class LearnedReranker:
    """A linear model or a small MLP (hidden ``layers``) scoring each (user, candidate) from ``candidate_features``,
    trained with a listwise softmax loss: for each user, ``-mean over positives of log softmax(scores over the
    user's N candidates)``.  Inputs are standardised with the training lists' mean and spread.  Users without a
    positive are skipped."""

    def __init__(self, layers: tuple[int, ...] = (), epochs: int = 300, learning_rate: float = 0.03, seed: int = 0):
        self.layers, self.epochs, self.learning_rate, self.seed = tuple(layers), int(epochs), learning_rate, int(seed)
        self.network: tf.keras.Model | None = None
        self.mean = self.scale = None

    def fit(self, features: np.ndarray, labels: np.ndarray, batch_users: int | None = None) -> LearnedReranker:
        """Fit on ``[users, N, F]`` features and ``[users, N]`` 0/1 labels; by default full-batch (every list in
        each step, ``epochs`` steps), so the linear model converges to its one optimum whatever the seed."""
        keep = labels.sum(axis=1) > 0
        if not keep.any():
            raise ValueError("no user has a held-out movie among the candidates: nothing to learn from")
        x, y = features[keep], labels[keep]
        self.mean = x.reshape(-1, x.shape[-1]).mean(axis=0)
        self.scale = x.reshape(-1, x.shape[-1]).std(axis=0) + 1e-6
        tf.keras.utils.set_random_seed(self.seed)
        inputs = tf.keras.Input((x.shape[1], x.shape[2]))
        h = inputs
        for size in self.layers:
            h = tf.keras.layers.Dense(size, activation="relu")(h)
        outputs = tf.squeeze(tf.keras.layers.Dense(1)(h), axis=-1)
        self.network = tf.keras.Model(inputs, outputs)
        self.network.compile(optimizer=tf.keras.optimizers.Adam(self.learning_rate), loss=listwise_softmax_loss)
        data = tf.data.Dataset.from_tensor_slices(((x - self.mean) / self.scale, y))
        data = data.shuffle(len(x), seed=self.seed).batch(batch_users or len(x))
        with quiet_keras():
            self.network.fit(data, epochs=self.epochs, verbose=0)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """``[users, N]`` re-ranking scores (higher first)."""
        if self.network is None:
            raise ValueError("fit the re-ranker first")
        with quiet_keras():
            scores = self.network.predict((features - self.mean) / self.scale, batch_size=256, verbose=0)
        return scores.astype(np.float64)


def listwise_softmax_loss(labels: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
    """Per list: ``-sum(labels * log_softmax(scores)) / sum(labels)`` (ListNet-style, several positives)."""
    labels = tf.cast(labels, scores.dtype)
    log_probabilities = tf.nn.log_softmax(scores, axis=-1)
    return -tf.reduce_sum(labels * log_probabilities, axis=-1) / tf.maximum(tf.reduce_sum(labels, axis=-1), 1.0)
