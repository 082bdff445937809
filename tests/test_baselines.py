"""Baselines: random, most-popular and EASE, with EASE's lambda chosen on validation."""

import numpy as np
import pytest

from tests.conftest import pairs_frame
from twotower_utils.evaluation import baselines


def test_baselines_rank_as_expected():
    train = pairs_frame([(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 3)])
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


def test_recency_weights_count_from_the_latest_and_strength_zero_is_plain_ease():
    histories = np.array([[0, 2, 3, 1], [0, 0, 0, 0]])  # user 0: movies 2, 3, then 1 (the latest)
    weights = baselines.recency_matrix(histories, 4, strength=2.0, scale=1.0)
    assert weights[0, 1] == 3.0  # rank 0: 1 + 2 e^0
    assert weights[0, 3] == pytest.approx(1 + 2 * np.exp(-1.0))
    assert weights[0, 2] == pytest.approx(1 + 2 * np.exp(-2.0))
    assert weights[0, 0] == 0.0 and weights[0, 4] == 0.0 and not weights[1].any()
    train = pairs_frame([(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 4), (1, 3)])
    train["timestamp"] = np.arange(len(train))
    from twotower_utils.data.history import latest_histories

    every = latest_histories(train, np.arange(4), 3)
    plain = baselines.recency_ease_scores(train, every, 3, 4, 1.0, 0.0, 1.0)
    np.testing.assert_allclose(plain, baselines.ease_scores(train, 3, 4, 1.0))
    # user 1's latest movie is 3, which co-occurs with 4: recency lifts 4
    recent = baselines.recency_ease_scores(train, every, 3, 4, 1.0, 50.0, 1.0)
    assert recent[1, 4] - recent[1, 1:].mean() > plain[1, 4] - plain[1, 1:].mean()


def test_last_item_scores_are_the_latest_movies_neighbours_and_popularity_without_history():
    train = pairs_frame([(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 4), (2, 3)])
    similarity = baselines.item_similarity(train, 3, 4)
    assert np.allclose(similarity, similarity.T) and np.allclose(np.diag(similarity), 0.0)
    assert similarity[3, 4] == pytest.approx(1 / np.sqrt(2))  # 4's one user of 3's two
    scores = baselines.last_item_scores(train, np.array([[0, 1, 3], [0, 0, 0]]), 3, 4)
    assert np.argmax(scores[0, 1:]) + 1 == 4 and scores[0, 4] == pytest.approx(similarity[3, 4], abs=1e-8)
    popular = baselines.popularity_scores(train, 3, 4)[0]
    assert list(np.argsort(-scores[1, 1:], kind="stable")) == list(np.argsort(-popular[1:], kind="stable"))


def test_recency_ease_is_tuned_on_validation(tiny_data, tiny_split):
    from twotower_utils.data.history import latest_histories

    histories = latest_histories(tiny_split.train, np.arange(tiny_data.num_users + 1), 12)
    best, found = baselines.tune_recency_ease(
        tiny_split.train,
        tiny_split.test,
        histories,
        tiny_data.num_users,
        tiny_data.num_movies,
        (1.0,),
        (0.0, 5.0),
        (2.0, 8.0),
    )
    assert set(found) == {(1.0, 0.0, 2.0), (1.0, 5.0, 2.0), (1.0, 5.0, 8.0)}  # a = 0 needs no tau
    assert found[(best["lambda"], best["a"], best["tau"])] == max(found.values())


def test_ease_refuses_a_catalogue_too_large_for_its_dense_inverse_and_says_what_it_needs():
    train = pairs_frame([(1, 1)])
    # MovieLens 25M's catalogue: three float64 59,048 x 59,048 arrays, 83.7 GB; nothing is allocated
    with pytest.raises(ValueError, match=r"EASE on 59,047 movies .* = 83\.7 GB, over the limit of 4\.3 GB"):
        baselines.ease_scores(train, 162_541, 59_047, lam=100.0)
    with pytest.raises(ValueError, match=r"max_bytes"):
        baselines.ease_weights(np.zeros((3, 5)), 1.0, max_bytes=100)
    with pytest.raises(ValueError, match=r"the most-popular score matrix needs 1 dense float64 array"):
        baselines.popularity_scores(train, 162_541, 59_047)
    with pytest.raises(ValueError, match="the interaction matrix"):
        baselines.interaction_matrix(train, 162_541, 59_047)
    with pytest.raises(ValueError, match="EASE on"):
        baselines.tune_ease(train, train, 162_541, 59_047)
    assert baselines.ease_scores(train, 3, 4, 1.0, max_bytes=10_000).shape == (4, 5)


def test_popularity_scorer_ranks_like_the_popularity_matrix_without_one():
    from twotower_utils.evaluation.metrics import evaluate_scores, top_k_lists

    train = pairs_frame([(1, 3), (2, 3), (3, 3), (1, 2), (2, 4), (3, 1), (3, 2)])  # 3 > 2 > 1 = 4 (ties: lower id)
    test = pairs_frame([(1, 1), (2, 2), (3, 4), (1, 4)])
    scorer = baselines.PopularityScorer(train, 3, 5)
    matrix = baselines.popularity_scores(train, 3, 5)
    assert scorer.rows(np.array([1, 2])).shape == (2, 5)
    assert top_k_lists(scorer, 5, users=[1]).tolist() == [[3, 2, 1, 4, 5]]
    np.testing.assert_array_equal(top_k_lists(scorer, 5), top_k_lists(matrix, 5))
    from twotower_utils.evaluation.metrics import evaluate

    assert evaluate(scorer, train, test, 3, 5, (1, 2, 5), user_batch=2) == evaluate_scores(
        matrix, train, test, 3, 5, (1, 2, 5)
    )
