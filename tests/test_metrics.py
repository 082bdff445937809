"""Metrics and baselines on small hand-made cases (issue 4)."""

import numpy as np
import pandas as pd
import pytest

from twotower_utils import baselines
from twotower_utils.evaluation import candidates_beating, seen_matrix
from twotower_utils.metrics import (
    counts_beating_from_scores,
    coverage,
    evaluate_scores,
    hit_rates_from_scores,
    model_scores,
    popularity_bias,
    ranking_metrics,
    top_k_lists,
)


def frame(pairs):
    return pd.DataFrame({"user_idx": [u for u, _ in pairs], "movie_idx": [m for _, m in pairs]})


# 2 users, 5 movies; ids start at 1 (row/column 0 is out-of-vocabulary)
SCORES = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 5, 4, 3, 2, 1],  # user 1 ranks movies 1 > 2 > 3 > 4 > 5
        [0, 1, 1, 1, 0, 0],  # user 2: a three-way tie between movies 1, 2, 3
    ],
    dtype=float,
)
TRAIN = frame([(1, 1), (2, 4)])
TEST = frame([(1, 3), (1, 5), (2, 3)])


def test_hit_rate_unfiltered_and_filtered():
    counts = counts_beating_from_scores(SCORES, TEST)
    assert list(counts) == [2, 4, 0]  # ties never beat: user 2's movie 3 is tied first
    seen = seen_matrix(TRAIN, 2, 5)
    assert list(counts_beating_from_scores(SCORES, TEST, exclude=seen)) == [1, 3, 0]
    assert hit_rates_from_scores(SCORES, TEST, [1, 2, 5]) == {1: 1 / 3, 2: 1 / 3, 5: 1.0}
    assert hit_rates_from_scores(SCORES, TEST, [2], exclude=seen) == {2: 2 / 3}


def test_ranking_metrics_with_ties_and_a_user_without_hits():
    seen = seen_matrix(TRAIN, 2, 5)
    lists = top_k_lists(SCORES, 2, seen, np.array([1, 2]))
    assert lists.tolist() == [[2, 3], [1, 2]]  # seen movies dropped; ties broken by the lower id
    result = ranking_metrics(SCORES, TEST, [2], exclude=seen)
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
    train = frame([(1, 1), (2, 1), (1, 2)])
    bias = popularity_bias(lists, train, 5, head_share=0.2)
    assert bias["mean_training_interactions_of_recommended"] == pytest.approx((2 + 1 + 2 + 0) / 4)
    assert bias["share_of_slots_from_top_10pct_movies"] == pytest.approx(0.5)


def test_evaluate_scores_bundle():
    result = evaluate_scores(SCORES, TRAIN, TEST, 2, 5, ks=(1, 2))
    assert set(result) == {"hit_rate", "hit_rate_filtered", "ranking", "coverage@10", "popularity@10"}
    assert result["hit_rate_filtered"][2] == pytest.approx(2 / 3)


def test_baselines_rank_as_expected():
    train = frame([(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 3)])
    pop = baselines.popularity_scores(train, 3, 4)
    assert np.argsort(-pop[1, 1:], kind="stable")[:3].tolist() == [0, 1, 2]
    assert baselines.random_scores(3, 4, seed=1).shape == (4, 5)
    weights = baselines.ease_weights(baselines.interaction_matrix(train, 3, 4), 1.0)
    assert np.allclose(np.diag(weights), 0.0)
    # movies 1 and 2 co-occur: each predicts the other
    assert weights[1, 2] > 0 and weights[2, 1] > 0
    ease = baselines.ease_scores(train, 3, 4, lam=1.0)
    assert ease[3, 2] > ease[3, 4]  # user 3 rated 1 (co-rated with 2), never anything like 4


def test_tune_ease_uses_validation(tiny_data, tiny_split):
    best, found = baselines.tune_ease(
        tiny_split.train, tiny_split.test, tiny_data.num_users, tiny_data.num_movies, (1.0, 10.0)
    )
    assert best in found and set(found) == {1.0, 10.0}


def test_model_scores_agree_with_the_fast_evaluator(tiny_data, tiny_split, tiny_config):
    from twotower_utils.model import build_model

    model = build_model(tiny_config, tiny_data)
    scores = model_scores(model)
    seen = seen_matrix(tiny_split.train, tiny_data.num_users, tiny_data.num_movies)
    expected = candidates_beating(model, tiny_split.test, exclude=seen)
    got = counts_beating_from_scores(scores, tiny_split.test, exclude=seen)
    assert np.abs(expected - got).max() <= 1  # one rounding tie at most
    assert np.mean(expected == got) > 0.95
