"""Retrieval losses written for speed and for teaching.

``tfrs.tasks.Retrieval`` builds a dense ``B x B`` identity matrix of labels and runs a
dense softmax cross-entropy over the ``B x B`` scores of a batch.  The same number is a
log-sum-exp per row minus the positive score, and a batch of 8192 MovieLens ratings has
only about 900 distinct users and 1,500 distinct movies: rows of the same user share their
log-sum-exp, and columns of the same movie are identical.  ``retrieval_loss`` with ids
computes the loss on the ``users x movies`` matrix of distinct ids, each movie weighted by
how often it appears in the batch: the same loss and gradients, a fraction of the work.
It supports TFRS's corrections (temperature, logQ sampling-bias correction, removal of
accidental hits).

Under a synchronous ``tf.distribute`` strategy (``in_synchronous_replicas``) each replica holds a share of
the batch: with ``gather_global_ids`` each scores its own rows against the global batch's movies, so several
devices train as one does.
"""

from __future__ import annotations

import tensorflow as tf

_MIN_FLOAT = tf.float32.min / 100.0  # what TFRS adds to masked logits


def retrieval_loss(
    user_embeddings: tf.Tensor,
    movie_embeddings: tf.Tensor,
    user_ids: tf.Tensor | None = None,
    movie_ids: tf.Tensor | None = None,
    temperature: float | None = None,
    log_sampling_probability: tf.Tensor | None = None,
    remove_accidental_hits: bool = False,
    positive_columns: tf.Tensor | None = None,
) -> tf.Tensor:
    """Summed in-batch softmax cross-entropy, as ``tfrs.tasks.Retrieval`` computes it.

    Row i scores user i against every movie of the batch; its own movie is the positive.
    ``temperature`` divides the scores; ``log_sampling_probability`` (per example, the log
    sampling probability of its movie) is subtracted from that movie's column (logQ
    correction); ``remove_accidental_hits`` masks the batch's other copies of a row's
    positive movie.  With ``user_ids`` and ``movie_ids`` the loss is computed on distinct
    ids only (same value, much faster); without them, on the dense ``B x B`` matrix.

    ``positive_columns`` (one per row) says which column of ``movie_embeddings`` (and ``movie_ids``,
    ``log_sampling_probability``) holds the row's own movie; by default row i's is column i.  With it the rows
    can be a share of the columns: a replica of a synchronous strategy scores its own rows against the global
    batch's movies (``gather_global_ids``).
    """
    scale = 1.0 / temperature if temperature else 1.0
    own_movies = movie_embeddings if positive_columns is None else tf.gather(movie_embeddings, positive_columns)
    positives = tf.reduce_sum(user_embeddings * own_movies, axis=1) * scale
    log_q = None
    if log_sampling_probability is not None:
        log_q = tf.cast(log_sampling_probability, positives.dtype)
        positives = positives - (log_q if positive_columns is None else tf.gather(log_q, positive_columns))
    if remove_accidental_hits and movie_ids is None:
        raise ValueError("remove_accidental_hits needs movie_ids")
    if user_ids is None or movie_ids is None:
        scores = tf.matmul(user_embeddings, movie_embeddings, transpose_b=True) * scale
        if log_q is not None:
            scores = scores - log_q[tf.newaxis, :]
        if remove_accidental_hits:
            own_ids = movie_ids if positive_columns is None else tf.gather(movie_ids, positive_columns)
            same = tf.equal(own_ids[:, tf.newaxis], movie_ids[tf.newaxis, :])
            if positive_columns is None:
                itself = tf.eye(tf.shape(scores)[0], dtype=tf.bool)
            else:
                itself = tf.cast(tf.one_hot(positive_columns, tf.shape(scores)[1]), tf.bool)
            accidental = tf.logical_and(same, tf.logical_not(itself))
            scores = scores + tf.cast(accidental, scores.dtype) * _MIN_FLOAT
        return tf.reduce_sum(tf.reduce_logsumexp(scores, axis=1) - positives)

    users, user_index = tf.unique(user_ids)
    movies, movie_index = tf.unique(movie_ids)
    user_rows = _first_rows(user_index, tf.size(users))
    movie_rows = _first_rows(movie_index, tf.size(movies))
    counts = tf.math.unsorted_segment_sum(tf.ones_like(movie_index, positives.dtype), movie_index, tf.size(movies))
    scores = tf.matmul(tf.gather(user_embeddings, user_rows), tf.gather(movie_embeddings, movie_rows), transpose_b=True)
    scores = scores * scale
    if log_q is not None:
        scores = scores - tf.gather(log_q, movie_rows)[tf.newaxis, :]
    # log sum_j exp(s_ij) over the batch's columns = log sum_k count_k exp(s_uk) over distinct movies
    user_lse = tf.reduce_logsumexp(scores + tf.math.log(counts)[tf.newaxis, :], axis=1)
    row_lse = tf.gather(user_lse, user_index)
    if remove_accidental_hits:
        # drop the (count - 1) other copies of the row's own movie from its normaliser
        row_movie = movie_index if positive_columns is None else tf.gather(movie_index, positive_columns)
        own = tf.gather_nd(scores, tf.stack([user_index, row_movie], axis=1))
        extra_copies = tf.gather(counts, row_movie) - 1.0
        share = extra_copies * tf.exp(own - row_lse)
        row_lse = row_lse + tf.math.log1p(-tf.minimum(share, 1.0 - 1e-7))
    return tf.reduce_sum(row_lse - positives)


def in_synchronous_replicas() -> bool:
    """Whether this code runs in one of several replicas that train in sync (``MirroredStrategy``,
    ``MultiWorkerMirroredStrategy`` over more than one device in all); ``False`` on one device and on a
    parameter-server worker, whose steps are independent of each other."""
    context = tf.distribute.get_replica_context()
    return context is not None and context.num_replicas_in_sync > 1


def gather_global_ids(ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Every replica's ``ids`` stacked in replica order (the global batch's), and the positions of this
    replica's own rows in it.

    A synchronous strategy gives each replica ``1/R`` of the batch; with only its own movies as negatives its
    loss would not be the one-device loss.  So each replica gathers the global batch's movie *ids*, looks their
    embeddings up itself (the variables are mirrored, so every replica holds the same tables) and scores its
    own rows against all of them (``retrieval_loss(..., positive_columns=)``).  Its gradient then reaches every
    movie of the global batch through its own lookup, the optimizer sums the replicas' gradients (tf-keras's
    ``all_reduce_sum_gradients``) and Keras sums their losses: the one-device loss and gradient, while each
    replica does ``1/R`` of the ``U x M`` work.  Only integers cross replicas, in the forward pass: no
    collective inside the backward pass, where each replica's thread could issue them in a different order.

    The gathering is an all-reduce: each replica puts its ids at its offset in a zero vector of the global
    batch's size and the vectors are summed (exact for integers).  ``all_gather`` itself goes through
    ``merge_call``, which fails under ``MultiWorkerMirroredStrategy`` with one device per worker ("destinations
    can not be empty", TF 2.20); ``all_reduce`` works under both.  The last batch of an epoch can be split
    unevenly, so the replicas first share their row counts.
    """
    context = tf.distribute.get_replica_context()
    replicas, replica = context.num_replicas_in_sync, context.replica_id_in_sync_group
    rows = tf.shape(ids, out_type=tf.int64)[0]
    sizes = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.one_hot(replica, replicas, dtype=tf.int64) * rows)
    offset, total = tf.reduce_sum(sizes[:replica]), tf.reduce_sum(sizes)
    padded = tf.concat([tf.zeros([offset], ids.dtype), ids, tf.zeros([total - offset - rows], ids.dtype)], 0)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, padded), offset + tf.range(rows)


def _first_rows(index: tf.Tensor, num_segments: tf.Tensor) -> tf.Tensor:
    """For each distinct id (segment), the first batch row that holds it."""
    return tf.math.unsorted_segment_min(tf.range(tf.size(index)), index, num_segments)


def in_batch_softmax_loss(user_embeddings: tf.Tensor, movie_embeddings: tf.Tensor) -> tf.Tensor:
    """The textbook formula: ``-sum_i log softmax(S)_ii`` with ``S = U M^T`` (for checking)."""
    logits = tf.matmul(user_embeddings, movie_embeddings, transpose_b=True)
    return -tf.reduce_sum(tf.linalg.diag_part(tf.nn.log_softmax(logits, axis=1)))


def sampled_sigmoid_loss(user_embeddings: tf.Tensor, movie_embeddings: tf.Tensor) -> tf.Tensor:
    """The report's formula: logistic loss with the batch's other movies as negatives, summed."""
    logits = tf.matmul(user_embeddings, movie_embeddings, transpose_b=True)
    labels = tf.eye(tf.shape(logits)[0])
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
