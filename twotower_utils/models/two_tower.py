"""The two-tower retrieval model: score(user, movie) = <user tower(user), movie tower(movie)>.

One model class with the switches of ``specs.RetrievalSpec`` (all off by default, which is the seed
report's recipe: bare 32-d embedding tables, ``tfrs.tasks.Retrieval``'s in-batch softmax):

* in the towers (``models.towers.Tower``): side features, hidden layers, L2-normalised outputs, an L2
  penalty on the looked-up embedding rows;
* in the loss (``TwoTowerModel.compute_loss``): logQ correction (``logq_correction``), removal of
  accidental hits, a temperature, and catalogue negatives (a full softmax over every movie instead of
  the batch's other movies).

The spec builds the towers and the model (``RetrievalSpec.build``); the run compiles it with its optimiser
(``training.build_for``).

Training steps use ``models.losses.retrieval_loss`` (the same loss as ``tfrs.tasks.Retrieval`` on the
batch's distinct ids, much faster); the TFRS task with its ``FactorizedTopK`` metric stays attached for
``metrics_in_training`` and for ``model.evaluate`` (the slow reference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.data.history import latest_histories
from twotower_utils.models.losses import gather_global_ids, in_synchronous_replicas, retrieval_loss
from twotower_utils.models.towers import SequenceTower, Tower


class TwoTowerModel(tfrs.Model):
    """Two towers and a retrieval task; ``compute_loss`` applies the loss switches.

    ``sampling_probability`` (``[num_movies + 1]``, from ``data.features.movie_sampling_probability``)
    is only read when ``logq_correction`` is on; ``catalogue_negatives`` scores every movie of the catalogue
    instead of the batch's; ``metrics_in_training`` updates the task's ``FactorizedTopK`` in every step.
    """

    def __init__(
        self,
        user_tower: Tower | SequenceTower,
        movie_tower: Tower,
        task: tfrs.tasks.Retrieval,
        *,
        logq_correction: float = 0.0,
        sampling_probability: np.ndarray | None = None,
        remove_accidental_hits: bool = False,
        temperature: float = 1.0,
        catalogue_negatives: bool = False,
        metrics_in_training: bool = False,
    ) -> None:
        super().__init__()
        self.user_tower = user_tower
        self.movie_tower = movie_tower
        self.task = task
        self.metrics_in_training = metrics_in_training
        self.logq_correction = float(logq_correction)
        if self.logq_correction and sampling_probability is None:
            raise ValueError("logq_correction needs the movies' sampling probabilities")
        self.probability = None if sampling_probability is None else tf.constant(sampling_probability, tf.float32)
        self.remove_accidental_hits = remove_accidental_hits
        self.catalogue_negatives = catalogue_negatives
        self.temperature = float(temperature)
        self.num_movies = int(movie_tower.lookup.vocabulary_size()) - 1
        self.sequence = isinstance(user_tower, SequenceTower)

    def query_table(self, history_frame: pd.DataFrame | None = None) -> tf.Tensor:
        """Every user id's query vector, row ``i`` for id ``i``: the id tower's table, or a sequence tower's
        reading of each user's last ``history_length`` ratings in ``history_frame`` (the training frame)."""
        if not self.sequence:
            return self.user_tower.embed_all()
        if history_frame is None:
            raise ValueError("a sequence user tower needs the frame whose ratings are the users' histories")
        users = np.arange(self.user_tower.num_users + 1)
        histories = latest_histories(history_frame, users, self.user_tower.length)
        return tf.constant(self.user_tower.embed(histories, users))

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user_ids, movie_ids, user_embeddings, movie_embeddings = self.embed_batch(features, training)
        return self.retrieval_task_loss(user_embeddings, movie_embeddings, user_ids, movie_ids, training)

    def embed_batch(
        self, features: dict[str, tf.Tensor], training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """A batch's integer user and movie ids and their tower outputs (each tower called once).

        A sequence user tower reads ``features["history"]`` too; each row is then its own query (two rows of
        one user have different histories), so the returned "user ids" are the row numbers: the loss must
        not merge rows of the same user."""
        user_ids = tf.cast(features["user_id"], tf.int64)
        movie_ids = tf.cast(features["movie_title"], tf.int64)
        if self.sequence:
            inputs = {"user_id": user_ids, "history": tf.cast(features["history"], tf.int64)}
            user_embeddings = self.user_tower(inputs, training=training)
            user_ids = tf.range(tf.shape(user_ids, out_type=tf.int64)[0])
        else:
            user_embeddings = self.user_tower(user_ids, training=training)
        return user_ids, movie_ids, user_embeddings, self.movie_tower(movie_ids, training=training)

    def retrieval_task_loss(
        self,
        user_embeddings: tf.Tensor,
        movie_embeddings: tf.Tensor,
        user_ids: tf.Tensor,
        movie_ids: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        """The retrieval loss of a batch's embeddings (summed over the batch) with the loss switches;
        outside training (or with ``metrics_in_training``) through the TFRS task, updating its metrics."""
        compute_metrics = self.metrics_in_training or not training
        if self.catalogue_negatives:
            return self._catalogue_loss(user_embeddings, movie_embeddings, movie_ids, compute_metrics)
        if not compute_metrics:  # the lean path: the task's loss on the batch's distinct ids
            if not in_synchronous_replicas():
                return self._in_batch_loss(user_embeddings, movie_embeddings, user_ids, movie_ids)
            # a replica of a synchronous strategy: its rows against the global batch's movies, looked up here so
            # the gradient reaches them all (the training-time L2 penalty stays on the replica's own lookup)
            global_ids, own_columns = gather_global_ids(movie_ids)
            global_movies = self.movie_tower(global_ids, training=False)
            return self._in_batch_loss(user_embeddings, global_movies, user_ids, global_ids, own_columns)
        if in_synchronous_replicas():
            raise ValueError(
                "the TFRS task scores a replica's own rows only: with several replicas in sync train with "
                "metrics_in_training=False (per-epoch curves come from TopKCurves)"
            )
        probability = self._sampling_probability(movie_ids)
        extra = {}
        if probability is not None:
            extra["candidate_sampling_probability"] = probability
        if self.remove_accidental_hits:
            extra["candidate_ids"] = movie_ids
        loss = self.task(user_embeddings, movie_embeddings, compute_metrics=False, **extra)
        self._update_topk_metrics(user_embeddings, movie_embeddings)
        return loss

    def _sampling_probability(self, movie_ids: tf.Tensor) -> tf.Tensor | None:
        """logQ's per-movie probability: Retrieval subtracts log(p); p ** strength subtracts strength * log(p)."""
        if not self.logq_correction:
            return None
        return tf.pow(tf.gather(self.probability, movie_ids), self.logq_correction)

    def _in_batch_loss(self, user_embeddings, movie_embeddings, user_ids, movie_ids, positive_columns=None):
        """``retrieval_loss`` on the batch's distinct ids with the loss switches."""
        probability = self._sampling_probability(movie_ids)
        return retrieval_loss(
            user_embeddings,
            movie_embeddings,
            user_ids,
            movie_ids,
            temperature=None if self.temperature == 1.0 else self.temperature,
            log_sampling_probability=None if probability is None else tf.math.log(probability),
            remove_accidental_hits=self.remove_accidental_hits,
            positive_columns=positive_columns,
        )

    def _catalogue_loss(self, user_embeddings, movie_embeddings, movie_ids, compute_metrics: bool) -> tf.Tensor:
        """Full softmax: every movie of the catalogue is a negative, so there is no sampling bias to correct."""
        catalogue = self.movie_tower(tf.range(1, self.num_movies + 1, dtype=tf.int64), training=False)
        logits = tf.matmul(user_embeddings, catalogue, transpose_b=True) / self.temperature
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=movie_ids - 1, logits=logits))
        if compute_metrics:
            self._update_topk_metrics(user_embeddings, movie_embeddings)
        return loss

    def _update_topk_metrics(self, user_embeddings: tf.Tensor, movie_embeddings: tf.Tensor) -> None:
        """``FactorizedTopK`` by score, as the task would update it (the movie ids are not passed: the
        candidates carry no identifiers, and ids would make TFRS match by id instead of by score)."""
        for metric in self.task.factorized_metrics:
            metric.update_state(user_embeddings, movie_embeddings)


def parameter_counts(model: TwoTowerModel) -> dict[str, int]:
    """Trainable parameters of each tower (the report: 30,208 and 53,280 at dimension 32)."""
    return {
        "user_tower": int(model.user_tower.count_params()),
        "movie_tower": int(model.movie_tower.count_params()),
    }


def in_batch_scores(model: TwoTowerModel, user_ids: tf.Tensor, movie_ids: tf.Tensor) -> tf.Tensor:
    """The ``[batch, batch]`` score matrix of a batch: row i is user i against every movie of the batch."""
    return tf.matmul(model.user_tower(user_ids), model.movie_tower(movie_ids), transpose_b=True)
