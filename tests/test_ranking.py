"""The ranking stage's rating model on tiny synthetic data: heads, features, implicit feedback, the blend."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_movielens
from twotower_utils.config import ConfigError, RatingSpec, RunConfig
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import random_split
from twotower_utils.evaluation.rating import rating_metrics
from twotower_utils.models.ranking import RatingBlend, RatingModel, implicit_matrix
from twotower_utils.training import build_for, train

FAST = {"optimizer": "adam", "learning_rate": 0.05, "batch_size": 32, "epochs": 30}


def planted_biases(seed=1) -> tuple[MovieLens, dict]:
    """Ratings = 3 + a user bias (+-0.8) + a movie bias (+0.6 / -0.3), nothing else; also each user's bias."""
    base = synthetic_movielens(num_users=24, num_movies=40, per_user=10, seed=seed)
    ratings = base.ratings.copy()
    user_bias = np.where(ratings["user_idx"] % 2 == 0, 0.8, -0.8)
    ratings["user_rating"] = 3.0 + user_bias + np.where(ratings["movie_idx"] % 3 == 0, 0.6, -0.3)
    data = MovieLens.from_frames(ratings.drop(columns=["user_idx", "movie_idx"]), base.movies, base.genre_names)
    return data, dict(zip(ratings["user_id"], user_bias, strict=True))


def test_ranking_switches_are_validated():
    with pytest.raises(ConfigError, match="head must be one of"):
        RatingSpec(head="gbdt")
    with pytest.raises(ConfigError, match="implicit_feedback is a setting of the rating model"):
        RunConfig().replace(implicit_feedback=True)
    with pytest.raises(ConfigError, match="logq_correction is a setting of the retrieval model"):
        RatingSpec(head="mf", logq_correction=1.0)
    with pytest.raises(ConfigError, match="cross_layers must be"):
        RatingSpec(head="dcn", cross_layers=-1)
    RunConfig(RatingSpec(head="dcn", cross_layers=2, user_features=("age",), ranking_l2=1.0))


def test_the_mf_head_learns_planted_biases():
    data, planted = planted_biases()
    split = random_split(data, seed=0, train_fraction=0.8)
    config = RunConfig(RatingSpec(head="mf", embedding_dim=4), **FAST)
    result = train(config, data, split, verbose=0)
    assert isinstance(result.model, RatingModel)
    assert {"rmse", "val_rmse"} <= set(result.history.columns)  # train and test RMSE curves
    assert result.history["rmse"].iloc[-1] < 0.1
    assert rating_metrics(result.model, split.test)["rmse"] < 0.25  # the global mean alone: about 0.9
    learned = result.model.user_bias.embeddings.numpy()[1:, 0]  # row i-1 is the vocabulary's user i
    high = np.array([planted[u] > 0 for u in data.user_vocabulary])
    # the planted gap is 1.6; the dot product may carry part of it, the biases carry most
    assert learned[high].mean() - learned[~high].mean() > 0.8


@pytest.mark.parametrize("head", ["mlp", "dcn"])
def test_deep_heads_with_features_and_implicit_feedback_train(tiny_data, tiny_split, head):
    spec = RatingSpec(
        head=head,
        embedding_dim=4,
        ranking_layers=(8,),
        cross_layers=2,
        implicit_feedback=True,
        user_features=(),
        movie_features=("genres", "year"),
        ranking_l2=0.01,
    )
    config = RunConfig(spec, **FAST)
    model = build_for(config, tiny_data, tiny_split.train)
    assert any("implicit" in w.name for w in model.trainable_weights)
    assert len(model.cross) == (2 if head == "dcn" else 0)
    before = rating_metrics(model, tiny_split.train)["rmse"]
    after = rating_metrics(train(config, tiny_data, tiny_split, verbose=0, curves=False).model, tiny_split.train)
    assert after["rmse"] < before  # it fits its training ratings better than at initialisation


def test_same_seed_same_rating_model(tiny_data, tiny_split):
    config = RunConfig(RatingSpec(head="dcn", embedding_dim=4, ranking_layers=(8,)), **FAST).replace(epochs=3)
    first, second = (train(config, tiny_data, tiny_split, verbose=0, curves=False).model for _ in range(2))
    assert rating_metrics(first, tiny_split.test) == rating_metrics(second, tiny_split.test)


def test_implicit_matrix_rows_are_the_users_training_movies_normalised():
    frame = pd.DataFrame({"user_idx": [1, 1, 1, 1, 2], "movie_idx": [1, 2, 3, 4, 2]})
    matrix = implicit_matrix(frame, num_users=3, num_movies=4)
    np.testing.assert_allclose(matrix[1], [0, 0.5, 0.5, 0.5, 0.5])  # |N(u)|^-1/2 with 4 movies
    np.testing.assert_allclose(matrix[2], [0, 0, 1, 0, 0])
    assert not matrix[0].any() and not matrix[3].any()  # out-of-vocabulary and a user without ratings


def test_the_blend_recovers_a_planted_combination_and_clips():
    rng = np.random.default_rng(0)
    members = rng.uniform(1, 5, size=(200, 2))
    held_out = pd.DataFrame({"user_rating": 0.5 + 0.3 * members[:, 0] + 0.6 * members[:, 1]})
    blend = RatingBlend().fit(members, held_out)
    np.testing.assert_allclose(blend.weights, [0.5, 0.3, 0.6], atol=1e-9)
    assert blend.predict(np.array([[10.0, 10.0], [0.0, 0.0]])).tolist() == [5.0, 1.0]
    with pytest.raises(ValueError, match="members] predictions"):
        RatingBlend().fit(members[:10], held_out)
