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
the batch: ``gather_global_batch`` and ``replica_share`` let the replicas compute this same loss on the
global batch, so several devices train as one does.
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
) -> tf.Tensor:
    """Summed in-batch softmax cross-entropy, as ``tfrs.tasks.Retrieval`` computes it.

    Row i scores user i against every movie of the batch; its own movie is the positive.
    ``temperature`` divides the scores; ``log_sampling_probability`` (per example, the log
    sampling probability of its movie) is subtracted from that movie's column (logQ
    correction); ``remove_accidental_hits`` masks the batch's other copies of a row's
    positive movie.  With ``user_ids`` and ``movie_ids`` the loss is computed on distinct
    ids only (same value, much faster); without them, on the dense ``B x B`` matrix.
    """
    scale = 1.0 / temperature if temperature else 1.0
    positives = tf.reduce_sum(user_embeddings * movie_embeddings, axis=1) * scale
    log_q = None
    if log_sampling_probability is not None:
        log_q = tf.cast(log_sampling_probability, positives.dtype)
        positives = positives - log_q
    if remove_accidental_hits and movie_ids is None:
        raise ValueError("remove_accidental_hits needs movie_ids")
    if user_ids is None or movie_ids is None:
        scores = tf.matmul(user_embeddings, movie_embeddings, transpose_b=True) * scale
        if log_q is not None:
            scores = scores - log_q[tf.newaxis, :]
        if remove_accidental_hits:
            same = tf.equal(movie_ids[:, tf.newaxis], movie_ids[tf.newaxis, :])
            accidental = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(scores)[0], dtype=tf.bool)))
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
        own = tf.gather_nd(scores, tf.stack([user_index, movie_index], axis=1))
        extra_copies = tf.gather(counts, movie_index) - 1.0
        share = extra_copies * tf.exp(own - row_lse)
        row_lse = row_lse + tf.math.log1p(-tf.minimum(share, 1.0 - 1e-7))
    return tf.reduce_sum(row_lse - positives)


def in_synchronous_replicas() -> bool:
    """Whether this code runs in one of several replicas that train in sync (``MirroredStrategy``,
    ``MultiWorkerMirroredStrategy`` over more than one device in all); ``False`` on one device and on a
    parameter-server worker, whose steps are independent of each other."""
    context = tf.distribute.get_replica_context()
    return context is not None and context.num_replicas_in_sync > 1


def gather_global_batch(**tensors: tf.Tensor) -> dict[str, tf.Tensor]:
    """Every replica's rows of each tensor, stacked in replica order: the global batch.

    A synchronous strategy gives each replica ``1/R`` of the batch; with only its own movies as negatives
    its loss would not be the one-device loss.  So each replica gathers the whole batch and computes the
    whole batch's loss ``L``.  The other replicas' rows are constants here (``stop_gradient``) and this
    replica's own rows stay the live tensors, so its gradient is ``dL/d(its own rows)``; the optimizer sums
    the replicas' gradients (tf-keras's ``all_reduce_sum_gradients``), which adds up to ``dL/d(weights)``,
    the one-device gradient.  Only the forward pass communicates: a collective inside the backward pass (as
    ``all_gather``'s own gradient has) can be issued in a different order by each replica's thread, which
    aborts the collectives.  Integer tensors (ids) are gathered as they are.

    The gathering is an all-reduce: each replica puts its rows at its offset in a zero tensor of the global
    batch's size and the replicas' tensors are summed (exact: every entry is one replica's value plus zeros).
    ``all_gather`` itself goes through ``merge_call``, which fails under ``MultiWorkerMirroredStrategy`` with
    one device per worker ("destinations can not be empty", TF 2.20); ``all_reduce`` works under both.
    """
    context = tf.distribute.get_replica_context()
    replicas, replica = context.num_replicas_in_sync, context.replica_id_in_sync_group
    rows = tf.shape(next(iter(tensors.values())), out_type=tf.int64)[0]
    # the last batch of an epoch can be split unevenly: every replica's row count, then this replica's offset
    sizes = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.one_hot(replica, replicas, dtype=tf.int64) * rows)
    offset, total = tf.reduce_sum(sizes[:replica]), tf.reduce_sum(sizes)
    gathered = {}
    for name, tensor in tensors.items():
        padded = tf.concat(
            [_zero_rows(tensor, offset), tf.stop_gradient(tensor), _zero_rows(tensor, total - offset - rows)], 0
        )
        # one all-reduce per tensor: a batched one packs tensors of different dtypes together and fails under MWMS
        everyone = context.all_reduce(tf.distribute.ReduceOp.SUM, padded)
        if tensor.dtype.is_floating:  # this replica's rows: the live tensor, so its gradient flows
            everyone = tf.concat([everyone[:offset], tensor, everyone[offset + rows :]], axis=0)
        gathered[name] = everyone
    return gathered


def _zero_rows(tensor: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """``count`` rows of zeros shaped like ``tensor``'s rows."""
    return tf.zeros(tf.concat([[count], tf.shape(tensor, out_type=tf.int64)[1:]], 0), tensor.dtype)


@tf.custom_gradient
def replica_share(loss: tf.Tensor):
    """``loss / R`` with the gradient of ``loss``: each of the ``R`` replicas computes the whole batch's loss
    (``gather_global_batch``); Keras sums the replicas' reported losses (``reduce_per_replica``'s "sum"),
    which gives back the one-device loss, while each replica's gradient stays that of the whole loss."""
    replicas = tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, loss.dtype)
    return loss / replicas, lambda upstream: upstream


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
