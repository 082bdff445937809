"""The ranking stage's rating model: a (user, movie) pair in, a predicted 1-5 rating out.

One ``tfrs.Model`` with the switches of ``specs.RatingSpec`` (``head`` and friends), trained with
``tfrs.tasks.Ranking`` (squared error summed over the batch, RMSE as its metric):

    rating = mu + b_user + b_movie + <u, m> [+ deep([u, m, u * m, user features, movie features])]

* ``head="mf"``: biases and the dot product alone, i.e. biased matrix factorisation trained by
  gradient descent (``models.rating_baselines.BiasedMF`` is the same model fitted by ALS);
* ``"mlp"``: plus an MLP over the two embeddings, their element-wise product and the side features
  (``data.features``: age, gender, occupation, zip; genres, decade) when ``user_features`` /
  ``movie_features`` name them, i.e. the report's "richer features";
* ``"dcn"``: plus a Deep & Cross network (``tfrs.layers.dcn.Cross`` layers, then the MLP) over the same input.
* ``implicit_feedback``: the user vector also reads *which* movies the user rated in training (SVD++,
  Koren 2008): ``u + |N(u)|^-1/2 * sum_{j in N(u)} y_j`` with a second movie table ``y``.

The user and movie vectors are ``models.towers.Tower`` s (the two-tower's, bare id embeddings), so
``l2_regularization`` penalises the looked-up rows exactly as there (once per rating of a batch), ``bias_l2``
the looked-up bias rows the same way, and ``ranking_l2`` the deep part's weights (once per batch).  ``mu`` starts at the training mean and the biases at zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.data.movielens import MovieLens
from twotower_utils.models.towers import Tower


def implicit_matrix(frame: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """``[num_users + 1, num_movies + 1]`` float32: row u is ``|N(u)|^-1/2`` on the movies u rated in ``frame``
    (SVD++'s normalisation), zero elsewhere; a user with no rating has a zero row."""
    matrix = np.zeros((num_users + 1, num_movies + 1), dtype=np.float32)
    matrix[frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy()] = 1.0
    counts = matrix.sum(axis=1, keepdims=True)
    return matrix / np.sqrt(np.maximum(counts, 1.0))


class RatingModel(tfrs.Model):
    """``mu + b_u + b_m + <u, m> [+ deep part]``; see the module docstring for the switches."""

    def __init__(
        self,
        data: MovieLens,
        train_frame: pd.DataFrame,
        *,
        head: str = "mf",
        embedding_dim: int = 32,
        l2: float = 0.0,
        bias_l2: float = 0.0,
        implicit_feedback: bool = False,
        user_side: np.ndarray | None = None,
        movie_side: np.ndarray | None = None,
        layers: tuple[int, ...] = (64,),
        cross_layers: int = 1,
        layers_l2: float = 0.0,
    ) -> None:
        super().__init__()
        if head not in ("mf", "mlp", "dcn"):
            raise ValueError(f"RatingModel's head is 'mf', 'mlp' or 'dcn', got {head!r}")
        dim = embedding_dim
        self.user_tower = Tower(data.user_vocabulary, dim, l2=l2, name="user_tower")
        self.movie_tower = Tower(data.movie_vocabulary, dim, l2=l2, name="movie_tower")
        self.bias_l2 = float(bias_l2)
        zeros = {"embeddings_initializer": "zeros"}
        self.user_bias = tf.keras.layers.Embedding(data.num_users + 1, 1, name="user_bias", **zeros)
        self.movie_bias = tf.keras.layers.Embedding(data.num_movies + 1, 1, name="movie_bias", **zeros)
        self.global_bias = tf.Variable(float(train_frame["user_rating"].mean()), dtype=tf.float32, name="global_bias")
        self.implicit = None
        if implicit_feedback:
            self.implicit = tf.constant(implicit_matrix(train_frame, data.num_users, data.num_movies))
            self.implicit_vectors = self.add_weight(
                name="implicit",
                shape=(data.num_movies + 1, dim),
                initializer=tf.keras.initializers.RandomNormal(stddev=0.01),
            )
        self.user_side = None if user_side is None else tf.constant(user_side)
        self.movie_side = None if movie_side is None else tf.constant(movie_side)
        regularizer = tf.keras.regularizers.L2(layers_l2) if layers_l2 else None
        self.cross = [
            tfrs.layers.dcn.Cross(kernel_regularizer=regularizer, name=f"cross_{i}")
            for i in range(cross_layers if head == "dcn" else 0)
        ]
        self.deep = []
        if head in ("mlp", "dcn"):
            self.deep = [
                tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=regularizer, name=f"hidden_{i}")
                for i, n in enumerate(layers)
            ]
            self.deep.append(tf.keras.layers.Dense(1, kernel_regularizer=regularizer, name="deep_output"))
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
        )

    def call(self, features: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """Predicted ratings ``[B]`` for a batch ``{user_id, movie_title}`` of integer ids."""
        users = tf.cast(features["user_id"], tf.int64)
        movies = tf.cast(features["movie_title"], tf.int64)
        u = self.user_tower(users, training=training)
        m = self.movie_tower(movies, training=training)
        if self.implicit is not None:
            implicit = tf.matmul(tf.gather(self.implicit, users), self.implicit_vectors)
            if training and self.user_tower.l2 > 0:
                self.add_loss(self.user_tower.l2 * tf.reduce_sum(tf.square(implicit)))
            u = u + implicit
        user_bias = tf.squeeze(self.user_bias(users), axis=1)
        movie_bias = tf.squeeze(self.movie_bias(movies), axis=1)
        if training and self.bias_l2 > 0:
            self.add_loss(self.bias_l2 * (tf.reduce_sum(tf.square(user_bias)) + tf.reduce_sum(tf.square(movie_bias))))
        rating = self.global_bias + user_bias + movie_bias + tf.reduce_sum(u * m, axis=1)
        if self.deep:
            x = tf.concat([u, m, u * m, *self._side(users, movies)], axis=1)
            x0 = x
            for layer in self.cross:
                x = layer(x0, x)
            for layer in self.deep:
                x = layer(x)
            rating = rating + tf.squeeze(x, axis=1)
        return rating

    def _side(self, users: tf.Tensor, movies: tf.Tensor) -> list[tf.Tensor]:
        parts = []
        if self.user_side is not None:
            parts.append(tf.gather(self.user_side, users))
        if self.movie_side is not None:
            parts.append(tf.gather(self.movie_side, movies))
        return parts

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        predictions = self(features, training=training)
        ratings = tf.cast(features["user_rating"], tf.float32)
        return self.task(labels=ratings[:, tf.newaxis], predictions=predictions[:, tf.newaxis])

    def predict_ratings(self, user_ids, movie_ids) -> tf.Tensor:
        """Predicted ratings of (user id, movie id) pairs (integer ids, as the frames' ``user_idx``/``movie_idx``)."""
        return self({"user_id": tf.constant(user_ids, tf.int64), "movie_title": tf.constant(movie_ids, tf.int64)})


class RatingBlend:
    """An ensemble of rating models: ``w_0 + sum_i w_i * prediction_i``, the weights fitted by least squares
    on held-out ratings (a validation fold, never test), then applied to the same members' predictions
    elsewhere; predictions are clipped to the 1-5 scale."""

    def __init__(self, low: float = 1.0, high: float = 5.0) -> None:
        self.low, self.high = low, high
        self.weights: np.ndarray | None = None

    def fit(self, predictions: np.ndarray, held_out: pd.DataFrame) -> RatingBlend:
        """``predictions``: ``[len(held_out), members]``, each member's prediction of the held-out pairs."""
        predictions = np.asarray(predictions, dtype=np.float64)
        if predictions.ndim != 2 or len(predictions) != len(held_out):
            raise ValueError(f"need [{len(held_out)}, members] predictions, got shape {predictions.shape}")
        design = np.concatenate([np.ones((len(predictions), 1)), predictions], axis=1)
        self.weights = np.linalg.lstsq(design, held_out["user_rating"].to_numpy(np.float64), rcond=None)[0]
        return self

    def predict(self, predictions: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise ValueError("fit the blend first")
        predictions = np.asarray(predictions, dtype=np.float64)
        return np.clip(self.weights[0] + predictions @ self.weights[1:], self.low, self.high)
