"""The tower: an id (user or movie) in, one embedding vector out.

One class serves both sides and every switch of ``ExperimentConfig``:

    id -> embedding table [+ side features @ W] -> [Dense(relu) ...-> Dense] -> [L2-normalise]

With no side features, no hidden layers and no normalisation it is a bare embedding table, the
report's tower: ``(vocabulary + 1) x embedding_dim`` parameters (30,208 users and 53,280 movies
at dimension 32; the extra row is the out-of-vocabulary slot).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class Tower(tf.keras.Model):
    """Id -> embedding (+ side features) -> optional Dense layers -> optional L2 normalisation.

    Accepts raw strings (looked up with ``StringLookup``, for serving) or the integer ids the
    training pipeline already made (no lookup in the training step).  ``side_features`` is a
    ``[vocabulary + 1, F]`` table from ``data.features``; ``layers`` are the hidden ``Dense(relu)``
    sizes before a final ``Dense(embedding_dim)``; ``l2`` penalises the embedding rows a training
    batch looks up (added to the model's loss).
    """

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
