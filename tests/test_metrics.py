"""Ranking metrics, coverage and popularity bias on small hand-made cases."""

import numpy as np
import pytest

from tests.conftest import HAND_SCORES, HAND_TEST, HAND_TRAIN, pairs_frame
from twotower_utils.evaluation.counting import seen_matrix
from twotower_utils.evaluation.metrics import (
    coverage,
    evaluate,
    evaluate_scores,
    graded_metrics,
    popularity_bias,
    ranking_metrics,
    top_k_lists,
)


def test_ranking_metrics_with_ties_and_a_user_without_hits():
    seen = seen_matrix(HAND_TRAIN, 2, 5)
    lists = top_k_lists(HAND_SCORES, 2, seen, np.array([1, 2]))
    assert lists.tolist() == [[2, 3], [1, 2]]  # seen movies dropped; ties broken by the lower id
    result = ranking_metrics(HAND_SCORES, HAND_TEST, [2], exclude=seen)
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
    train = pairs_frame([(1, 1), (2, 1), (1, 2)])
    bias = popularity_bias(lists, train, 5, head_share=0.2)
    assert bias["mean_training_interactions_of_recommended"] == pytest.approx((2 + 1 + 2 + 0) / 4)
    assert bias["share_of_slots_from_top_10pct_movies"] == pytest.approx(0.5)


def test_evaluate_scores_bundle():
    result = evaluate_scores(HAND_SCORES, HAND_TRAIN, HAND_TEST, 2, 5, ks=(1, 2))
    assert set(result) == {"hit_rate", "hit_rate_filtered", "ranking", "coverage@10", "popularity@10"}
    assert result["hit_rate_filtered"][2] == pytest.approx(2 / 3)


def test_graded_metrics_by_hand():
    """User 1's filtered top-2 is [2, 3] (movie 1 seen): it hits movie 3 (rated 4) and misses movie 5 (rated 5);
    user 2's [1, 2] hits nothing."""
    seen = seen_matrix(HAND_TRAIN, 2, 5)
    test = HAND_TEST.assign(user_rating=[4.0, 5.0, 2.0])
    result = graded_metrics(HAND_SCORES, test, k=2, exclude=seen)
    user_1 = (4 / np.log2(3)) / (5 + 4 / np.log2(3))
    assert result["graded ndcg@2"] == pytest.approx(user_1 / 2)
    assert result["mean rating of hits@2"] == 4.0
    with pytest.raises(ValueError, match="user_rating"):
        graded_metrics(HAND_SCORES, HAND_TEST, k=2)


def test_a_seen_test_movie_is_never_a_hit_even_when_a_short_list_shows_it():
    """User 1 saw movies 1 to 4 of 5 and has test ratings of 5 and of 2 (seen, as a retitled movie would be): the
    filtered top-5 is [5, then the seen movies 1, 2, 3, 4]; only 5 is a hit, and 2 stays among the user's test
    movies (and in the ideal)."""
    train = pairs_frame([(1, 1), (1, 2), (1, 3), (1, 4), (2, 1)])
    test = pairs_frame([(1, 5), (1, 2)]).assign(user_rating=[3.0, 5.0])
    seen = seen_matrix(train, 2, 5)
    assert top_k_lists(HAND_SCORES, 5, seen, np.array([1])).tolist() == [[5, 1, 2, 3, 4]]
    result = evaluate_scores(HAND_SCORES, train, test, 2, 5, ks=(1, 2, 5))
    assert result["hit_rate_filtered"] == {1: 0.5, 2: 0.5, 5: 0.5}
    assert result["hit_rate"] == {1: 0.0, 2: 0.5, 5: 1.0}  # unfiltered, movie 2 is second and movie 5 last
    assert result["ranking"]["recall@5"] == 0.5 and result["ranking"]["mrr"] == 1.0
    assert result["ranking"]["ndcg@5"] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    graded = graded_metrics(HAND_SCORES, test, k=5, exclude=seen)
    assert graded["graded ndcg@5"] == pytest.approx(3 / (5 + 3 / np.log2(3)))
    assert graded["mean rating of hits@5"] == 3.0


def dense_reference(scores, train, test, num_users, num_movies, ks, list_k=10):
    """The metrics the slow, obviously-right way (the dense code this package had before user batches): a
    full stable argsort of every test user's row and a brute-force count per test interaction (filtered, a
    test movie the user saw in training is in no list: it counts the whole catalogue, a miss at every k)."""
    seen = np.zeros((num_users + 1, num_movies + 1), dtype=bool)
    seen[train["user_idx"].to_numpy(), train["movie_idx"].to_numpy()] = True
    relevant = np.zeros_like(seen)
    relevant[test["user_idx"].to_numpy(), test["movie_idx"].to_numpy()] = True
    users_of, movies_of = test["user_idx"].to_numpy(), test["movie_idx"].to_numpy()
    rows = scores[users_of, 1:]
    positives = scores[users_of, movies_of][:, None]
    itself = np.arange(1, num_movies + 1)[None, :] == movies_of[:, None]
    unfiltered = ((rows > positives) & ~itself).sum(axis=1)
    filtered = ((rows > positives) & ~itself & ~seen[users_of, 1:]).sum(axis=1)
    filtered[seen[users_of, movies_of]] = num_movies
    users = np.unique(users_of)
    ranked = scores[users, 1:].astype(np.float64).copy()
    ranked[seen[users, 1:]] = -np.inf
    order = np.argsort(-ranked, axis=1, kind="stable") + 1
    gains = np.take_along_axis(relevant[users], order, axis=1) & ~np.take_along_axis(seen[users], order, axis=1)
    num_relevant = relevant[users, 1:].sum(axis=1)
    positions = np.arange(1, gains.shape[1] + 1)
    ranking = {}
    for k in [k for k in ks if k <= list_k] or [list_k]:
        top = gains[:, :k].astype(np.float64)
        hits = top.sum(axis=1)
        ideal_count = np.minimum(num_relevant, k)
        discounts = 1.0 / np.log2(positions[:k] + 1)
        idcg = np.array([discounts[:n].sum() for n in ideal_count])
        ranking[f"recall@{k}"] = float(np.mean(hits / num_relevant))
        ranking[f"precision@{k}"] = float(np.mean(hits / k))
        ranking[f"ndcg@{k}"] = float(np.mean((top * discounts).sum(axis=1) / idcg))
        precision_at = np.cumsum(top, axis=1) / positions[:k]
        ranking[f"map@{k}"] = float(np.mean((precision_at * top).sum(axis=1) / ideal_count))
    first = np.where(gains.any(axis=1), gains.argmax(axis=1) + 1, np.inf)
    ranking["mrr"] = float(np.mean(1.0 / first))
    lists = order[:, :list_k]
    return {
        "hit_rate": {k: float(np.mean(unfiltered < k)) for k in ks},
        "hit_rate_filtered": {k: float(np.mean(filtered < k)) for k in ks},
        "ranking": ranking,
        f"coverage@{list_k}": coverage(lists, num_movies),
        f"popularity@{list_k}": popularity_bias(lists, train, num_movies),
    }


def random_case(seed=0, num_users=30, num_movies=50, levels=4):
    """Scores with many ties (a few integer levels), users who saw most of the catalogue, test movies that
    were also seen, and repeated test pairs."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(num_users + 1, num_movies + 1)).astype(np.float64)
    pairs = list(zip(rng.integers(1, num_users + 1, 600), rng.integers(1, num_movies + 1, 600), strict=True))
    train = pairs_frame(pairs + [(1, m) for m in range(1, num_movies - 2)])  # user 1 saw all but three
    draws = zip(rng.integers(1, num_users + 1, 200), rng.integers(1, num_movies + 1, 200), strict=True)
    test = pairs_frame(list(draws))
    return scores, train, test, num_users, num_movies


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_evaluation_equals_a_brute_force_reference_with_ties_and_seen_movies(seed):
    scores, train, test, num_users, num_movies = random_case(seed)
    expected = dense_reference(scores, train, test, num_users, num_movies, (1, 3, 10, 40, 60), list_k=10)
    for user_batch in (1, 7, 1000):
        got = evaluate(scores, train, test, num_users, num_movies, (1, 3, 10, 40, 60), 10, user_batch)
        assert got == expected
    assert evaluate_scores(scores, train, test, num_users, num_movies, (1, 3, 10, 40, 60)) == expected


def test_the_chunked_top_k_is_tf_top_k_ties_included():
    import tensorflow as tf

    from twotower_utils.evaluation.counting import exact_top_k, top_k_chunk

    rng = np.random.default_rng(5)
    rows = tf.constant(rng.integers(0, 6, size=(9, 1000)).astype(np.float32))
    rows = tf.tensor_scatter_nd_update(rows, [[0, 3], [0, 999]], [-np.inf, -np.inf])
    chunk = top_k_chunk(1000, 20)
    assert chunk == 7  # 143 chunks, the last one with a padding column (scored 9, above every real score)
    padded = tf.pad(rows, [[0, 0], [0, 1001 - 1000]], constant_values=9.0)
    values, columns = exact_top_k(padded, 20, chunk, 1000)
    reference = tf.math.top_k(rows, 20)
    np.testing.assert_array_equal(values.numpy(), reference.values.numpy())
    np.testing.assert_array_equal(columns.numpy(), reference.indices.numpy())


def test_seen_movies_as_csr():
    from twotower_utils.evaluation.counting import SeenMovies

    frame = pairs_frame([(2, 3), (1, 4), (2, 1), (2, 3), (1, 2)])
    seen = SeenMovies.from_frame(frame, num_users=3, num_movies=4)
    assert seen.indptr.tolist() == [0, 0, 2, 4, 4] and seen.indices.tolist() == [2, 4, 1, 3]
    np.testing.assert_array_equal(seen.dense(), seen_matrix(frame, 3, 4))
    assert seen.contains([1, 1, 2, 3], [2, 3, 3, 1]).tolist() == [True, False, True, False]
    np.testing.assert_array_equal(seen.rows(np.array([2, 0])), seen.dense()[[2, 0]])
    assert SeenMovies.from_dense(seen.dense()).indices.tolist() == [2, 4, 1, 3]
    with pytest.raises(ValueError, match="movie_idx must lie in 0..4"):
        SeenMovies.from_frame(pairs_frame([(1, 5)]), 3, 4)


@pytest.fixture(scope="module")
def real_split(real_data):
    from twotower_utils.data.splits import random_split

    return random_split(real_data, seed=42)


def test_evaluate_scores_equals_the_dense_reference_on_movielens_100k(real_data, real_split):
    """Exact equality, for a model trained one epoch (its score matrix and its towers) and for baselines."""
    import twotower_utils as tt
    from twotower_utils.evaluation import baselines
    from twotower_utils.evaluation.metrics import model_scores
    from twotower_utils.training import train

    config = tt.RunConfig(tt.RetrievalSpec(embedding_dim=16), epochs=1, seed=1)
    model = train(config, real_data, real_split, verbose=0, curves=False).model
    users, movies = real_data.num_users, real_data.num_movies
    ks = (1, 5, 10, 50, 100)
    matrices = {
        "model": model_scores(model),
        "most popular": baselines.popularity_scores(real_split.train, users, movies),
        "EASE": baselines.ease_scores(real_split.train, users, movies, 300.0),
    }
    for name, scores in matrices.items():
        expected = dense_reference(scores, real_split.train, real_split.test, users, movies, ks)
        assert evaluate_scores(scores, real_split.train, real_split.test, users, movies, ks) == expected, name
    popular = baselines.PopularityScorer(real_split.train, users, movies)
    assert evaluate(popular, real_split.train, real_split.test, users, movies, ks, user_batch=100) == dense_reference(
        matrices["most popular"], real_split.train, real_split.test, users, movies, ks
    )
    towers = evaluate(model, real_split.train, real_split.test, users, movies, ks, user_batch=128)
    from_matrix = dense_reference(matrices["model"], real_split.train, real_split.test, users, movies, ks)
    for k in ks:  # the towers' positives are row-wise sums: one rounding tie apart at most
        assert towers["hit_rate_filtered"][k] == pytest.approx(from_matrix["hit_rate_filtered"][k], abs=2e-4)
    assert towers["ranking"] == pytest.approx(from_matrix["ranking"], abs=1e-6)
