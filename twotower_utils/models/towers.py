"""The tower: an id (user or movie) in, one embedding vector out.

One class serves both sides and every tower switch of ``specs.RetrievalSpec``:

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


class SequenceTower(tf.keras.Model):
    """The user tower that reads the user's history: ``{"user_id", "history"}`` in, one vector out.

    ``history`` is ``[B, L]`` movie ids, latest last, left-padded with 0 (``data.history``).  Its movies are
    embedded with the movie tower's own table (``item_embedding``, shared as in SASRec), then summarised:

    * ``mean``: the mean of the history's embeddings;
    * ``attention``: a learned weighting, ``softmax_i(v^T tanh(W (e_i + p_i)))`` with a position embedding
      ``p`` counted from the latest movie (so recency can matter);
    * ``gru``: the last state of a GRU run over the history in time order;
    * ``sasrec``: ``blocks`` causal self-attention blocks (one head, positions, pre-layer-norm -- or
      post-layer-norm with ``norm="post"`` -- residuals, a two-layer feed-forward), read at the latest position.

    With ``use_user_id`` the user's own embedding is added to the summary; a final
    ``Dense(embedding_dim)`` maps it to the movie tower's space.  An empty history gives the output layer's bias
    (plus the id embedding), i.e. the same vector for every user without history.
    """

    KINDS = ("mean", "attention", "gru", "sasrec")

    def __init__(
        self,
        kind: str,
        item_embedding: tf.keras.layers.Embedding,
        embedding_dim: int,
        length: int,
        num_users: int,
        use_user_id: bool = False,
        blocks: int = 1,
        dropout: float = 0.0,
        normalize: bool = False,
        name: str | None = None,
        norm: str = "pre",
    ) -> None:
        super().__init__(name=name)
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.norm = norm  # sasrec: layer norm before each sub-layer (and at the end), or after each residual
        self.kind = kind
        self.length = int(length)
        self.item_embedding = item_embedding
        self.num_users = int(num_users)  # ids 1..num_users (0: out-of-vocabulary), for the query table
        self.user_embedding = tf.keras.layers.Embedding(num_users + 1, embedding_dim) if use_user_id else None
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.positions = None
        if kind in ("attention", "sasrec"):
            self.positions = tf.keras.layers.Embedding(self.length, embedding_dim, name="positions")
        if kind == "attention":
            self.attention_hidden = tf.keras.layers.Dense(embedding_dim, activation="tanh", name="attention_hidden")
            self.attention_score = tf.keras.layers.Dense(1, use_bias=False, name="attention_score")
        if kind == "gru":
            self.gru = tf.keras.layers.GRU(embedding_dim, name="gru")
        if kind == "sasrec":
            self.blocks = [
                {
                    "norm": tf.keras.layers.LayerNormalization(epsilon=1e-6),
                    "attention": tf.keras.layers.MultiHeadAttention(1, embedding_dim, dropout=dropout),
                    "ffn_norm": tf.keras.layers.LayerNormalization(epsilon=1e-6),
                    "ffn": [
                        tf.keras.layers.Dense(embedding_dim, activation="relu"),
                        tf.keras.layers.Dense(embedding_dim),
                    ],
                }
                for _ in range(int(blocks))
            ]
            self.final_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6)
        self.output_layer = tf.keras.layers.Dense(embedding_dim, name="output")
        self.normalize = normalize

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        history = tf.cast(inputs["history"], tf.int64)[:, -self.length :]
        mask = history > 0
        x = self.dropout(self.item_embedding(history), training=training)
        weights = tf.cast(mask, x.dtype)[:, :, tf.newaxis]
        if self.positions is not None:  # position 0 is the latest movie
            recency = self.positions(tf.range(tf.shape(history)[1] - 1, -1, -1))
        if self.kind == "mean":
            summary = tf.reduce_sum(x * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        elif self.kind == "attention":
            scores = self.attention_score(self.attention_hidden(x + recency))
            scores = tf.where(mask[:, :, tf.newaxis], scores, tf.fill(tf.shape(scores), -1e9))
            attention = tf.nn.softmax(scores, axis=1) * weights  # an empty history: all weights 0
            summary = tf.reduce_sum(attention * x, axis=1)
        elif self.kind == "gru":
            summary = self.gru(x, mask=mask, training=training)
            summary = summary * tf.cast(tf.reduce_any(mask, axis=1, keepdims=True), summary.dtype)
        else:
            summary = self._self_attention(x * tf.sqrt(tf.cast(tf.shape(x)[-1], x.dtype)) + recency, mask, training)
        if self.user_embedding is not None:
            summary = summary + self.user_embedding(tf.cast(inputs["user_id"], tf.int64))
        output = self.output_layer(summary)
        return tf.math.l2_normalize(output, axis=-1) if self.normalize else output

    def encode_positions(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """``[B, L, embedding_dim]``: the tower's output at *every* position of the history, each read causally
        (position t sees the movies up to and including t, never a later one) -- SASRec's and the GRU's own
        training, where every position predicts the next movie (``models.sequential``).

        The same weights as ``call``, which is this method's last position: a tower trained on all positions
        serves the two-tower's query path (``TwoTowerModel.query_table``) unchanged.  Positions holding padding
        (id 0) give the output layer's bias (plus the user-id embedding); no real position reads them.  Only
        the ``gru`` and ``sasrec`` kinds read a history causally position by position."""
        if self.kind not in ("gru", "sasrec"):
            raise ValueError(f"encode_positions is for the 'gru' and 'sasrec' towers, not {self.kind!r}")
        history = tf.cast(inputs["history"], tf.int64)[:, -self.length :]
        mask = history > 0
        padding = tf.cast(mask, tf.float32)[:, :, tf.newaxis]
        x = self.dropout(self.item_embedding(history), training=training)
        if self.kind == "gru":
            states = self._gru_states(x, mask, training)
        else:
            recency = self.positions(tf.range(tf.shape(history)[1] - 1, -1, -1))
            x = x * tf.sqrt(tf.cast(tf.shape(x)[-1], x.dtype)) + recency
            states = self._self_attention(x, mask, training, all_positions=True)
        states = states * padding
        if self.user_embedding is not None:
            states = states + self.user_embedding(tf.cast(inputs["user_id"], tf.int64))[:, tf.newaxis]
        output = self.output_layer(states)
        return tf.math.l2_normalize(output, axis=-1) if self.normalize else output

    def _gru_states(self, x: tf.Tensor, mask: tf.Tensor, training: bool | None) -> tf.Tensor:
        """The GRU's state after every position (the ``gru`` layer's own cell and weights); a padded step keeps
        the state it had (zero before the first real movie)."""
        cell = self.gru.cell

        def step(inputs, states):
            return cell(inputs, states, training=training)

        initial = [tf.zeros([tf.shape(x)[0], cell.units], x.dtype)]
        _, outputs, _ = tf.keras.backend.rnn(step, x, initial, mask=mask)
        return tf.ensure_shape(outputs, [None, None, cell.units])  # a traced loop loses the static shape

    def _self_attention(
        self, x: tf.Tensor, mask: tf.Tensor, training: bool | None, all_positions: bool = False
    ) -> tf.Tensor:
        """SASRec's encoder read at the latest position: each position attends to itself and the earlier real
        movies (causal); the last block only computes the latest position's query.  With ``all_positions``
        every block computes every position and ``[B, L, d]`` comes back (``encode_positions``)."""
        steps = tf.shape(x)[1]
        causal = tf.linalg.band_part(tf.ones((steps, steps), tf.bool), -1, 0)
        allowed = tf.logical_and(causal[tf.newaxis], mask[:, tf.newaxis, :])
        allowed = tf.logical_or(allowed, tf.eye(steps, dtype=tf.bool)[tf.newaxis])  # never a row with no key
        padding = tf.cast(mask, x.dtype)[:, :, tf.newaxis]
        x = self.dropout(x, training=training) * padding
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1 and not all_positions
            query = x[:, -1:] if last else x
            query_mask = allowed[:, -1:] if last else allowed
            if self.norm == "post":  # x + sublayer(x), then the norm (the original Transformer's order)
                attended = block["attention"](query, x, attention_mask=query_mask, training=training)
                h = block["norm"](query + attended)
                hidden = block["ffn"][1](block["ffn"][0](h))
                h = block["ffn_norm"](h + self.dropout(hidden, training=training))
                x = h if last else h * padding
                continue
            normed = block["norm"](query)
            keys = block["norm"](x)
            attended = block["attention"](normed, keys, attention_mask=query_mask, training=training)
            h = query + attended
            hidden = block["ffn"][1](block["ffn"][0](block["ffn_norm"](h)))
            h = h + self.dropout(hidden, training=training)
            x = h if last else h * padding
        if self.norm == "post":  # already normalised by the last block
            return x * padding if all_positions else x[:, -1] * tf.cast(tf.reduce_any(mask, axis=1)[:, None], x.dtype)
        if all_positions:  # final_norm was built on [B, d] (call's latest position): positions as rows
            normed = tf.reshape(self.final_norm(tf.reshape(x, [-1, x.shape[-1]])), tf.shape(x))
            return tf.ensure_shape(normed, x.shape)
        has_history = tf.cast(tf.reduce_any(mask, axis=1, keepdims=True), x.dtype)
        return self.final_norm(x[:, -1]) * has_history

    def embed(self, histories: np.ndarray, user_ids: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
        """``[len(histories), embedding_dim]`` user vectors from histories (``data.history``), in batches."""
        histories = np.asarray(histories, dtype=np.int64)
        user_ids = np.zeros(len(histories), np.int64) if user_ids is None else np.asarray(user_ids, np.int64)
        parts = [
            self({"user_id": user_ids[i : i + batch_size], "history": histories[i : i + batch_size]}).numpy()
            for i in range(0, len(histories), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.output_layer.units), np.float32)
