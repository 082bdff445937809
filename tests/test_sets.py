"""The known MovieLens sets and synthetic names, and the config's dataset check."""

import pytest

import twotower_utils as tt
from twotower_utils.data.sets import DATASETS, dataset_shape, parse_synthetic_name


def test_published_sizes_of_the_sets():
    assert DATASETS["100k"].ratings == 100_000 and DATASETS["25m"].users == 162_541
    assert [name for name, facts in DATASETS.items() if facts.demographics] == ["100k", "1m"]
    assert DATASETS["latest-small"].ratings_name == "movielens/latest-small-ratings"


def test_synthetic_names():
    assert parse_synthetic_name("synthetic-25m") == ("25m", None)
    assert parse_synthetic_name("synthetic-25m-1000000") == ("25m", 1_000_000)
    assert parse_synthetic_name("synthetic-latest-small-5000") == ("latest-small", 5_000)
    for bad in ("synthetic-", "synthetic-10m", "synthetic-25m-x", "25m-synthetic"):
        with pytest.raises(ValueError, match="synthetic-<set>"):
            dataset_shape(bad) if bad.startswith("synthetic") else parse_synthetic_name(bad)


def test_config_checks_the_dataset():
    assert tt.RunConfig().dataset == "100k"
    assert tt.RunConfig(dataset="synthetic-1m-50000").dataset == "synthetic-1m-50000"
    with pytest.raises(tt.ConfigError, match="dataset: unknown MovieLens set '2m'"):
        tt.RunConfig(dataset="2m")
    with pytest.raises(tt.ConfigError, match="need user demographics, which MovieLens 25m does not have"):
        tt.RunConfig(dataset="synthetic-25m-100000").replace(user_features=("age",))
    with pytest.raises(tt.ConfigError, match="need user demographics"):  # the rating model's features too
        tt.RunConfig(tt.RatingSpec(user_features=("age",)), dataset="synthetic-25m-100000")
    config = tt.RunConfig(tt.RetrievalSpec(user_features=("age", "zip")), dataset="1m")
    assert config.model.user_features == ("age", "zip")
