"""I-AutoRec and GLocal-K: masked training, early stopping, determinism, fallbacks for unseen ids."""

import numpy as np
import pytest

from tests.conftest import synthetic_movielens
from tests.test_bayesian_mf import planted, rmse
from twotower_utils.models.autorec import GLocalK, IAutoRec, _matrices


def test_matrices_mask_only_observed_entries():
    train, _ = planted(num_users=5, num_movies=6, seed=0)
    ratings, mask = _matrices(train, 5, 6)
    assert ratings.shape == mask.shape == (7, 6)
    assert mask.sum() == len(train)
    assert np.all(ratings[mask == 0] == 0)
    np.testing.assert_allclose(ratings[train["movie_idx"], train["user_idx"]], train["user_rating"], rtol=1e-6)


def test_autorec_beats_the_mean_and_stops_early():
    train, held_out = planted(seed=4)
    model = IAutoRec(hidden=32, l2=1.0, learning_rate=0.01, epochs=400, patience=3, eval_every=10, seed=0)
    model.fit(train, 40, 50, validation=held_out)
    mean = train["user_rating"].mean()
    assert rmse(model.predict_frame(held_out), held_out) < 0.8 * rmse(np.full(len(held_out), mean), held_out)
    rmses = [h["validation_rmse"] for h in model.history]
    assert model.history[rmses.index(min(rmses))]["epoch"] == model.best_epoch
    assert model.history[-1]["epoch"] <= 400


def test_autorec_loss_ignores_unobserved_entries():
    """The reconstruction is fitted to observed entries only: an unobserved entry's value in the matrix (0) is
    not pulled towards, so predictions for held-out pairs stay on the rating scale's middle, far from 0."""
    train, held_out = planted(seed=5)
    model = IAutoRec(hidden=16, l2=1.0, learning_rate=0.01, epochs=150, eval_every=50, seed=0).fit(train, 40, 50)
    raw = model.reconstruction[held_out["movie_idx"], held_out["user_idx"]]
    assert raw.mean() > 2.0


def test_autorec_deterministic_for_a_seed():
    train, held_out = planted(seed=6)

    def fitted(seed):
        return IAutoRec(hidden=8, epochs=20, eval_every=10, seed=seed).fit(train, 40, 50).predict_frame(held_out)

    np.testing.assert_array_equal(fitted(3), fitted(3))
    assert not np.array_equal(fitted(3), fitted(4))


def test_unseen_ids_fall_back_to_biases():
    train, _ = planted(num_users=10, num_movies=12, seed=7)
    model = IAutoRec(hidden=8, epochs=10, eval_every=5, seed=0).fit(train, 12, 14)
    users, movies = np.array([11, 12, 1, 99]), np.array([1, 13, 14, 1])
    np.testing.assert_allclose(
        model.predict(users[:3], movies[:3]),
        np.clip(model.fallback.predict_ratings(users[:3], movies[:3]), 1, 5),
    )
    assert 1 <= model.predict(users[3:], movies[3:])[0] <= 5  # an id beyond the table: the mean + other bias


def test_glocal_k_pretrains_finetunes_and_improves():
    train, held_out = planted(seed=8)
    model = GLocalK(hidden=16, kernel_dim=3, lambda_2=1.0, pretrain_epochs=4, finetune_epochs=4, patience=2, seed=0)
    model.fit(train, 40, 50, validation=held_out)
    assert len(model.pretrain_history) == 4 and 1 <= len(model.history) <= 4
    mean = train["user_rating"].mean()
    assert rmse(model.predict_frame(held_out), held_out) < 0.9 * rmse(np.full(len(held_out), mean), held_out)
    again = GLocalK(hidden=16, kernel_dim=3, lambda_2=1.0, pretrain_epochs=4, finetune_epochs=4, patience=2, seed=0)
    np.testing.assert_allclose(
        again.fit(train, 40, 50, validation=held_out).predict_frame(held_out), model.predict_frame(held_out), atol=1e-5
    )


def test_synthetic_movielens_smoke():
    data = synthetic_movielens()
    model = IAutoRec(hidden=4, epochs=5, eval_every=5).fit(data.ratings, data.num_users, data.num_movies)
    predicted = model.predict_frame(data.ratings)
    assert predicted.shape == (len(data.ratings),) and np.all((predicted >= 1) & (predicted <= 5))


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        IAutoRec(hidden=0)
    with pytest.raises(ValueError):
        GLocalK(patience=0)
    with pytest.raises(ValueError, match="fit"):
        IAutoRec().predict([1], [1])


def test_glocal_k_keeps_the_pretrained_network_when_fine_tuning_never_beats_it():
    train, held_out = planted(seed=9)
    pretrained_only = GLocalK(hidden=16, kernel_dim=3, lambda_2=1.0, pretrain_epochs=4, finetune_epochs=0, seed=0)
    pretrained_only.fit(train, 40, 50, validation=held_out)
    assert pretrained_only.best_epoch == 0 and pretrained_only.history == []
    model = GLocalK(hidden=16, kernel_dim=3, lambda_2=1.0, pretrain_epochs=4, finetune_epochs=2, patience=2, seed=0)
    model.fit(train, 40, 50, validation=held_out)
    best = min([h["validation_rmse"] for h in model.history] + [model.pretrained_validation_rmse])
    assert rmse(model.predict_frame(held_out), held_out) == pytest.approx(best, abs=1e-6)
    np.testing.assert_allclose(pretrained_only.pretrained_validation_rmse, model.pretrained_validation_rmse, atol=1e-6)
