"""RunConfig and the model specs: defaults, validation, foreign fields, saved layouts, and one step of each family."""

import numpy as np
import pytest

import twotower_utils as tt
from twotower_utils import ConfigError, MultitaskSpec, RatingSpec, RetrainError, RetrievalSpec, RunConfig, SequenceTower


def test_defaults_are_the_report_recipe():
    config = RunConfig()
    assert isinstance(config.model, RetrievalSpec) and config.family == "retrieval"
    assert (config.model.embedding_dim, config.epochs, config.learning_rate) == (32, 10, 0.1)
    assert (config.batch_size, config.eval_batch_size, config.optimizer) == (8192, 4096, "adagrad")
    assert (config.seed, config.train_fraction, config.split) == (42, 0.8, "random")
    assert config.learning_rate_schedule == "constant" and config.model.user_tower == tt.IdTower()
    assert config.describe() == "retrieval()"


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
        RunConfig().replace(**changes)


def test_replace_validates_and_rejects_unknown_names():
    config = RunConfig().replace(embedding_dim=64, epochs=20)
    assert (config.model.embedding_dim, config.epochs) == (64, 20)
    with pytest.raises(ConfigError, match="dimension is not a setting of any model"):
        config.replace(dimension=3)
    with pytest.raises(ConfigError):
        config.replace(epochs=-3)


def test_model_fields_belong_on_the_spec():
    with pytest.raises(ConfigError, match="embedding_dim is a setting of the retrieval model") as raised:
        RunConfig(embedding_dim=64)
    assert "RunConfig(model=RetrievalSpec(...))" in str(raised.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RatingSpec(temperature=0.1),
        lambda: RatingSpec().replace(temperature=0.1),
        lambda: RunConfig(model=RatingSpec()).replace(temperature=0.1),
    ],
)
def test_a_spec_refuses_a_foreign_field_with_one_line_naming_its_family(make):
    with pytest.raises(ConfigError) as raised:
        make()
    message = str(raised.value)
    assert "temperature" in message and "RetrievalSpec" in message and "RatingSpec" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "make, family",
    [
        (lambda: RetrievalSpec(head="mlp"), "RatingSpec"),
        (lambda: RetrievalSpec(rating_weight=0.5), "MultitaskSpec"),
        (lambda: RunConfig().replace(implicit_feedback=True), "RatingSpec"),
        (lambda: RunConfig(model=RatingSpec()).replace(history_length=20), "SequenceTower"),
        (lambda: RunConfig(model=RatingSpec()).replace(rating_layers=(8,)), "MultitaskSpec"),
    ],
)
def test_foreign_fields_name_the_family_that_has_them(make, family):
    with pytest.raises(ConfigError, match=family) as raised:
        make()
    assert "\n" not in str(raised.value)


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
    ],
)
def test_bad_retrieval_switch_values_are_refused(changes):
    with pytest.raises(ConfigError):
        RetrievalSpec(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retrieval_weight": 0.0, "rating_weight": 0.0}, "cannot both be 0"),
        ({"rating_weight": -1.0}, "rating_weight must be"),
        ({"retrieval_weight": True}, "retrieval_weight must be"),
        ({"rating_layers": (0,)}, "rating_layers must be"),
        ({"rating_l2": -0.1}, "rating_l2 must be"),
        ({"rating_stop_gradient": "yes"}, "True or False"),
        ({"retrieval_weight": 0.0, "rating_stop_gradient": True}, "no embedding"),
        ({"user_tower": "sasrec"}, "id user tower only"),
    ],
)
def test_bad_multitask_values_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        MultitaskSpec(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"head": "gbdt"}, "head must be one of"),
        ({"cross_layers": -1}, "cross_layers must be"),
        ({"ranking_layers": (0,)}, "ranking_layers must be"),
        ({"bias_l2": -1.0}, "bias_l2 must be"),
        ({"implicit_feedback": 1}, "True or False"),
    ],
)
def test_bad_rating_values_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        RatingSpec(**changes)


def test_the_family_follows_the_spec():
    assert RunConfig(model=RatingSpec(head="mlp")).family == "rating"
    assert RunConfig().replace(model=MultitaskSpec()).family == "multitask"
    sequence = RunConfig().replace(user_tower="sasrec", history_length=20)
    assert sequence.family == "retrieval" and sequence.model.user_tower == SequenceTower("sasrec", history_length=20)
    assert RunConfig(RatingSpec(head="dcn")).describe() == "rating(head='dcn')"


FAMILIES = {
    "retrieval, id tower": RunConfig(
        RetrievalSpec(embedding_dim=16, tower_layers=[8], logq_correction=0.5), ks=[1, 10]
    ),
    "retrieval, sasrec": RunConfig(
        RetrievalSpec(user_tower=SequenceTower("sasrec", history_length=7, use_user_id=True, blocks=2, dropout=0.1))
    ),
    "rating, mf": RunConfig(RatingSpec(head="mf", bias_l2=0.1), optimizer="adam"),
    "rating, mlp": RunConfig(RatingSpec(head="mlp", movie_features=["genres"], ranking_layers=[16, 8])),
    "rating, dcn": RunConfig(RatingSpec(head="dcn", cross_layers=2, implicit_feedback=True)),
    "multitask": RunConfig(MultitaskSpec(rating_weight=0.1, rating_layers=[32, 16], rating_l2=3.0), epochs=3),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_dict_round_trip_per_family(name):
    import json

    config = FAMILIES[name]
    data = json.loads(config.to_json())
    assert data["format"] == 2 and data["model"]["family"] == config.family
    again = RunConfig.from_dict(data)
    assert again == config and type(again.model) is type(config.model)
    assert RunConfig.from_dict({**data, "not_a_parameter": 1}) == config  # foreign top-level keys are ignored


def test_tuples_stay_tuples():
    config = FAMILIES["retrieval, id tower"]
    assert config.ks == (1, 10) and config.model.tower_layers == (8,)
    assert config.to_dict()["ks"] == [1, 10] and config.to_dict()["model"]["tower_layers"] == [8]


@pytest.mark.parametrize(
    "old",
    [
        {"embedding_dim": 32, "epochs": 10, "learning_rate": 0.1, "ranking_head": "none", "rating_task": False},
        {"embedding_dim": 64, "ranking_head": "mf", "implicit_feedback": True},
        {"embedding_dim": 64, "user_tower": "sasrec", "history_length": 50, "sequence_blocks": 2},
        {},
        None,
    ],
)
def test_an_old_flat_config_gives_the_retrain_message(old):
    with pytest.raises(RetrainError) as raised:
        RunConfig.from_dict(old, what="results/model")
    message = str(raised.value)
    assert message.startswith("results/model was saved by an earlier version of twotower") and "retrain it" in message
    assert "\n" not in message and isinstance(raised.value, ConfigError)


# ----------------------------------------------------------------------------------------------- one step per family


@pytest.fixture(scope="module")
def small_movielens():
    """A tiny synthetic MovieLens 1M (demographics, genres, years, timestamps) and its split."""
    from twotower_utils.data.splits import random_split
    from twotower_utils.data.synthetic import synthetic_movielens

    data = synthetic_movielens("1m", 3_000, seed=0)
    return data, random_split(data, seed=1)


STEP = {"epochs": 1, "batch_size": 4096, "eval_batch_size": 4096, "seed": 5}  # one batch: one training step


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_builds_through_build_for_and_trains_one_step(small_movielens, name):
    from twotower_utils.models.multitask import MultitaskModel
    from twotower_utils.models.ranking import RatingModel
    from twotower_utils.models.two_tower import TwoTowerModel
    from twotower_utils.training import build_for, train

    data, split = small_movielens
    config = FAMILIES[name].replace(**STEP)
    model = build_for(config, data, split.train)
    kind = {"retrieval": TwoTowerModel, "rating": RatingModel, "multitask": MultitaskModel}[config.family]
    assert type(model) is kind and model.optimizer is not None  # compiled
    first = train(config, data, split, verbose=0, curves=False)
    again = train(config, data, split, verbose=0, curves=False)
    assert len(first.history) == 1 and np.isfinite(first.history["loss"]).all()
    assert first.history["loss"].tolist() == again.history["loss"].tolist()  # same seed, same numbers
    if config.family == "retrieval":
        assert first.model.sequence == config.model.sequence
