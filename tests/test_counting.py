"""The one counting core: hand-made towers and score matrices, ties, exclusion, FactorizedTopK."""

import numpy as np
import pytest

from tests.conftest import HAND_SCORES, HAND_TEST, HAND_TRAIN, pairs_frame
from twotower_utils.evaluation.counting import (
    candidates_beating,
    factorized_topk_reference,
    filtered_topk_accuracy,
    hit_rates_from_counts,
    metric_name,
    rank_users,
    seen_matrix,
    seen_test_rows,
    topk_accuracy,
)
from twotower_utils.evaluation.metrics import model_scores
from twotower_utils.training import build_for, train


class FixedTower:
    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    def embed_all(self):
        import tensorflow as tf

        return tf.constant(self.table)


class FixedModel:
    """A 'model' with hand-made embedding tables (row 0 = out-of-vocabulary)."""

    def __init__(self, users, movies):
        self.user_tower, self.movie_tower = FixedTower(users), FixedTower(movies)

    def query_table(self, history_frame=None):
        return self.user_tower.embed_all()


@pytest.fixture
def hand_model():
    # 1-d embeddings: the score of user 1 for movie m is the movie's value
    users = [[0.0], [1.0], [-1.0]]
    movies = [[0.0], [3.0], [1.0], [2.0], [2.0]]  # movies 1..4 score 3, 1, 2, 2 for user 1
    return FixedModel(users, movies)


def test_counts_and_ties_on_a_hand_made_case(hand_model):
    counts = candidates_beating(hand_model, pairs_frame([(1, 1), (1, 3), (1, 4), (1, 2), (2, 2)]))
    # movie 3 ties with movie 4: neither beats the other (ties count as hits, as in FactorizedTopK)
    assert counts.tolist() == [0, 1, 1, 3, 0]
    rates = hit_rates_from_counts(counts, (1, 2, 4))
    assert rates == {1: 0.4, 2: 0.8, 4: 1.0}


def test_excluding_seen_movies_and_a_seen_true_movie_is_a_miss_at_every_k(hand_model):
    seen = seen_matrix(pairs_frame([(1, 1), (1, 2)]), num_users=2, num_movies=4)
    # user 1 saw movies 1 and 2; for a test on movie 3, movie 1 no longer beats it.  A test on movie 2, which
    # user 1 saw, is in no filtered list: it counts the whole catalogue (4), unfiltered it is ranked as usual.
    test = pairs_frame([(1, 3), (1, 2)])
    assert candidates_beating(hand_model, test, exclude=seen).tolist() == [0, 4]
    assert candidates_beating(hand_model, test, exclude=seen, tfrs_compatible=True).tolist() == [0, 4]
    assert topk_accuracy(hand_model, test, (1, 4), exclude=seen) == {1: 0.5, 4: 0.5}
    ranked = rank_users(hand_model, np.array([1]), test, seen, unfiltered=True, first_ranks=True)
    assert ranked.beating.tolist() == [0, 4] and ranked.beating_unfiltered.tolist() == [1, 3]
    assert ranked.first_rank.tolist() == [1]
    np.testing.assert_array_equal(seen_test_rows(pairs_frame([(1, 1), (1, 2)]), test), [False, True])


def test_a_user_with_no_hits(hand_model):
    assert topk_accuracy(hand_model, pairs_frame([(1, 2)]), ks=(1, 2, 3)) == {1: 0.0, 2: 0.0, 3: 0.0}


def test_empty_frame_gives_nan(hand_model):
    rates = topk_accuracy(hand_model, pairs_frame([]).astype(int), ks=(1,))
    assert np.isnan(rates[1])


def test_fast_evaluator_equals_factorized_topk(tiny_data, tiny_split, tiny_config):
    model = train(tiny_config, tiny_data, tiny_split, verbose=0, curves=False).model
    for frame in (tiny_split.test, tiny_split.train):
        fast = topk_accuracy(model, frame, tiny_config.ks, batch_size=13, tfrs_compatible=True)
        reference = factorized_topk_reference(model, frame, batch_size=13)
        assert set(reference) == set(tiny_config.ks)
        for k in tiny_config.ks:
            assert fast[k] == pytest.approx(reference[k], abs=1e-6)
        # without TFRS's self-rounding artefact a movie can only rank higher, never lower
        exact = candidates_beating(model, frame, batch_size=13)
        compatible = candidates_beating(model, frame, batch_size=13, tfrs_compatible=True)
        assert np.all((compatible - exact >= 0) & (compatible - exact <= 1))
    assert 0 < fast[10] <= 1


def test_batch_size_does_not_change_the_result(tiny_data, tiny_split, tiny_config):
    model = build_for(tiny_config, tiny_data)
    one = candidates_beating(model, tiny_split.train, batch_size=7)
    two = candidates_beating(model, tiny_split.train, batch_size=1000)
    np.testing.assert_array_equal(one, two)


def test_metric_names_match_tfrs():
    assert metric_name(5) == "factorized_top_k/top_5_categorical_accuracy"
    assert metric_name(5, "val_") == "val_factorized_top_k/top_5_categorical_accuracy"


def test_a_score_matrix_goes_through_the_same_core():
    counts = candidates_beating(HAND_SCORES, HAND_TEST)
    assert list(counts) == [2, 4, 0]  # ties never beat: user 2's movie 3 is tied first
    seen = seen_matrix(HAND_TRAIN, 2, 5)
    assert list(candidates_beating(HAND_SCORES, HAND_TEST, exclude=seen)) == [1, 3, 0]
    assert topk_accuracy(HAND_SCORES, HAND_TEST, [1, 2, 5]) == {1: 1 / 3, 2: 1 / 3, 5: 1.0}
    assert topk_accuracy(HAND_SCORES, HAND_TEST, [2], exclude=seen) == {2: 2 / 3}
    assert filtered_topk_accuracy(HAND_SCORES, HAND_TRAIN, HAND_TEST, [2]) == {2: 2 / 3}


def test_a_models_score_matrix_agrees_with_its_towers(tiny_data, tiny_split, tiny_config):
    from twotower_utils.training import build_for

    model = build_for(tiny_config, tiny_data)
    scores = model_scores(model)
    seen = seen_matrix(tiny_split.train, tiny_data.num_users, tiny_data.num_movies)
    expected = candidates_beating(model, tiny_split.test, exclude=seen)
    got = candidates_beating(scores, tiny_split.test, exclude=seen)
    assert np.abs(expected - got).max() <= 1  # one rounding tie at most
    assert np.mean(expected == got) > 0.95


def test_the_same_core_for_towers_and_their_score_matrix(hand_model):
    test = pairs_frame([(1, 1), (1, 3), (1, 4), (1, 2), (2, 2)])
    scores = hand_model.user_tower.table @ hand_model.movie_tower.table.T
    seen = seen_matrix(pairs_frame([(1, 3)]), 2, 4)
    for exclude in (None, seen):
        np.testing.assert_array_equal(
            candidates_beating(hand_model, test, exclude=exclude), candidates_beating(scores, test, exclude=exclude)
        )
    assert filtered_topk_accuracy(hand_model, pairs_frame([(1, 3)]), test, [1, 2]) == topk_accuracy(
        scores, test, [1, 2], exclude=seen
    )


def test_something_that_cannot_score_is_one_clear_error():
    with pytest.raises(TypeError, match="pass a two-tower model or a score matrix"):
        topk_accuracy([[1.0]], pairs_frame([(1, 1)]))


def test_sparse_seen_movies_and_capped_counts_give_the_dense_numbers(hand_model):
    from twotower_utils.evaluation.counting import SeenMovies

    test = pairs_frame([(1, 1), (1, 3), (1, 4), (1, 2), (2, 2)])
    train = pairs_frame([(1, 1), (1, 3), (2, 4)])
    dense, sparse = seen_matrix(train, 2, 4), SeenMovies.from_frame(train, 2, 4)
    for tfrs_compatible in (False, True):
        np.testing.assert_array_equal(
            candidates_beating(hand_model, test, exclude=dense, tfrs_compatible=tfrs_compatible),
            candidates_beating(hand_model, test, exclude=sparse, tfrs_compatible=tfrs_compatible),
        )
    full = candidates_beating(HAND_SCORES, HAND_TEST)
    capped = candidates_beating(HAND_SCORES, HAND_TEST, at_most=2)
    assert list(full) == [2, 4, 0] and list(np.minimum(capped, 2)) == [2, 2, 0]  # exact below 2, else >= 2
    assert np.all(capped[full >= 2] >= 2)
    with pytest.raises(ValueError, match="exclude covers"):
        candidates_beating(HAND_SCORES, HAND_TEST, exclude=SeenMovies.from_frame(HAND_TRAIN, 2, 4))


def list_protocol_hit_rates(scores, train, test, ks, filtered=True):
    """Hit rate @k the way a user sees it: each test user's top-k list built explicitly (a stable argsort of
    the row, best first, ties: the lower movie id first; filtered: the user's training movies removed first),
    and a test rating is a hit when its movie is in its user's list."""
    users, row_of = np.unique(test["user_idx"].to_numpy(), return_inverse=True)
    movies = test["movie_idx"].to_numpy()
    seen = seen_matrix(train, scores.shape[0] - 1, scores.shape[1] - 1)[users] if filtered else None
    order = np.argsort(-scores[users, 1:], axis=1, kind="stable") + 1
    found = {}
    for k in ks:
        listed = np.zeros((len(users), scores.shape[1]), dtype=bool)
        for row, ranking in enumerate(order):
            shown = ranking[~seen[row, ranking]] if filtered else ranking
            listed[row, shown[:k]] = True
        found[k] = float(np.mean(listed[row_of, movies]))
    return found


@pytest.mark.parametrize(
    ("split_name", "seen_rows"), [("random", 109), ("temporal", 5), ("leave_latest", 56)], ids=lambda v: str(v)
)
def test_the_core_counts_exactly_what_a_filtered_list_shows_on_movielens_100k(real_data, split_name, seen_rows):
    """MovieLens 100K keys movies by title (1,682 ids, 1,664 titles): a test rating can be of a title the user
    rated in training under another id.  No filtered list shows it, so the core counts it a miss, and the core's
    filtered hit rate is then the list protocol's exactly, for the headline ``metrics.evaluate`` of a scorer and
    ``filtered_topk_accuracy`` of a score matrix; unfiltered lists show it, and count it, as any other movie."""
    from twotower_utils.data.splits import make_split
    from twotower_utils.evaluation import baselines
    from twotower_utils.evaluation.metrics import evaluate

    split = make_split(real_data, split_name, seed=42)
    users, movies = real_data.num_users, real_data.num_movies
    rows = seen_test_rows(split.train, split.test)
    assert rows.sum() == seen_rows
    again = split.test.merge(split.train[["user_idx", "movie_idx"]].drop_duplicates(), on=["user_idx", "movie_idx"])
    assert len(again) == seen_rows
    repeated = split.test[rows].merge(split.train, on=["user_idx", "movie_idx"], suffixes=("", "_train"))
    assert (repeated["movie_id"] != repeated["movie_id_train"]).all()  # the same title under another movie id
    ks = (1, 10, 50)
    popular = baselines.popularity_scores(split.train, users, movies)
    result = evaluate(
        baselines.PopularityScorer(split.train, users, movies), split.train, split.test, users, movies, ks
    )
    assert result["hit_rate_filtered"] == list_protocol_hit_rates(popular, split.train, split.test, ks)
    assert result["hit_rate"] == list_protocol_hit_rates(popular, split.train, split.test, ks, filtered=False)
    noise = baselines.random_scores(users, movies, seed=1)
    assert filtered_topk_accuracy(noise, split.train, split.test, ks) == list_protocol_hit_rates(
        noise, split.train, split.test, ks
    )
