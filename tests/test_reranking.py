"""The second stage: candidates, the pipeline's score matrix, the blend and the learned re-ranker."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from twotower_utils.evaluation import reranking
from twotower_utils.evaluation.counting import topk_accuracy

# 1 user row (plus row 0, unused), 6 movies (column 0 unused)
SCORES = np.array([[0, 0, 0, 0, 0, 0, 0], [0, 6, 5, 4, 3, 2, 1]], dtype=float)
SEEN = np.zeros_like(SCORES, dtype=bool)
SEEN[1, 2] = True  # the user rated movie 2 in training


def test_candidates_are_the_top_n_without_the_seen_movies_best_first():
    assert reranking.candidates(SCORES, SEEN, 3)[1].tolist() == [1, 3, 4]
    assert reranking.candidates(SCORES, None, 6)[1].tolist() == [1, 2, 3, 4, 5, 6]
    ties = np.array([[0, 0, 0, 0], [0, 1, 1, 1]], dtype=float)
    assert reranking.candidates(ties, None, 2)[1].tolist() == [1, 2]  # ties: the lower id first
    with pytest.raises(ValueError, match="n must be from 1 to"):
        reranking.candidates(SCORES, SEEN, 7)


def test_the_pipeline_orders_the_candidates_and_keeps_them_above_the_rest():
    ids = reranking.candidates(SCORES, SEEN, 3)  # [1, 3, 4]
    scores = reranking.two_stage_scores(ids, np.array([[0, 0, 0], [0.1, 0.9, 0.5]]), num_movies=6)
    order = np.argsort(-scores[1, 1:], kind="stable") + 1
    assert order[:3].tolist() == [3, 4, 1]  # by the re-ranking scores
    assert np.isneginf(scores[1, [2, 5, 6]]).all()  # not passed on by stage one
    # a movie outside the candidates is never in the top k for k <= N
    test = pd.DataFrame({"user_idx": [1, 1], "movie_idx": [5, 3]})
    assert topk_accuracy(scores, test, [1, 3])[1] == 0.5 and topk_accuracy(scores, test, [3])[3] == 0.5


def test_a_blend_of_weight_zero_is_stage_one_alone():
    rng = np.random.default_rng(0)
    retrieval = rng.normal(size=(5, 8))
    rating = rng.uniform(1, 5, size=(5, 8))
    ids = np.tile(np.arange(1, 9), (5, 1))
    alone = reranking.two_stage_scores(ids, retrieval, 8)
    np.testing.assert_array_equal(reranking.two_stage_scores(ids, reranking.blend(retrieval, rating, 0.0), 8), alone)
    by_rating = reranking.two_stage_scores(ids, reranking.blend(retrieval, rating, 1.0), 8)
    np.testing.assert_array_equal(by_rating, reranking.two_stage_scores(ids, rating, 8))
    with pytest.raises(ValueError, match="blend weight"):
        reranking.blend(retrieval, rating, 1.5)


def test_standardise_rows():
    values = np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]])
    out = reranking.standardise(values)
    np.testing.assert_allclose(out[0], [-1.2247449, 0, 1.2247449], rtol=1e-6)
    assert not out[1].any()  # a constant row


def test_candidate_features_and_labels():
    ids = np.array([[1, 2], [3, 1]])
    matrix = np.array([[0, 0, 0, 0], [0, 2.0, 1.0, 5.0]])
    train = pd.DataFrame({"user_idx": [1, 1, 1], "movie_idx": [1, 1, 2]})
    features, names = reranking.candidate_features(ids, {"retrieval score": reranking.gather(matrix, ids)}, train)
    assert features.shape == (2, 2, len(names)) and names[0] == "retrieval score"
    np.testing.assert_allclose(features[1, :, 0], [5.0, 2.0])  # user 1's candidates 3 and 1
    np.testing.assert_allclose(features[1, :, 1], [1.0, -1.0])  # standardised within the list
    np.testing.assert_allclose(features[1, :, names.index("movie popularity, log(1 + n)")], np.log1p([0, 2]))
    with pytest.raises(ValueError, match="scores for"):
        reranking.candidate_features(ids, {"bad": matrix}, train)
    held_out = pd.DataFrame({"user_idx": [1], "movie_idx": [1]})
    assert reranking.candidate_labels(ids, held_out, num_movies=3).tolist() == [[0, 0], [0, 1]]


def test_the_listwise_loss_by_hand():
    labels = tf.constant([[1.0, 0.0, 1.0]])
    scores = tf.constant([[0.0, 1.0, 2.0]])
    log_p = scores - np.log(np.exp([0.0, 1.0, 2.0]).sum())
    expected = -(log_p[0, 0] + log_p[0, 2]) / 2
    assert float(reranking.listwise_softmax_loss(labels, scores)[0]) == pytest.approx(float(expected), rel=1e-6)


def test_the_learned_reranker_finds_the_informative_feature():
    """Positives are the candidates whose second feature is largest; the first feature is noise."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 10, 2)).astype(np.float32)
    labels = (features[:, :, 1] == features[:, :, 1].max(axis=1, keepdims=True)).astype(np.float32)
    ranker = reranking.LearnedReranker(layers=(8,), epochs=20, learning_rate=0.05, seed=0).fit(features, labels)
    test = rng.normal(size=(100, 10, 2)).astype(np.float32)
    picked = ranker.score(test).argmax(axis=1)
    assert np.mean(picked == test[:, :, 1].argmax(axis=1)) > 0.9
    with pytest.raises(ValueError, match="nothing to learn"):
        reranking.LearnedReranker().fit(features, np.zeros_like(labels))
