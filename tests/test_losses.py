import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.models.losses import in_batch_softmax_loss, retrieval_loss, sampled_sigmoid_loss


@pytest.fixture
def batch():
    """12 examples with repeated users and movies, as in a real batch."""
    rng = np.random.default_rng(0)
    user_ids = tf.constant([1, 2, 1, 3, 4, 2, 5, 1, 6, 7, 3, 8], tf.int64)
    movie_ids = tf.constant([3, 1, 3, 2, 5, 1, 7, 8, 3, 9, 10, 11], tf.int64)
    user_table = rng.normal(size=(9, 4)).astype(np.float32)
    movie_table = rng.normal(size=(12, 4)).astype(np.float32)
    log_q_table = np.log(rng.uniform(0.01, 0.2, size=12)).astype(np.float32)
    users = tf.gather(user_table, user_ids)
    movies = tf.gather(movie_table, movie_ids)
    return users, movies, user_ids, movie_ids, tf.gather(log_q_table, movie_ids)


def _tfrs(users, movies, movie_ids, temperature=None, log_q=None, remove_hits=False):
    task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=remove_hits)
    return task(
        users,
        movies,
        compute_metrics=False,
        candidate_sampling_probability=None if log_q is None else tf.exp(log_q),
        candidate_ids=movie_ids if remove_hits else None,
    )


def test_plain_loss_equals_tfrs_retrieval_and_the_textbook_formula(batch):
    users, movies, user_ids, movie_ids, _ = batch
    tfrs_value = float(_tfrs(users, movies, movie_ids))
    assert float(retrieval_loss(users, movies)) == pytest.approx(tfrs_value, rel=1e-5)
    assert float(retrieval_loss(users, movies, user_ids, movie_ids)) == pytest.approx(tfrs_value, rel=1e-5)
    assert float(in_batch_softmax_loss(users, movies)) == pytest.approx(tfrs_value, rel=1e-5)
    assert float(sampled_sigmoid_loss(users, movies)) != pytest.approx(tfrs_value, rel=1e-2)


@pytest.mark.parametrize("deduplicate", [False, True])
@pytest.mark.parametrize("use_temperature, use_log_q, remove_hits", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])
def test_corrections_equal_tfrs_retrieval(batch, deduplicate, use_temperature, use_log_q, remove_hits):
    users, movies, user_ids, movie_ids, log_q = batch
    temperature = 0.3 if use_temperature else None
    log_q = log_q if use_log_q else None
    expected = _tfrs(users, movies, movie_ids, temperature, log_q, bool(remove_hits))
    ours = retrieval_loss(
        users,
        movies,
        user_ids if deduplicate else None,
        movie_ids,
        temperature=temperature,
        log_sampling_probability=log_q,
        remove_accidental_hits=bool(remove_hits),
    )
    assert float(ours) == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.parametrize("remove_hits", [False, True])
def test_gradients_for_the_embedding_tables_equal_tfrs_retrieval(batch, remove_hits):
    """Gradients w.r.t. the tables the rows come from (duplicate rows share one table row)."""
    _, _, user_ids, movie_ids, log_q = batch
    rng = np.random.default_rng(1)
    user_table = tf.Variable(rng.normal(size=(9, 4)).astype(np.float32))
    movie_table = tf.Variable(rng.normal(size=(12, 4)).astype(np.float32))
    tables = [user_table, movie_table]
    with tf.GradientTape(persistent=True) as tape:
        users, movies = tf.gather(user_table, user_ids), tf.gather(movie_table, movie_ids)
        dense = retrieval_loss(
            users, movies, None, movie_ids, log_sampling_probability=log_q, remove_accidental_hits=remove_hits
        )
        deduplicated = retrieval_loss(
            users, movies, user_ids, movie_ids, log_sampling_probability=log_q, remove_accidental_hits=remove_hits
        )
        theirs = _tfrs(users, movies, movie_ids, log_q=log_q, remove_hits=remove_hits)
    expected = [tf.convert_to_tensor(g) for g in tape.gradient(theirs, tables)]
    for ours in (dense, deduplicated):
        for a, b in zip(tape.gradient(ours, tables), expected, strict=True):
            np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_accidental_hits_need_movie_ids(batch):
    users, movies, *_ = batch
    with pytest.raises(ValueError, match="movie_ids"):
        retrieval_loss(users, movies, remove_accidental_hits=True)


def test_losses_on_a_hand_made_batch():
    users = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    movies = tf.constant([[2.0, 0.0], [0.0, 1.0]])
    # logits [[2, 0], [0, 1]]
    softmax = -(np.log(np.exp(2) / (np.exp(2) + 1)) + np.log(np.exp(1) / (1 + np.exp(1))))
    assert float(retrieval_loss(users, movies)) == pytest.approx(softmax, rel=1e-6)
    assert float(in_batch_softmax_loss(users, movies)) == pytest.approx(softmax, rel=1e-6)

    def sig(x):
        return 1 / (1 + np.exp(-x))

    sigmoid = -(np.log(sig(2)) + np.log(1 - sig(0)) + np.log(1 - sig(0)) + np.log(sig(1)))
    assert float(sampled_sigmoid_loss(users, movies)) == pytest.approx(sigmoid, rel=1e-6)


@pytest.mark.parametrize("deduplicate", [True, False])
@pytest.mark.parametrize("remove_hits", [True, False])
def test_rows_against_all_columns_add_up_to_the_whole_batch(batch, deduplicate, remove_hits):
    """What a replica of a synchronous strategy computes: its own rows against every movie of the batch
    (``positive_columns``); the shares of two replicas add up to the one-device loss."""
    users, movies, user_ids, movie_ids, log_q = batch
    options = {"temperature": 0.5, "log_sampling_probability": log_q, "remove_accidental_hits": remove_hits}
    ids = (user_ids, movie_ids) if deduplicate else (None, movie_ids)
    whole = retrieval_loss(users, movies, *ids, **options)
    half = len(movie_ids) // 2
    shares = [
        retrieval_loss(
            users[rows],
            movies,
            None if ids[0] is None else user_ids[rows],
            movie_ids,
            **options,
            positive_columns=tf.range(rows.start, rows.stop),
        )  # fmt: skip
        for rows in (slice(0, half), slice(half, len(movie_ids)))
    ]
    assert float(sum(shares)) == pytest.approx(float(whole), rel=1e-5)
