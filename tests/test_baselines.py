"""Baselines: random, most-popular and EASE, with EASE's lambda chosen on validation."""

import numpy as np

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
