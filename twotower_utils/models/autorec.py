"""Autoencoder rating models on the item x user rating matrix, in TensorFlow (full batch, seeded).

* ``IAutoRec`` (Sedhain et al. 2015, item-based): each movie's vector of ratings by all users, ``r_m``
  (0 where unobserved), is encoded by ``sigmoid(W r_m + b)`` (``hidden`` units) and decoded by an identity
  layer ``V h + c``; the loss is the squared error on the *observed* entries only plus
  ``l2 / 2 * (||W||^2 + ||V||^2)``, minimised by Adam over the whole matrix each step.  The prediction for
  (user u, movie m) is entry ``u`` of movie m's reconstruction.
* ``GLocalK`` (Han et al. 2021, "GLocal-K: Global and Local Kernels for Recommender Systems"): the same
  item-based autoencoder with two ``hidden``-unit sigmoid layers whose weights are *locally kernelised*,
  ``W * K(u_i, v_j)`` with the finite-support kernel ``K(u, v) = max(0, 1 - ||u - v||^2)`` on learned
  ``kernel_dim``-dimensional input/output points (penalties ``lambda_2 / 2 ||W||^2`` and
  ``lambda_s / 2 ||K||^2``).  Stage one pretrains it; stage two (fine-tuning) builds a ``gk_size x gk_size``
  global convolution kernel from the item-wise average of the pretrained reconstruction (a scaled dot product
  with learned weights), convolves the rating matrix with it (ReLU), and trains the whole network on that
  input.  Both stages use L-BFGS-B restarted every ``lbfgs_iterations`` iterations ("epochs"), as the authors'
  code does; defaults are their MovieLens 100K settings.  Unlike the paper (best test RMSE over fine-tuning
  epochs), the fine-tuning epoch is chosen on a validation frame, and the pretrained network (epoch 0) stays the
  model when no fine-tuning epoch beats it there.

Both: ``fit(train_frame, num_users, num_movies, validation=None)`` -- with ``validation`` (a frame held out of
training), training stops after ``patience`` evaluations without a lower validation RMSE and keeps the best
reconstruction -- then ``predict(user_idx, movie_idx)`` (clipped to 1-5; also ``predict_ratings`` and
``predict_frame``).  A user or movie without training ratings falls back to a ridge biases model
(``rating_baselines.Biases``), since its row/column of the reconstruction was never fitted.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import optimize

from twotower_utils.models.rating_baselines import Biases


def _matrices(frame: pd.DataFrame, num_users: int, num_movies: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``[movies + 1, users + 1]`` rating matrix (0 where unobserved) and its 0/1 mask."""
    missing = {"user_idx", "movie_idx", "user_rating"} - set(frame.columns)
    if missing:
        raise ValueError(f"the frame needs the columns {sorted(missing)}")
    if frame.empty:
        raise ValueError("cannot fit a rating model on an empty frame")
    users = frame["user_idx"].to_numpy(np.int64)
    movies = frame["movie_idx"].to_numpy(np.int64)
    ratings = np.zeros((num_movies + 1, num_users + 1), np.float32)
    mask = np.zeros_like(ratings)
    ratings[movies, users] = frame["user_rating"].to_numpy(np.float32)
    mask[movies, users] = 1.0
    return ratings, mask


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


class _MatrixAutoencoder:
    """What both autoencoders share: the fallback, early stopping on validation RMSE, prediction."""

    name = "autoencoder"

    def __init__(self, patience: int, seed: int, low: float, high: float, verbose: bool) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience, self.seed, self.low, self.high, self.verbose = int(patience), int(seed), low, high, verbose
        self.reconstruction: np.ndarray | None = None  # [movies + 1, users + 1], the chosen epoch's
        self.fallback: Biases | None = None
        self.seen_users = self.seen_movies = np.zeros(0, bool)
        self.history: list[dict[str, float]] = []
        self.best_epoch = 0
        self.fit_seconds = 0.0

    def _prepare(self, frame, num_users, num_movies):
        self.fallback = Biases(num_users, num_movies).fit(frame)
        self.seen_users = np.bincount(frame["user_idx"].to_numpy(np.int64), minlength=num_users + 1) > 0
        self.seen_movies = np.bincount(frame["movie_idx"].to_numpy(np.int64), minlength=num_movies + 1) > 0
        self.history, self.best_epoch, self.reconstruction = [], 0, None
        return _matrices(frame, num_users, num_movies)

    def _rmse(self, reconstruction: np.ndarray, validation: pd.DataFrame) -> float:
        predicted = np.clip(
            reconstruction[validation["movie_idx"].to_numpy(), validation["user_idx"].to_numpy()], self.low, self.high
        )
        return float(np.sqrt(np.mean((predicted - validation["user_rating"].to_numpy()) ** 2)))

    def _track(self, epoch: int, loss: float, reconstruction: np.ndarray, validation) -> bool:
        """Record an evaluation; keep the reconstruction if it is the best so far.  True: stop (patience)."""
        entry = {"epoch": epoch, "loss": float(loss)}
        if validation is None:
            self.reconstruction, self.best_epoch = reconstruction, epoch
        else:
            rmse = self._rmse(reconstruction, validation)
            entry["validation_rmse"] = rmse
            best = min((h["validation_rmse"] for h in self.history), default=np.inf)
            if rmse < best:
                self.reconstruction, self.best_epoch = reconstruction, epoch
        self.history.append(entry)
        if self.verbose:
            print(
                f"  epoch {epoch}: loss {loss:.1f}"
                + "".join(f", {k} {v:.4f}" for k, v in entry.items() if k == "validation_rmse"),
                flush=True,
            )
        if validation is None:
            return False
        evaluations_since_best = sum(1 for h in self.history if h["epoch"] > self.best_epoch)
        return evaluations_since_best >= self.patience

    def predict(self, user_idx, movie_idx) -> np.ndarray:
        if self.reconstruction is None or self.fallback is None:
            raise ValueError("fit the model first")
        users, movies = np.asarray(user_idx, dtype=np.int64), np.asarray(movie_idx, dtype=np.int64)
        in_range = (users >= 0) & (users < len(self.seen_users)) & (movies >= 0) & (movies < len(self.seen_movies))
        safe_users, safe_movies = np.where(in_range, users, 0), np.where(in_range, movies, 0)
        known = in_range & self.seen_users[safe_users] & self.seen_movies[safe_movies]
        learned = self.reconstruction[safe_movies, safe_users]
        fallback = self.fallback.predict_ratings(safe_users, safe_movies)
        return np.clip(np.where(known, learned, fallback), self.low, self.high)

    def predict_ratings(self, users, movies) -> np.ndarray:
        return self.predict(users, movies)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict(frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy())


class IAutoRec(_MatrixAutoencoder):
    """Item-based AutoRec; see the module docstring."""

    name = "I-AutoRec"

    def __init__(
        self,
        hidden: int = 500,
        l2: float = 100.0,
        learning_rate: float = 1e-3,
        epochs: int = 600,
        patience: int = 30,
        eval_every: int = 5,
        seed: int = 0,
        low: float = 1.0,
        high: float = 5.0,
        verbose: bool = False,
    ) -> None:
        super().__init__(patience, seed, low, high, verbose)
        if hidden < 1 or epochs < 1 or eval_every < 1:
            raise ValueError("hidden, epochs and eval_every must be at least 1")
        self.hidden, self.l2, self.learning_rate = int(hidden), float(l2), float(learning_rate)
        self.epochs, self.eval_every = int(epochs), int(eval_every)

    def fit(self, train_frame: pd.DataFrame, num_users: int, num_movies: int, validation=None) -> IAutoRec:
        start = time.perf_counter()
        ratings, mask = self._prepare(train_frame, num_users, num_movies)
        rng = np.random.default_rng(self.seed)
        width = ratings.shape[1]
        encoder = tf.Variable(_glorot(rng, width, self.hidden))
        encoder_bias = tf.Variable(np.zeros(self.hidden, np.float32))
        decoder = tf.Variable(_glorot(rng, self.hidden, width))
        decoder_bias = tf.Variable(np.zeros(width, np.float32))
        variables = [encoder, encoder_bias, decoder, decoder_bias]
        ratings_t, mask_t = tf.constant(ratings), tf.constant(mask)
        optimizer = tf.keras.optimizers.Adam(self.learning_rate)
        l2 = self.l2

        def reconstruct():
            return tf.matmul(tf.sigmoid(tf.matmul(ratings_t, encoder) + encoder_bias), decoder) + decoder_bias

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                error = mask_t * (ratings_t - reconstruct())
                loss = tf.reduce_sum(error**2) + l2 / 2 * (tf.reduce_sum(encoder**2) + tf.reduce_sum(decoder**2))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            return loss

        reconstruct_fn = tf.function(reconstruct)
        for epoch in range(1, self.epochs + 1):
            loss = float(step())
            if epoch % self.eval_every == 0 or epoch == self.epochs:
                if self._track(epoch, loss, reconstruct_fn().numpy(), validation):
                    break
        self.fit_seconds = time.perf_counter() - start
        return self


class GLocalK(_MatrixAutoencoder):
    """GLocal-K: a locally kernelised item autoencoder, pretrained, then fine-tuned with a global kernel."""

    name = "GLocal-K"

    def __init__(
        self,
        hidden: int = 500,
        layers: int = 2,
        kernel_dim: int = 5,
        gk_size: int = 3,
        lambda_2: float = 20.0,
        lambda_s: float = 0.006,
        dot_scale: float = 1.0,
        pretrain_epochs: int = 30,
        finetune_epochs: int = 60,
        lbfgs_iterations: int = 5,
        patience: int = 10,
        seed: int = 0,
        low: float = 1.0,
        high: float = 5.0,
        verbose: bool = False,
    ) -> None:
        super().__init__(patience, seed, low, high, verbose)
        if min(hidden, layers, kernel_dim, gk_size, lbfgs_iterations) < 1:
            raise ValueError("hidden, layers, kernel_dim, gk_size and lbfgs_iterations must be at least 1")
        self.hidden, self.layers, self.kernel_dim, self.gk_size = (
            int(hidden),
            int(layers),
            int(kernel_dim),
            int(gk_size),
        )
        self.lambda_2, self.lambda_s, self.dot_scale = float(lambda_2), float(lambda_s), float(dot_scale)
        self.pretrain_epochs, self.finetune_epochs = int(pretrain_epochs), int(finetune_epochs)
        self.lbfgs_iterations = int(lbfgs_iterations)
        self.pretrain_history: list[dict[str, float]] = []
        self.pretrained_validation_rmse: float | None = None

    def fit(self, train_frame: pd.DataFrame, num_users: int, num_movies: int, validation=None) -> GLocalK:
        start = time.perf_counter()
        ratings, mask = self._prepare(train_frame, num_users, num_movies)
        rng = np.random.default_rng(self.seed)
        num_items, width = ratings.shape
        sizes = [width] + [self.hidden] * self.layers + [width]
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers.append(
                {
                    "W": tf.Variable(_glorot(rng, fan_in, fan_out)),
                    "u": tf.Variable(_truncated_normal(rng, (fan_in, 1, self.kernel_dim), 1e-3)),
                    "v": tf.Variable(_truncated_normal(rng, (1, fan_out, self.kernel_dim), 1e-3)),
                    "b": tf.Variable(np.zeros(fan_out, np.float32)),
                }
            )
        conv_kernel = tf.Variable(_truncated_normal(rng, (num_items, self.gk_size**2), 0.1))
        ratings_t, mask_t = tf.constant(ratings), tf.constant(mask)
        lambda_2, lambda_s, gk_size, dot_scale = self.lambda_2, self.lambda_s, self.gk_size, self.dot_scale

        def network(x):
            """The kernelised autoencoder's output and its penalty."""
            penalty = 0.0
            for depth, layer in enumerate(layers):
                kernel = tf.maximum(0.0, 1.0 - tf.reduce_sum((layer["u"] - layer["v"]) ** 2, axis=2))
                penalty += lambda_s / 2 * tf.reduce_sum(kernel**2) + lambda_2 / 2 * tf.reduce_sum(layer["W"] ** 2)
                x = tf.matmul(x, layer["W"] * kernel) + layer["b"]
                if depth < len(layers) - 1:
                    x = tf.sigmoid(x)
            return x, penalty

        def global_input():
            pretrained, _ = network(ratings_t)
            pooled = tf.reshape(tf.reduce_mean(pretrained, axis=1), [1, -1])  # item-wise average
            kernel = tf.reshape(tf.matmul(pooled, conv_kernel) * dot_scale, [gk_size, gk_size, 1, 1])
            image = tf.reshape(ratings_t, [1, num_items, width, 1])
            convolved = tf.nn.relu(tf.nn.conv2d(image, kernel, strides=[1, 1, 1, 1], padding="SAME"))
            return tf.reshape(convolved, [num_items, width])

        def pretrain_loss():
            output, penalty = network(ratings_t)
            return tf.reduce_sum((mask_t * (ratings_t - output)) ** 2) / 2 + penalty

        def finetune_loss():
            output, penalty = network(global_input())
            return tf.reduce_sum((mask_t * (ratings_t - output)) ** 2) / 2 + penalty

        local_variables = [v for layer in layers for v in layer.values()]
        pretrain = _LBFGS(pretrain_loss, local_variables)
        pretrain_output = tf.function(lambda: network(ratings_t)[0])
        self.pretrain_history = []
        for epoch in range(1, self.pretrain_epochs + 1):
            loss = pretrain.run(self.lbfgs_iterations)
            self.pretrain_history.append({"epoch": epoch, "loss": loss})
            if self.verbose and epoch % 10 == 0:
                print(f"  pretraining epoch {epoch}: loss {loss:.1f}", flush=True)
        pretrained = pretrain_output().numpy()
        self.pretrained_validation_rmse = None if validation is None else self._rmse(pretrained, validation)
        finetune = _LBFGS(finetune_loss, local_variables + [conv_kernel])
        finetune_output = tf.function(lambda: network(global_input())[0])
        for epoch in range(1, self.finetune_epochs + 1):
            loss = finetune.run(self.lbfgs_iterations)
            if self._track(epoch, loss, finetune_output().numpy(), validation):
                break
        # the pretrained network (epoch 0) is the model without fine-tuning, or when fine-tuning never beat it
        # on validation (an unlucky start can leave the global-kernel stage worse than where it began)
        finetuned = [h["validation_rmse"] for h in self.history if "validation_rmse" in h]
        if self.reconstruction is None or (
            self.pretrained_validation_rmse is not None and self.pretrained_validation_rmse <= min(finetuned)
        ):
            self.reconstruction, self.best_epoch = pretrained, 0
        self.fit_seconds = time.perf_counter() - start
        return self


def _truncated_normal(rng: np.random.Generator, shape, stddev: float) -> np.ndarray:
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return (stddev * values).astype(np.float32)


class _LBFGS:
    """scipy's L-BFGS-B on TensorFlow variables (float64 outside, float32 inside); each ``run`` restarts it."""

    def __init__(self, loss_fn, variables) -> None:
        self.variables = variables
        self.shapes = [tuple(v.shape) for v in variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]

        @tf.function
        def value_and_gradient():
            with tf.GradientTape() as tape:
                loss = loss_fn()
            gradients = tape.gradient(loss, variables)
            return loss, tf.concat([tf.reshape(g, [-1]) for g in gradients], axis=0)

        self.value_and_gradient = value_and_gradient

    def _assign(self, flat: np.ndarray) -> None:
        for variable, part, shape in zip(
            self.variables, np.split(flat, np.cumsum(self.sizes)[:-1]), self.shapes, strict=True
        ):
            variable.assign(part.reshape(shape).astype(np.float32))

    def _objective(self, flat: np.ndarray):
        self._assign(flat)
        loss, gradient = self.value_and_gradient()
        return float(loss), gradient.numpy().astype(np.float64)

    def run(self, iterations: int) -> float:
        start = np.concatenate([v.numpy().reshape(-1) for v in self.variables]).astype(np.float64)
        result = optimize.minimize(
            self._objective, start, jac=True, method="L-BFGS-B", options={"maxiter": iterations, "maxcor": 10}
        )
        self._assign(result.x)
        return float(result.fun)
