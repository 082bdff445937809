"""Ranking metrics, coverage and popularity bias on small hand-made cases."""

import numpy as np
import pytest

from tests.conftest import HAND_SCORES, HAND_TEST, HAND_TRAIN, pairs_frame
from twotower_utils.evaluation.counting import seen_matrix
from twotower_utils.evaluation.metrics import (
    coverage,
    evaluate_scores,
    graded_metrics,
    popularity_bias,
    ranking_metrics,
    top_k_lists,
)


def test_ranking_metrics_with_ties_and_a_user_without_hits():
    seen = seen_matrix(HAND_TRAIN, 2, 5)
    lists = top_k_lists(HAND_SCORES, 2, seen, np.array([1, 2]))
    assert lists.tolist() == [[2, 3], [1, 2]]  # seen movies dropped; ties broken by the lower id
    result = ranking_metrics(HAND_SCORES, HAND_TEST, [2], exclude=seen)
    # user 1: list [2, 3], test {3, 5}: 1 hit at rank 2.  user 2: list [1, 2], test {3}: no hit
    assert result["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert result["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    ndcg_user1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert result["ndcg@2"] == pytest.approx(ndcg_user1 / 2)
    assert result["map@2"] == pytest.approx((0.5 / 2 + 0) / 2)
    # full filtered ranking: user 1 [2, 3, 4, 5] -> first hit at 2; user 2 [1, 2, 3, 5] -> at 3
    assert result["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_coverage_and_popularity_bias():
    lists = np.array([[1, 2], [1, 3]])
    assert coverage(lists, 5) == pytest.approx(3 / 5)
    train = pairs_frame([(1, 1), (2, 1), (1, 2)])
    bias = popularity_bias(lists, train, 5, head_share=0.2)
    assert bias["mean_training_interactions_of_recommended"] == pytest.approx((2 + 1 + 2 + 0) / 4)
    assert bias["share_of_slots_from_top_10pct_movies"] == pytest.approx(0.5)


def test_evaluate_scores_bundle():
    result = evaluate_scores(HAND_SCORES, HAND_TRAIN, HAND_TEST, 2, 5, ks=(1, 2))
    assert set(result) == {"hit_rate", "hit_rate_filtered", "ranking", "coverage@10", "popularity@10"}
    assert result["hit_rate_filtered"][2] == pytest.approx(2 / 3)


def test_graded_metrics_by_hand():
    """User 1's filtered top-2 is [2, 3] (movie 1 seen): it hits movie 3 (rated 4) and misses movie 5 (rated 5);
    user 2's [1, 2] hits nothing."""
    seen = seen_matrix(HAND_TRAIN, 2, 5)
    test = HAND_TEST.assign(user_rating=[4.0, 5.0, 2.0])
    result = graded_metrics(HAND_SCORES, test, k=2, exclude=seen)
    user_1 = (4 / np.log2(3)) / (5 + 4 / np.log2(3))
    assert result["graded ndcg@2"] == pytest.approx(user_1 / 2)
    assert result["mean rating of hits@2"] == 4.0
    with pytest.raises(ValueError, match="user_rating"):
        graded_metrics(HAND_SCORES, HAND_TEST, k=2)
