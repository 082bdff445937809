import pytest

from twotower_utils.serving.recommend import brute_force_index, recommend
from twotower_utils.training import train


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_split, tiny_config):
    return train(tiny_config, tiny_data, tiny_split, verbose=0, curves=False).model


def test_recommend_ranks_and_excludes_seen(trained, tiny_data, tiny_split):
    users = ["u00", "u05"]
    recs = recommend(trained, tiny_data, users, k=4, exclude=tiny_split.train)
    assert recs.groupby("user_id")["rank"].apply(list).to_dict() == {u: [1, 2, 3, 4] for u in users}
    for user in users:
        seen = set(tiny_split.train.loc[tiny_split.train.user_id == user, "movie_title"])
        mine = recs[recs.user_id == user]
        assert not seen & set(mine.movie_title)
        assert mine["score"].is_monotonic_decreasing


def test_unknown_user_and_bad_k_are_clear_errors(trained, tiny_data):
    with pytest.raises(ValueError, match="unknown user id"):
        recommend(trained, tiny_data, ["nobody"])
    with pytest.raises(ValueError, match="k must be"):
        recommend(trained, tiny_data, ["u00"], k=0)


def test_brute_force_index_takes_raw_strings(trained, tiny_data):
    import tensorflow as tf

    index = brute_force_index(trained, tiny_data, k=3)
    _, titles = index(tf.constant(["u01"]))
    expected = recommend(trained, tiny_data, ["u01"], k=3)["movie_title"].tolist()
    assert [t.decode() for t in titles[0].numpy()] == expected


def test_recommend_in_user_batches_equals_the_full_score_matrix(trained, tiny_data, tiny_split):
    """Scoring only the requested users, one at a time, gives the lists and scores of the dense matrix."""
    import numpy as np

    from twotower_utils.data.movielens import lookup_ids
    from twotower_utils.evaluation.counting import seen_matrix
    from twotower_utils.evaluation.metrics import model_scores

    users = ["u03", "u00", "u03", "u17"]  # a repeated user too
    recs = recommend(trained, tiny_data, users, k=5, exclude=tiny_split.train, user_batch=1)
    scores = model_scores(trained).astype(np.float64)
    seen = seen_matrix(tiny_split.train, tiny_data.num_users, tiny_data.num_movies)
    for user_id in users:
        user = int(lookup_ids(tiny_data.user_vocabulary, [user_id])[0])
        row = np.where(seen[user, 1:], -np.inf, scores[user, 1:])
        best = np.argsort(-row, kind="stable")[:5]
        mine = recs[recs.user_id == user_id].head(5)
        assert mine["movie_title"].tolist() == [tiny_data.movie_vocabulary[m] for m in best]
        np.testing.assert_allclose(mine["score"].to_numpy(), row[best], atol=1e-6)  # float32 products
    assert len(recs) == 5 * len(users)
