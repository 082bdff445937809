"""The two-tower switches of issue 4: logQ correction, accidental hits, temperature,
normalised embeddings, L2 regularisation, side features and deeper towers.

Every switch is a field of ``ExperimentConfig`` that is off by default; ``build_model``
hands a config with any switch on to ``build_improved_model`` here, so the report's
model (notebooks 01-04) is built exactly as before.

Side features are fixed per user (age bucket, gender, occupation, first zip digit) and per
movie (genres, decade of the title's year), so a tower gathers them from a constant
``[vocabulary + 1, features]`` multi-hot table indexed by its integer id: the tower still
maps ids (or strings) to embeddings, and ``embed_all()`` still embeds every id at once.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.config import ExperimentConfig
from twotower_utils.data import MovieLens, lookup_ids
from twotower_utils.losses import retrieval_loss

SWITCH_DEFAULTS = {
    "logq_correction": 0.0,
    "remove_accidental_hits": False,
    "temperature": 1.0,
    "normalize_embeddings": False,
    "l2_regularization": 0.0,
    "user_features": (),
    "movie_features": (),
    "tower_layers": (),
    "negatives": "in_batch",
}


def uses_switches(config: ExperimentConfig) -> bool:
    """Whether any issue-4 switch differs from the report's recipe."""
    return any(getattr(config, name) != default for name, default in SWITCH_DEFAULTS.items())


def _one_hot(codes: np.ndarray, size: int) -> np.ndarray:
    table = np.zeros((len(codes), size), dtype=np.float32)
    table[np.arange(len(codes)), codes] = 1.0
    return table


def user_feature_table(data: MovieLens, names) -> np.ndarray:
    """``[num_users + 1, F]`` multi-hot side features per user id (row 0, out-of-vocabulary, is zero)."""
    users = data.ratings.drop_duplicates("user_id").set_index("user_id")
    users = users.loc[data.user_vocabulary]  # row i-1 is user id i
    blocks = []
    for name in names:
        if name == "age":
            ages = users["bucketized_user_age"].to_numpy()
            levels = np.unique(ages)
            blocks.append(_one_hot(np.searchsorted(levels, ages), len(levels)))
        elif name == "gender":
            blocks.append(users["user_gender"].to_numpy(np.float32)[:, None])
        elif name == "occupation":
            labels = users["user_occupation_label"].to_numpy(np.int64)
            blocks.append(_one_hot(labels, int(labels.max()) + 1))
        elif name == "zip":
            first = users["user_zip_code"].astype(str).str[:1].to_numpy()
            codes = np.array([int(c) if c.isdigit() else 10 for c in first])
            blocks.append(_one_hot(codes, 11))
    return _with_oov_row(np.concatenate(blocks, axis=1))


def movie_year(title: str) -> int | None:
    """The release year in a MovieLens title such as ``'Heat (1995)'``."""
    found = re.findall(r"\((\d{4})\)", title)
    return int(found[-1]) if found else None


def movie_feature_table(data: MovieLens, names) -> np.ndarray:
    """``[num_movies + 1, F]`` multi-hot side features per movie id (genres, decade)."""
    movies = data.movies.drop_duplicates("movie_title").set_index("movie_title").loc[data.movie_vocabulary]
    blocks = []
    for name in names:
        if name == "genres":
            size = max(len(data.genre_names), 1 + max((max(g) for g in movies["movie_genres"] if len(g)), default=0))
            table = np.zeros((len(movies), size), dtype=np.float32)
            for row, genres in enumerate(movies["movie_genres"]):
                table[row, list(genres)] = 1.0
            blocks.append(table)
        elif name == "year":
            years = [movie_year(t) for t in data.movie_vocabulary]
            # one-hot decade: 1920s and before, 1930s, ..., 1990s
            decades = np.array([min(max((y or 1990) // 10 - 192, 0), 7) for y in years])
            blocks.append(_one_hot(decades, 8))
    return _with_oov_row(np.concatenate(blocks, axis=1))


def _with_oov_row(table: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((1, table.shape[1]), dtype=np.float32), table]).astype(np.float32)


class FeatureTower(tf.keras.Model):
    """Id -> embedding (+ side features) -> optional Dense layers -> optional L2 normalisation."""

    def __init__(
        self,
        vocabulary: np.ndarray,
        embedding_dim: int,
        side_features: np.ndarray | None = None,
        layers: tuple[int, ...] = (),
        normalize: bool = False,
        l2: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None, name="lookup")
        self.embedding = tf.keras.layers.Embedding(self.lookup.vocabulary_size(), embedding_dim, name="embedding")
        self.side = None if side_features is None else tf.constant(side_features, dtype=tf.float32)
        self.side_projection = (
            None if side_features is None else tf.keras.layers.Dense(embedding_dim, use_bias=False, name="side")
        )
        self.hidden = [tf.keras.layers.Dense(n, activation="relu", name=f"hidden_{i}") for i, n in enumerate(layers)]
        self.output_layer = tf.keras.layers.Dense(embedding_dim, name="output") if layers else None
        self.normalize = normalize
        self.l2 = float(l2)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if inputs.dtype == tf.string:
            inputs = self.lookup(inputs)
        inputs = tf.cast(inputs, tf.int64)
        x = self.embedding(inputs)
        if self.l2 > 0 and training:
            self.add_loss(self.l2 * tf.reduce_sum(tf.square(x)))  # penalise the rows this batch uses
        if self.side is not None:
            x = x + self.side_projection(tf.gather(self.side, inputs))
        for layer in self.hidden:
            x = layer(x)
        if self.output_layer is not None:
            x = self.output_layer(x)
        if self.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return x

    def embed_all(self) -> tf.Tensor:
        """Embeddings of every id, row ``i`` for integer id ``i`` (row 0: out-of-vocabulary)."""
        return self(tf.range(self.lookup.vocabulary_size(), dtype=tf.int64))


def movie_sampling_probability(data: MovieLens, train_frame: pd.DataFrame | None) -> np.ndarray:
    """``[num_movies + 1]``: each movie's share of the training interactions, i.e. how often
    in-batch sampling draws it as a negative (logQ correction).  Unseen movies get half a count."""
    frame = data.ratings if train_frame is None else train_frame
    ids = (
        frame["movie_idx"].to_numpy()
        if "movie_idx" in frame
        else lookup_ids(data.movie_vocabulary, frame["movie_title"])
    )
    counts = np.bincount(ids, minlength=data.num_movies + 1).astype(np.float64)
    counts = np.maximum(counts, 0.5)
    return (counts / counts[1:].sum()).astype(np.float32)


class ImprovedTwoTowerModel(tfrs.Model):
    """The two-tower model with the issue-4 switches applied in its loss."""

    def __init__(self, user_tower, movie_tower, task, config: ExperimentConfig, probability: np.ndarray) -> None:
        super().__init__()
        self.user_tower = user_tower
        self.movie_tower = movie_tower
        self.task = task
        self.metrics_in_training = config.metrics_in_training
        self.logq_correction = float(config.logq_correction)
        self.remove_accidental_hits = config.remove_accidental_hits
        self.probability = tf.constant(probability, dtype=tf.float32)
        self.catalogue_negatives = config.negatives == "catalogue"
        self.temperature = float(config.temperature)
        self.num_movies = len(probability) - 1

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        movie_ids = tf.cast(features["movie_title"], tf.int64)
        user_embeddings = self.user_tower(features["user_id"], training=training)
        movie_embeddings = self.movie_tower(movie_ids, training=training)
        extra = {}
        if self.logq_correction:
            # Retrieval subtracts log(p); p ** strength subtracts strength * log(p)
            extra["candidate_sampling_probability"] = tf.pow(
                tf.gather(self.probability, movie_ids), self.logq_correction
            )
        if self.remove_accidental_hits:
            extra["candidate_ids"] = movie_ids
        compute_metrics = self.metrics_in_training or not training
        if not self.catalogue_negatives and not compute_metrics:  # lean path: same loss as the task below
            log_q = extra.get("candidate_sampling_probability")
            return retrieval_loss(
                user_embeddings,
                movie_embeddings,
                tf.cast(features["user_id"], tf.int64),
                movie_ids,
                temperature=None if self.temperature == 1.0 else self.temperature,
                log_sampling_probability=None if log_q is None else tf.math.log(log_q),
                remove_accidental_hits=self.remove_accidental_hits,
            )
        if not self.catalogue_negatives:
            return self.task(user_embeddings, movie_embeddings, compute_metrics=compute_metrics, **extra)
        # full softmax: every movie of the catalogue is a negative, so no sampling bias to correct
        catalogue = self.movie_tower(tf.range(1, self.num_movies + 1, dtype=tf.int64), training=False)
        logits = tf.matmul(user_embeddings, catalogue, transpose_b=True) / self.temperature
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=movie_ids - 1, logits=logits))
        if compute_metrics:
            self.task(user_embeddings, movie_embeddings, compute_metrics=True)
        return loss


def build_improved_model(
    config: ExperimentConfig, data: MovieLens, train_frame: pd.DataFrame | None = None
) -> ImprovedTwoTowerModel:
    """Towers and task for a config with switches on (seeding and compiling are done by ``build_model``)."""
    common = {
        "layers": config.tower_layers,
        "normalize": config.normalize_embeddings,
        "l2": config.l2_regularization,
    }
    user_side = user_feature_table(data, config.user_features) if config.user_features else None
    movie_side = movie_feature_table(data, config.movie_features) if config.movie_features else None
    user_tower = FeatureTower(data.user_vocabulary, config.embedding_dim, user_side, name="user_tower", **common)
    movie_tower = FeatureTower(data.movie_vocabulary, config.embedding_dim, movie_side, name="movie_tower", **common)
    for tower in (user_tower, movie_tower):
        tower(tf.constant([0], dtype=tf.int64))
    candidates = tf.data.Dataset.from_tensor_slices(data.movie_vocabulary).batch(128).map(movie_tower)
    task = tfrs.tasks.Retrieval(
        metrics=tfrs.metrics.FactorizedTopK(candidates=candidates, ks=config.ks),
        temperature=None if config.temperature == 1.0 else config.temperature,
        remove_accidental_hits=config.remove_accidental_hits,
    )
    return ImprovedTwoTowerModel(user_tower, movie_tower, task, config, movie_sampling_probability(data, train_frame))
