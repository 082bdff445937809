"""The issue-4 two-tower switches, the new splits, and their config checks (synthetic data)."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import twotower_utils as tt
from twotower_utils.config import ConfigError
from twotower_utils.data import MovieLens, leave_latest_split, make_split, validation_split
from twotower_utils.evaluation import seen_matrix, topk_accuracy
from twotower_utils.improvements import (
    FeatureTower,
    ImprovedTwoTowerModel,
    movie_feature_table,
    movie_sampling_probability,
    movie_year,
    user_feature_table,
    uses_switches,
)
from twotower_utils.metrics import counts_beating_from_scores, model_scores
from twotower_utils.model import TwoTowerModel, build_model
from twotower_utils.training import train


def test_defaults_keep_the_reports_model(tiny_data, tiny_config):
    assert not uses_switches(tt.ExperimentConfig())
    assert isinstance(build_model(tiny_config, tiny_data), TwoTowerModel)
    assert uses_switches(tiny_config.replace(logq_correction=1.0))


@pytest.mark.parametrize(
    "changes",
    [
        {"logq_correction": -1.0},
        {"logq_correction": True},
        {"temperature": 0},
        {"l2_regularization": -0.1},
        {"user_features": ("shoe size",)},
        {"movie_features": ("genres", "genres")},
        {"tower_layers": (0,)},
        {"negatives": "some"},
        {"split": "sideways"},
    ],
)
def test_bad_switch_values_are_refused(changes):
    with pytest.raises(ConfigError):
        tt.ExperimentConfig(**changes)


def test_switch_config_round_trips():
    config = tt.ExperimentConfig(user_features=["age"], tower_layers=[16, 8], logq_correction=0.5)
    assert config.user_features == ("age",) and config.tower_layers == (16, 8)
    assert tt.ExperimentConfig.from_dict(config.to_dict()) == config


def test_sampling_probability_is_training_frequency(tiny_data, tiny_split):
    p = movie_sampling_probability(tiny_data, tiny_split.train)
    assert p.shape == (tiny_data.num_movies + 1,)
    assert p[1:].sum() == pytest.approx(1.0, rel=1e-5)
    counts = np.bincount(tiny_split.train["movie_idx"], minlength=tiny_data.num_movies + 1)
    most = counts[1:].argmax() + 1
    assert p[most] == pytest.approx(counts[most] / counts[1:].sum(), rel=1e-5)


def test_feature_tables():
    assert movie_year("Heat (1995)") == 1995 and movie_year("Ulysses (Ulisse) (1954)") == 1954
    assert movie_year("Untitled") is None
    ratings = pd.DataFrame(
        {
            "user_id": ["a", "b", "a"],
            "movie_title": ["X (1950)", "Y (1995)", "Y (1995)"],
            "bucketized_user_age": [25.0, 45.0, 25.0],
            "user_gender": [True, False, True],
            "user_occupation_label": [3, 0, 3],
            "user_zip_code": ["90210", "T8H1N", "90210"],
        }
    )
    movies = pd.DataFrame({"movie_title": ["X (1950)", "Y (1995)"], "movie_genres": [[0, 2], [1]]})
    data = MovieLens.from_frames(ratings, movies, ["A", "B", "C"])
    users = user_feature_table(data, ("age", "gender", "occupation", "zip"))
    assert users.shape == (3, 2 + 1 + 4 + 11)
    assert not users[0].any()  # the out-of-vocabulary row
    assert users[1, :2].tolist() == [1, 0] and users[1, 2] == 1 and users[1, 3 + 3] == 1 and users[1, 7 + 9] == 1
    assert users[2, 7 + 10] == 1  # a zip code that does not start with a digit
    films = movie_feature_table(data, ("genres", "year"))
    assert films.shape == (3, 3 + 8)
    assert films[1, :3].tolist() == [1, 0, 1] and films[1, 3 + 3] == 1  # the 1950s
    assert films[2, :3].tolist() == [0, 1, 0] and films[2, 3 + 7] == 1  # the 1990s


def test_feature_tower_keeps_the_tower_interface(tiny_data):
    side = movie_feature_table(tiny_data, ("genres", "year"))
    tower = FeatureTower(tiny_data.movie_vocabulary, 8, side, layers=(16,), normalize=True, name="movie_tower")
    by_id = tower(tf.constant([1, 2], dtype=tf.int64))
    by_title = tower(tf.constant(tiny_data.movie_vocabulary[:2]))
    np.testing.assert_allclose(by_id.numpy(), by_title.numpy(), rtol=1e-6)
    table = tower.embed_all().numpy()
    assert table.shape == (tiny_data.num_movies + 1, 8)
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "switches",
    [
        {"logq_correction": 1.0, "remove_accidental_hits": True},
        {"normalize_embeddings": True, "temperature": 0.1, "l2_regularization": 0.01, "optimizer": "adam"},
        {"movie_features": ("genres", "year"), "tower_layers": (16,)},
        {"negatives": "catalogue", "learning_rate": 0.05, "optimizer": "adam"},
    ],
)
def test_switched_models_train_and_evaluate(tiny_data, tiny_split, tiny_config, switches):
    config = tiny_config.replace(**switches)
    result = train(config, tiny_data, tiny_split, verbose=0, curves=False)
    assert isinstance(result.model, ImprovedTwoTowerModel)
    assert np.isfinite(result.history["loss"]).all()
    seen = seen_matrix(tiny_split.train, tiny_data.num_users, tiny_data.num_movies)
    fast = topk_accuracy(result.model, tiny_split.test, [5], exclude=seen)[5]
    counts = counts_beating_from_scores(model_scores(result.model), tiny_split.test, exclude=seen)
    # the same numbers from the score matrix; degenerate tiny towers score some movies exactly alike,
    # and float32 rounding breaks such ties differently in NumPy and TensorFlow
    assert abs(float(np.mean(counts < 5)) - fast) <= 0.1


def test_l2_regularisation_adds_a_loss(tiny_data, tiny_split, tiny_config):
    config = tiny_config.replace(l2_regularization=1.0, epochs=1)
    history = train(config, tiny_data, tiny_split, verbose=0, curves=False).history
    assert history["regularization_loss"].iloc[-1] > 0


def test_logq_correction_lifts_popular_movies(tiny_data, tiny_split):
    """The correction adds log(1/p) to popular in-batch negatives' logits... and so their positives learn
    larger scores relative to an uncorrected model: the loss differs on the same batch."""
    config = tt.ExperimentConfig(embedding_dim=4, epochs=1, batch_size=64, seed=1)
    plain = build_model(config, tiny_data)
    corrected = build_model(config.replace(logq_correction=1.0), tiny_data, tiny_split.train)
    batch = {
        "user_id": tf.constant(tiny_split.train["user_idx"].to_numpy()[:64]),
        "movie_title": tf.constant(tiny_split.train["movie_idx"].to_numpy()[:64]),
    }
    corrected.user_tower.embedding.set_weights(plain.user_tower.embedding.get_weights())
    corrected.movie_tower.embedding.set_weights(plain.movie_tower.embedding.get_weights())
    assert float(plain.compute_loss(batch, training=True)) != pytest.approx(
        float(corrected.compute_loss(batch, training=True))
    )


def test_leave_latest_and_validation_splits(tiny_data):
    split = leave_latest_split(tiny_data, 0.75)
    assert len(split.train) + len(split.test) == len(tiny_data.ratings)
    for user, test in split.test.groupby("user_idx"):
        train = split.train[split.train["user_idx"] == user]
        assert len(test) >= 1 and train["timestamp"].max() <= test["timestamp"].min()
    assert make_split(tiny_data, "leave_latest", train_fraction=0.75).test.equals(split.test)
    carved = validation_split(split.train, 0.2, seed=0)
    assert len(carved.test) == round(0.2 * len(split.train))
    assert len(carved.train) + len(carved.test) == len(split.train)
    pairs = lambda frame: sorted(zip(frame["user_idx"], frame["movie_idx"], strict=True))  # noqa: E731
    assert pairs(pd.concat([carved.train, carved.test])) == pairs(split.train)
