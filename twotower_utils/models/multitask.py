"""One model, two tasks: the two-tower's retrieval task and a rating task on the same user and movie embeddings.

The towers are the two-tower's (``models.towers.Tower``), and so is the retrieval loss with every switch
(logQ correction, accidental hits, temperature, catalogue negatives: ``TwoTowerModel.retrieval_task_loss``).
A small **rating head** reads the two embeddings of a (user, movie) pair:

    rating = mu + b_user + b_movie + MLP([u, m, u * m])

with a global bias ``mu`` (started at the training mean), per-user and per-movie biases (the head's own,
not shared) and an MLP over the concatenated embeddings and their element-wise product (an MLP alone learns
a dot product poorly).  The rating task is ``tfrs.tasks.Ranking`` with squared error summed over the batch,
the same reduction as the retrieval loss, so the two weights compare per example:

    loss = w_retrieval * retrieval + w_rating * rating   (+ the towers' L2 penalty, as in the two-tower)

``w_rating = 0`` is retrieval-only (the head is built, never trained) and ``w_retrieval = 0`` rating-only:
the same architecture.  ``rating_stop_gradient`` lets the head read the embeddings without changing them
(the rating task then cannot hurt retrieval).  Both per-example task losses are logged in the history
(``retrieval_loss``, ``rating_loss``) with the training RMSE (``rmse``).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.models.two_tower import TwoTowerModel


class RatingHead(tf.keras.Model):
    """(user ids, movie ids, their embeddings) -> predicted rating ``mu + b_u + b_m + MLP([u, m, u * m])``."""

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        layers: tuple[int, ...] = (64,),
        global_mean: float = 0.0,
        l2: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.l2 = float(l2)
        regularizer = tf.keras.regularizers.L2(self.l2) if self.l2 else None
        self.user_bias = tf.keras.layers.Embedding(num_users + 1, 1, embeddings_initializer="zeros", name="user_bias")
        self.movie_bias = tf.keras.layers.Embedding(
            num_movies + 1, 1, embeddings_initializer="zeros", name="movie_bias"
        )
        self.hidden = [
            tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=regularizer, name=f"hidden_{i}")
            for i, n in enumerate(layers)
        ]
        self.output_layer = tf.keras.layers.Dense(1, kernel_regularizer=regularizer, name="output")
        self.global_bias = tf.Variable(float(global_mean), dtype=tf.float32, name="global_bias")

    def call(self, user_ids, movie_ids, user_embeddings, movie_embeddings, training=None) -> tf.Tensor:
        x = tf.concat([user_embeddings, movie_embeddings, user_embeddings * movie_embeddings], axis=1)
        for layer in self.hidden:
            x = layer(x)
        interaction = tf.squeeze(self.output_layer(x), axis=1)
        user_bias = tf.squeeze(self.user_bias(user_ids), axis=1)
        movie_bias = tf.squeeze(self.movie_bias(movie_ids), axis=1)
        if self.l2 > 0 and training:  # the bias rows this batch uses, as the towers' L2
            self.add_loss(self.l2 * (tf.reduce_sum(tf.square(user_bias)) + tf.reduce_sum(tf.square(movie_bias))))
        biases = user_bias + movie_bias
        return self.global_bias + biases + interaction


class MultitaskModel(TwoTowerModel):
    """The two-tower plus a rating head; ``compute_loss`` returns the weighted sum of both task losses.

    Needs batches with ``user_rating`` (``data.pipeline.interactions_dataset(..., ratings=True)``).
    """

    def __init__(
        self,
        user_tower,
        movie_tower,
        task: tfrs.tasks.Retrieval,
        rating_head: RatingHead,
        *,
        retrieval_weight: float = 1.0,
        rating_weight: float = 1.0,
        stop_gradient: bool = False,
        **loss_switches,
    ) -> None:
        super().__init__(user_tower, movie_tower, task, **loss_switches)
        self.rating_head = rating_head
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
        )
        self.retrieval_weight = float(retrieval_weight)
        self.rating_weight = float(rating_weight)
        self.stop_gradient = stop_gradient
        self.retrieval_tracker = tf.keras.metrics.Mean(name="retrieval_loss")
        self.rating_tracker = tf.keras.metrics.Mean(name="rating_loss")

    def task_losses(self, features: dict[str, tf.Tensor], training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """The batch's retrieval and rating losses, each summed over the batch and not yet weighted."""
        user_ids, movie_ids, user_embeddings, movie_embeddings = self.embed_batch(features, training)
        retrieval = self.retrieval_task_loss(user_embeddings, movie_embeddings, user_ids, movie_ids, training)
        if self.stop_gradient:
            user_embeddings, movie_embeddings = tf.stop_gradient(user_embeddings), tf.stop_gradient(movie_embeddings)
        predictions = self.rating_head(user_ids, movie_ids, user_embeddings, movie_embeddings, training=training)
        ratings = tf.cast(features["user_rating"], tf.float32)
        rating = self.rating_task(ratings[:, tf.newaxis], predictions[:, tf.newaxis])
        return retrieval, rating

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        retrieval, rating = self.task_losses(features, training)
        batch = tf.cast(tf.shape(features["user_id"])[0], tf.float32)
        self.retrieval_tracker.update_state(retrieval / batch, sample_weight=batch)  # per example
        self.rating_tracker.update_state(rating / batch, sample_weight=batch)
        if self.retrieval_weight == 0:  # rating-only: the softmax adds exactly nothing to the gradient, so a step
            retrieval = tf.stop_gradient(retrieval)  # skips its backward pass (its loss is still logged)
        return self.retrieval_weight * retrieval + self.rating_weight * rating

    def predict_ratings(self, user_ids, movie_ids) -> tf.Tensor:
        """Predicted ratings of (user id, movie id) pairs (integer ids, as in the frames' ``user_idx``/``movie_idx``)."""
        user_ids = tf.cast(user_ids, tf.int64)
        movie_ids = tf.cast(movie_ids, tf.int64)
        return self.rating_head(user_ids, movie_ids, self.user_tower(user_ids), self.movie_tower(movie_ids))
