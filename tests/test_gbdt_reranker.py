"""The gradient-boosted (LambdaRank) re-ranker: it learns a planted relevance signal, a shuffled-feature control does
not, and a seed gives the same model."""

import numpy as np
import pytest

pytest.importorskip("lightgbm")

from twotower_utils.evaluation.gbdt_reranker import GBDTReranker, list_hit_rate, list_ndcg  # noqa: E402

SMALL = {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 10}


def planted_lists(users: int = 240, n: int = 20, features: int = 4, seed: int = 0):
    """``[users, n, features]`` lists whose one positive per list is drawn with odds ``exp(3 x0)``: only feature 0
    carries the relevance, the others are noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(users, n, features)).astype(np.float32)
    odds = np.exp(3.0 * x[..., 0])
    positives = np.array([rng.choice(n, p=row / row.sum()) for row in odds])
    y = np.zeros((users, n), dtype=np.float32)
    y[np.arange(users), positives] = 1.0
    return x, y


def test_lambdarank_beats_a_shuffled_feature_control():
    x, y = planted_lists()
    train, test = slice(0, 160), slice(160, None)
    ranker = GBDTReranker(seed=0, **SMALL).fit_lists(x[train], y[train], ["signal", "a", "b", "c"])
    shuffled = x[train].reshape(-1, x.shape[-1])[np.random.default_rng(1).permutation(160 * x.shape[1])]
    control = GBDTReranker(seed=0, **SMALL).fit_lists(shuffled.reshape(x[train].shape), y[train])
    learned, chance = ranker.score_lists(x[test]), control.score_lists(x[test])
    assert list_ndcg(learned, y[test]) > list_ndcg(chance, y[test]) + 0.15
    assert list_hit_rate(learned, y[test], k=5) > list_hit_rate(chance, y[test], k=5) + 0.15
    assert ranker.importances()["feature"].iloc[0] == "signal"


def test_a_seed_gives_the_same_scores():
    x, y = planted_lists(users=80, n=10)
    settings = {**SMALL, "subsample": 0.7, "colsample_bytree": 0.7}
    first = GBDTReranker(seed=3, **settings).fit_lists(x, y).score_lists(x)
    second = GBDTReranker(seed=3, **settings).fit_lists(x, y).score_lists(x)
    np.testing.assert_array_equal(first, second)


def test_flat_rows_and_lists_agree_and_errors_are_clear():
    x, y = planted_lists(users=40, n=10)
    ranker = GBDTReranker(seed=0, **SMALL).fit(x.reshape(-1, 4), np.full(40, 10), y.reshape(-1))
    np.testing.assert_array_equal(ranker.rerank(x.reshape(-1, 4)).reshape(40, 10), ranker.score_lists(x))
    table = ranker.importances()
    assert list(table.columns) == ["feature", "gain", "splits", "gain share"]
    assert table["gain share"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no positive"):
        GBDTReranker().fit(x.reshape(-1, 4), np.full(40, 10), np.zeros(400))
    with pytest.raises(ValueError, match="disagree"):
        GBDTReranker().fit(x.reshape(-1, 4), np.full(40, 9), y.reshape(-1))
    with pytest.raises(ValueError, match="fit the re-ranker first"):
        GBDTReranker().score_lists(x)


def test_list_measures_by_hand():
    labels = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float)
    scores = np.array([[3, 2, 1], [1, 2, 3], [1, 2, 3]], dtype=float)
    assert list_hit_rate(scores, labels, k=1) == 0.0  # the third list has no positive: left out
    assert list_hit_rate(scores, labels, k=2) == 0.5
    assert list_ndcg(scores, labels, k=3) == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / 2)
