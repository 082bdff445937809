"""The re-ranker's features read training data only: a signal planted in the test ratings alone (a movie every
user rates highly, late) changes no feature, while the same rows in training do."""

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_movielens

from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split
from twotower_utils.evaluation import ltr_features, reranking
from twotower_utils.evaluation.counting import seen_matrix

SETTINGS = {
    "ease_lambda": 10.0,
    "recency": {"lambda": 10.0, "a": 3.0, "tau": 3.0},
    "rating_settings": {"factors": 4, "lam": 0.1, "iterations": 3},
}
PLANTED = "Movie 39 (1990)"  # a movie of taste group 3: users of other groups never rate it


def with_planted(data: MovieLens) -> tuple[MovieLens, pd.DataFrame]:
    """``data`` with every user rating ``PLANTED`` 5 stars after all their ratings; and those rows."""
    rows = pd.DataFrame(
        {
            "user_id": [f"u{u:02d}" for u in range(data.num_users)],
            "movie_title": PLANTED,
            "user_rating": 5.0,
            "timestamp": 10**6,
        }
    )
    ratings = data.ratings[["user_id", "movie_title", "user_rating", "timestamp"]].astype(
        {"user_id": str, "movie_title": str}
    )
    planted = MovieLens.from_frames(pd.concat([ratings, rows], ignore_index=True), data.movies, data.genre_names)
    return planted, planted.ratings.iloc[len(ratings) :].reset_index(drop=True)


def features_of(data: MovieLens, split: Split, stage_one: np.ndarray, n: int = 8):
    """What the study computes for a split: candidates of ``stage_one`` (training movies left out), every feature."""
    signals = ltr_features.fit_signals(split.train, data.num_users, data.num_movies, data.movie_vocabulary, **SETTINGS)
    ids = reranking.candidates(stage_one, seen_matrix(split.train, data.num_users, data.num_movies), n)
    return ids, *ltr_features.candidate_matrix(ids, stage_one, signals)


@pytest.fixture(scope="module")
def planted_case():
    data = synthetic_movielens()
    planted_data, planted_rows = with_planted(data)
    ratings = planted_data.ratings.iloc[: len(data.ratings)]
    train = ratings[ratings["timestamp"] % 4 != 0].reset_index(drop=True)
    test = ratings[ratings["timestamp"] % 4 == 0].reset_index(drop=True)
    stage_one = np.random.default_rng(0).normal(size=(data.num_users + 1, data.num_movies + 1))
    return planted_data, train, test, planted_rows, stage_one


def test_a_test_only_signal_changes_no_feature(planted_case):
    data, train, test, planted_rows, stage_one = planted_case
    plain = features_of(data, Split(train, test, "random"), stage_one)
    planted = features_of(data, Split(train, pd.concat([test, planted_rows], ignore_index=True), "random"), stage_one)
    np.testing.assert_array_equal(plain[0], planted[0])
    np.testing.assert_array_equal(plain[1], planted[1])
    assert plain[2] == planted[2] == ltr_features.FEATURE_NAMES
    assert np.isfinite(plain[1]).all()


def test_the_same_signal_in_training_is_seen(planted_case):
    """The control: the planted rows moved into training change the features (so the check above can fail)."""
    data, train, test, planted_rows, stage_one = planted_case
    plain = features_of(data, Split(train, test, "random"), stage_one)
    trained = features_of(data, Split(pd.concat([train, planted_rows], ignore_index=True), test, "random"), stage_one)
    assert not np.array_equal(plain[1], trained[1])


def test_features_by_hand(planted_case):
    data, train, _, _, stage_one = planted_case
    signals = ltr_features.fit_signals(train, data.num_users, data.num_movies, data.movie_vocabulary, **SETTINGS)
    ids, features, names = features_of(data, Split(train, train.iloc[:0], "random"), stage_one)
    column = {name: features[..., i] for i, name in enumerate(names)}
    counts = np.bincount(train["movie_idx"], minlength=data.num_movies + 1)
    np.testing.assert_allclose(column["movie popularity, log(1 + n)"], np.log1p(counts[ids]), rtol=1e-6)
    np.testing.assert_allclose(column["stage-one score"], reranking.gather(stage_one, ids), rtol=1e-6)
    np.testing.assert_allclose(column["EASE score"], reranking.gather(signals.ease, ids), rtol=1e-5, atol=1e-6)
    assert (np.diff(column["stage-one score"], axis=1) <= 0).all()  # candidates come best first
    user = 5
    last = train.loc[train["user_idx"] == user, "timestamp"].max()
    np.testing.assert_allclose(
        column["days since the user's last rating"][user], (train["timestamp"].max() - last) / 86400.0, rtol=1e-5
    )
    with pytest.raises(ValueError, match="scores for"):
        ltr_features.candidate_matrix(ids, stage_one, signals, {"extra": np.zeros((3, 3))})


def test_scale_free_columns(planted_case):
    data, train, _, _, stage_one = planted_case
    _, features, names = features_of(data, Split(train, train.iloc[:0], "random"), stage_one)
    kept, kept_names = ltr_features.select(features, names, ltr_features.SCALE_FREE)
    assert kept_names == list(ltr_features.SCALE_FREE) and kept.shape[-1] == len(kept_names)
    assert "stage-one score" not in kept_names and "stage-one score (standardised)" in kept_names
