import pytest

import twotower_utils as tt
from twotower_utils import ConfigError, ExperimentConfig


def test_defaults_are_the_report_recipe():
    config = ExperimentConfig()
    assert (config.embedding_dim, config.epochs, config.learning_rate) == (32, 10, 0.1)
    assert (config.batch_size, config.eval_batch_size, config.optimizer) == (8192, 4096, "adagrad")
    assert (config.seed, config.train_fraction, config.split) == (42, 0.8, "random")
    assert config.learning_rate_schedule == "constant"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": 3.5}, "embedding_dim"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"batch_size": True}, "batch_size"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"learning_rate_schedule": "linear"}, "learning_rate_schedule"),
        ({"split": "by-user"}, "split"),
        ({"ks": (10, 5)}, "ks"),
        ({"ks": ()}, "ks"),
    ],
)
def test_bad_values_give_one_clear_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**changes)


def test_replace_validates_and_rejects_unknown_names():
    config = ExperimentConfig().replace(embedding_dim=64)
    assert config.embedding_dim == 64
    with pytest.raises(ConfigError, match="unknown parameter"):
        config.replace(dimension=3)
    with pytest.raises(ConfigError):
        config.replace(epochs=-3)


def test_dict_round_trip_ignores_foreign_keys():
    config = ExperimentConfig(embedding_dim=16, ks=[1, 10])
    again = ExperimentConfig.from_dict({**config.to_dict(), "not_a_parameter": 1})
    assert again == config and again.ks == (1, 10)


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


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rating_weight": 0.5}, "only for the multitask model"),
        ({"rating_layers": (8,)}, "only for the multitask model"),
        ({"rating_task": True, "retrieval_weight": 0.0, "rating_weight": 0.0}, "cannot both be 0"),
        ({"rating_task": True, "rating_weight": -1.0}, "rating_weight must be"),
        ({"rating_task": True, "retrieval_weight": True}, "retrieval_weight must be"),
        ({"rating_task": True, "rating_layers": (0,)}, "rating_layers must be"),
        ({"rating_task": True, "rating_l2": -0.1}, "rating_l2 must be"),
        ({"rating_task": "yes"}, "True or False"),
        ({"rating_task": True, "retrieval_weight": 0.0, "rating_stop_gradient": True}, "no embedding"),
    ],
)
def test_bad_multitask_values_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        tt.ExperimentConfig(**changes)


def test_multitask_config_round_trips_and_is_off_by_default():
    assert tt.ExperimentConfig().rating_task is False
    config = tt.ExperimentConfig(rating_task=True, rating_weight=0.1, rating_layers=[32, 16], rating_l2=3.0)
    assert config.rating_layers == (32, 16) and config.to_dict()["rating_layers"] == [32, 16]
    assert tt.ExperimentConfig.from_dict(config.to_dict()) == config
