"""The one counting core: hand-made towers and score matrices, ties, exclusion, FactorizedTopK."""

import numpy as np
import pytest

from tests.conftest import HAND_SCORES, HAND_TEST, HAND_TRAIN, pairs_frame
from twotower_utils.evaluation.counting import (
    candidates_beating,
    factorized_topk_reference,
    filtered_topk_accuracy,
    hit_rates_from_counts,
    metric_name,
    seen_matrix,
    topk_accuracy,
)
from twotower_utils.evaluation.metrics import model_scores
from twotower_utils.models.two_tower import build_model
from twotower_utils.training import train


class FixedTower:
    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    def embed_all(self):
        import tensorflow as tf

        return tf.constant(self.table)


class FixedModel:
    """A 'model' with hand-made embedding tables (row 0 = out-of-vocabulary)."""

    def __init__(self, users, movies):
        self.user_tower, self.movie_tower = FixedTower(users), FixedTower(movies)


@pytest.fixture
def hand_model():
    # 1-d embeddings: the score of user 1 for movie m is the movie's value
    users = [[0.0], [1.0], [-1.0]]
    movies = [[0.0], [3.0], [1.0], [2.0], [2.0]]  # movies 1..4 score 3, 1, 2, 2 for user 1
    return FixedModel(users, movies)


def test_counts_and_ties_on_a_hand_made_case(hand_model):
    counts = candidates_beating(hand_model, pairs_frame([(1, 1), (1, 3), (1, 4), (1, 2), (2, 2)]))
    # movie 3 ties with movie 4: neither beats the other (ties count as hits, as in FactorizedTopK)
    assert counts.tolist() == [0, 1, 1, 3, 0]
    rates = hit_rates_from_counts(counts, (1, 2, 4))
    assert rates == {1: 0.4, 2: 0.8, 4: 1.0}


def test_excluding_seen_movies_never_excludes_the_true_one(hand_model):
    seen = seen_matrix(pairs_frame([(1, 1), (1, 2)]), num_users=2, num_movies=4)
    # user 1 saw movies 1 and 2; for a test on movie 3, movie 1 no longer beats it
    assert candidates_beating(hand_model, pairs_frame([(1, 3), (1, 2)]), exclude=seen).tolist() == [0, 2]


def test_a_user_with_no_hits(hand_model):
    assert topk_accuracy(hand_model, pairs_frame([(1, 2)]), ks=(1, 2, 3)) == {1: 0.0, 2: 0.0, 3: 0.0}


def test_empty_frame_gives_nan(hand_model):
    rates = topk_accuracy(hand_model, pairs_frame([]).astype(int), ks=(1,))
    assert np.isnan(rates[1])


def test_fast_evaluator_equals_factorized_topk(tiny_data, tiny_split, tiny_config):
    model = train(tiny_config, tiny_data, tiny_split, verbose=0, curves=False).model
    for frame in (tiny_split.test, tiny_split.train):
        fast = topk_accuracy(model, frame, tiny_config.ks, batch_size=13, tfrs_compatible=True)
        reference = factorized_topk_reference(model, frame, batch_size=13)
        assert set(reference) == set(tiny_config.ks)
        for k in tiny_config.ks:
            assert fast[k] == pytest.approx(reference[k], abs=1e-6)
        # without TFRS's self-rounding artefact a movie can only rank higher, never lower
        exact = candidates_beating(model, frame, batch_size=13)
        compatible = candidates_beating(model, frame, batch_size=13, tfrs_compatible=True)
        assert np.all((compatible - exact >= 0) & (compatible - exact <= 1))
    assert 0 < fast[10] <= 1


def test_batch_size_does_not_change_the_result(tiny_data, tiny_split, tiny_config):
    model = build_model(tiny_config, tiny_data)
    one = candidates_beating(model, tiny_split.train, batch_size=7)
    two = candidates_beating(model, tiny_split.train, batch_size=1000)
    np.testing.assert_array_equal(one, two)


def test_metric_names_match_tfrs():
    assert metric_name(5) == "factorized_top_k/top_5_categorical_accuracy"
    assert metric_name(5, "val_") == "val_factorized_top_k/top_5_categorical_accuracy"


def test_a_score_matrix_goes_through_the_same_core():
    counts = candidates_beating(HAND_SCORES, HAND_TEST)
    assert list(counts) == [2, 4, 0]  # ties never beat: user 2's movie 3 is tied first
    seen = seen_matrix(HAND_TRAIN, 2, 5)
    assert list(candidates_beating(HAND_SCORES, HAND_TEST, exclude=seen)) == [1, 3, 0]
    assert topk_accuracy(HAND_SCORES, HAND_TEST, [1, 2, 5]) == {1: 1 / 3, 2: 1 / 3, 5: 1.0}
    assert topk_accuracy(HAND_SCORES, HAND_TEST, [2], exclude=seen) == {2: 2 / 3}
    assert filtered_topk_accuracy(HAND_SCORES, HAND_TRAIN, HAND_TEST, [2]) == {2: 2 / 3}


def test_a_models_score_matrix_agrees_with_its_towers(tiny_data, tiny_split, tiny_config):
    from twotower_utils.models.two_tower import build_model

    model = build_model(tiny_config, tiny_data)
    scores = model_scores(model)
    seen = seen_matrix(tiny_split.train, tiny_data.num_users, tiny_data.num_movies)
    expected = candidates_beating(model, tiny_split.test, exclude=seen)
    got = candidates_beating(scores, tiny_split.test, exclude=seen)
    assert np.abs(expected - got).max() <= 1  # one rounding tie at most
    assert np.mean(expected == got) > 0.95


def test_the_same_core_for_towers_and_their_score_matrix(hand_model):
    test = pairs_frame([(1, 1), (1, 3), (1, 4), (1, 2), (2, 2)])
    scores = hand_model.user_tower.table @ hand_model.movie_tower.table.T
    seen = seen_matrix(pairs_frame([(1, 3)]), 2, 4)
    for exclude in (None, seen):
        np.testing.assert_array_equal(
            candidates_beating(hand_model, test, exclude=exclude), candidates_beating(scores, test, exclude=exclude)
        )
    assert filtered_topk_accuracy(hand_model, pairs_frame([(1, 3)]), test, [1, 2]) == topk_accuracy(
        scores, test, [1, 2], exclude=seen
    )


def test_something_that_cannot_score_is_one_clear_error():
    with pytest.raises(TypeError, match="pass a two-tower model or a score matrix"):
        topk_accuracy([[1.0]], pairs_frame([(1, 1)]))


def test_sparse_seen_movies_and_capped_counts_give_the_dense_numbers(hand_model):
    from twotower_utils.evaluation.counting import SeenMovies

    test = pairs_frame([(1, 1), (1, 3), (1, 4), (1, 2), (2, 2)])
    train = pairs_frame([(1, 1), (1, 3), (2, 4)])
    dense, sparse = seen_matrix(train, 2, 4), SeenMovies.from_frame(train, 2, 4)
    for tfrs_compatible in (False, True):
        np.testing.assert_array_equal(
            candidates_beating(hand_model, test, exclude=dense, tfrs_compatible=tfrs_compatible),
            candidates_beating(hand_model, test, exclude=sparse, tfrs_compatible=tfrs_compatible),
        )
    full = candidates_beating(HAND_SCORES, HAND_TEST)
    capped = candidates_beating(HAND_SCORES, HAND_TEST, at_most=2)
    assert list(full) == [2, 4, 0] and list(np.minimum(capped, 2)) == [2, 2, 0]  # exact below 2, else >= 2
    assert np.all(capped[full >= 2] >= 2)
    with pytest.raises(ValueError, match="exclude covers"):
        candidates_beating(HAND_SCORES, HAND_TEST, exclude=SeenMovies.from_frame(HAND_TRAIN, 2, 4))
