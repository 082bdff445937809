"""The rating study: settings chosen on validation only, kept for later seeds, a blend fitted on validation, and
the refit on the whole training part (same choices and blend weights, members trained on more ratings)."""

import numpy as np
import pytest
from conftest import synthetic_movielens

from twotower_utils.data.splits import random_split
from twotower_utils.experiments import rating_study
from twotower_utils.models.autorec import GLocalK, IAutoRec

MODELS = ["biases", "time biases", "Bayesian MF"]


@pytest.fixture(scope="module")
def case():
    data = synthetic_movielens(num_users=40, num_movies=40, per_user=10)
    return data, random_split(data, seed=1, train_fraction=0.8)


@pytest.fixture(scope="module")
def both(case):
    data, split = case
    quiet = {"effort": "smoke", "validation": 0.2, "log": lambda _: None}
    return (
        rating_study.run_split(data, split, MODELS, [0, 1], refit=False, **quiet),
        rating_study.run_split(data, split, MODELS, [0, 1], refit=True, **quiet),
    )


def test_every_model_and_the_blend_are_scored_per_seed(both):
    found, _ = both
    assert set(found["runs"]) == {*MODELS, rating_study.BLEND}
    for name, runs in found["runs"].items():
        assert [r["seed"] for r in runs] == [0, 1], name
        assert all(0 < r["rmse"] < 4 and 0 < r["mae"] <= r["rmse"] for r in runs), name
    assert set(found["runs"][rating_study.BLEND][0]["weights"]) == {"intercept", *MODELS}
    table = rating_study.table(found["summary"])
    assert list(table["test RMSE"]) == sorted(table["test RMSE"])


def test_the_choice_is_made_on_validation_and_kept_for_later_seeds(case, both):
    found, _ = both
    data, split = case
    grid = rating_study.model_grid("smoke")
    for name in MODELS:
        assert found["chosen"][name] in grid[name][0]
    # the validation RMSE the choice was made on is the chosen setting's own, refitted or not
    _, refitted = both
    for name in MODELS:
        assert [r["validation_rmse"] for r in found["runs"][name]] == [
            r["validation_rmse"] for r in refitted["runs"][name]
        ]
    assert found["runs"][rating_study.BLEND][0]["weights"] == refitted["runs"][rating_study.BLEND][0]["weights"]


def test_the_refit_trains_again_on_the_whole_training_part(both):
    found, refitted = both
    assert refitted["refit"] and not found["refit"]
    assert all("refit_seconds" in r for runs in refitted["runs"].values() for r in runs if "fit_seconds" in r)
    # the biases fitted on more ratings predict the test differently; refitted on the same whole training part,
    # the deterministic biases give every seed the same test RMSE, where each seed's validation part differed
    plain, more = found["runs"]["biases"], refitted["runs"]["biases"]
    assert plain[0]["rmse"] != more[0]["rmse"]
    if found["chosen"]["biases"] == refitted["chosen"]["biases"]:
        assert more[0]["rmse"] == more[1]["rmse"]
    assert plain[0]["rmse"] != plain[1]["rmse"]


def test_the_same_seed_gives_the_same_numbers(case, both):
    data, split = case
    again = rating_study.run_split(data, split, MODELS, [0, 1], effort="smoke", validation=0.2, log=lambda _: None)

    def numbers(found):  # everything but the seconds
        return {
            n: [{k: v for k, v in r.items() if "seconds" not in k} for r in runs] for n, runs in found["runs"].items()
        }

    assert numbers(again) == numbers(both[0])


def test_refit_settings_fix_the_autoencoders_epochs():
    autorec, glocal = IAutoRec(epochs=50), GLocalK(finetune_epochs=30)
    autorec.best_epoch, glocal.best_epoch = 20, 0
    assert rating_study.refit_settings({"l2": 100.0, "epochs": 50}, autorec) == {"l2": 100.0, "epochs": 20}
    assert rating_study.refit_settings({"finetune_epochs": 30}, glocal) == {"finetune_epochs": 0}
    assert rating_study.refit_settings({"lam": 3.0}, object()) == {"lam": 3.0}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"models": ["no such model"]}, "unknown rating model"),
        ({"effort": "forever"}, "effort must be one of"),
        ({"validation": 1.5}, "validation must be a share"),
    ],
)
def test_bad_settings_are_one_clear_error(case, changes, message):
    data, split = case
    arguments = {"models": ["biases"], "seeds": [0], **changes}
    with pytest.raises(ValueError, match=message):
        rating_study.run_split(data, split, arguments.pop("models"), arguments.pop("seeds"), **arguments)


def test_rmse_and_mae_by_hand(case):
    data, split = case
    frame = split.test.head(4).copy()
    frame["user_rating"] = [1.0, 2.0, 3.0, 4.0]
    found = rating_study.rmse_mae(np.array([2.0, 2.0, 3.0, 2.0]), frame)
    assert found == {"rmse": pytest.approx(np.sqrt(5 / 4)), "mae": pytest.approx(3 / 4)}
