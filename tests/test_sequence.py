"""Notebook 10's machinery (experiments.sequence): temporal protocols, validation, baselines, unseen users."""

import numpy as np
import pytest

from tests.conftest import synthetic_movielens
from twotower_utils import presets
from twotower_utils.experiments import sequence as sq


@pytest.fixture(scope="module")
def data():
    return synthetic_movielens(num_users=24, num_movies=40, per_user=10, seed=2)


def tiny_tower(**changes):
    return sq.sequence_config(
        **{"embedding_dim": 8, "epochs": 2, "batch_size": 64, "history_length": 4, "user_tower": "mean", **changes}
    )


def test_validation_is_each_users_last_training_ratings_never_test(data):
    for protocol, per_user in (("leave_one_out", 1), ("leave_latest", 2)):
        split = sq.protocol_split(data, protocol)
        validation = sq.validation_for(split, protocol)
        assert (validation.test.groupby("user_idx").size() == per_user).all()
        test_pairs = set(zip(split.test.user_idx, split.test.movie_idx, strict=True))
        assert not test_pairs & set(zip(validation.test.user_idx, validation.test.movie_idx, strict=True))
        last_train = validation.train.groupby("user_idx")["timestamp"].max()
        assert (validation.test.groupby("user_idx")["timestamp"].min() >= last_train).all()
    with pytest.raises(ValueError, match="protocol must be one of"):
        sq.protocol_split(data, "random")


def test_a_protocol_scores_baselines_and_towers_with_the_same_measures(data):
    found = sq.run_protocol(data, "leave_one_out", {"mean": tiny_tower()}, seeds=[1, 2], log=lambda _: None)
    runs = found["runs"]
    assert len(runs["mean"]) == 2 and all(len(v) == 1 for k, v in runs.items() if k != "mean")
    assert {name.split(" (")[0] for name in runs} == {
        "most popular",
        "EASE",
        "last item",
        "recency-weighted EASE",
        "mean",
    }
    for rows in runs.values():
        for row in rows:
            assert 0 <= row["HR@10"] <= row["HR@100"] <= 1 and 0 <= row["NDCG@10"] <= row["HR@10"] + 1e-12
    summary = sq.summaries(runs)["mean"]
    assert summary["HR@10"]["mean"] == pytest.approx(np.mean([r["HR@10"] for r in runs["mean"]]))
    # leave-one-out: one test rating per user, so NDCG@10 is 1 / log2(1 + rank) of that rating when it is a hit
    recency = next(v for k, v in runs.items() if k.startswith("recency"))[0]
    chosen = found["choices"]["recency"]
    assert found["choices"]["recency_validation"] == max(row["HR@10"] for row in found["choices"]["recency_grid"])
    assert set(chosen) == {"lambda", "a", "tau"} and 0 <= recency["NDCG@10"] <= recency["HR@10"]


def test_unseen_users_are_scored_from_earlier_test_ratings_only(data):
    queries = sq.unseen_queries(data, 0.5)
    assert 0 < queries["share"] <= 1
    unseen, histories = queries["unseen"], queries["histories"]
    assert not set(unseen.user_idx) & set(queries["split"].train.user_idx)
    for row, history, excluded in zip(unseen.itertuples(), histories, queries["exclude"], strict=True):
        earlier = set(unseen[(unseen.user_idx == row.user_idx) & (unseen.timestamp < row.timestamp)].movie_idx)
        assert set(history[history > 0]) == earlier == set(np.flatnonzero(excluded))
        assert row.movie_idx not in earlier
    choices = {"ease_lambda": 10.0, "recency": {"lambda": 10.0, "a": 3.0, "tau": 2.0}}
    found = sq.run_unseen(data, tiny_tower(use_user_id=True), [1], choices, 0.5)
    name = "mean, L 4"  # the user id is dropped: these users have none
    assert set(found["runs"]) >= {name, "most popular"} and found["test"] == len(unseen)
    protocol = sq.run_protocol(data, "leave_one_out", {"mean, L 4": tiny_tower()}, [1, 2], log=lambda _: None)
    verdict = sq.verdict({"leave_one_out": protocol}, found)
    assert verdict["unseen users: most popular, HR@10"] == found["runs"]["most popular"][0]["HR@10"]
    assert verdict["unseen users: mean, L 4, HR@10 (mean)"] == found["runs"][name][0]["HR@10"]
    recency = next(v for k, v in protocol["runs"].items() if k.startswith("recency"))[0]["HR@10"]
    beats = min(r["HR@10"] for r in protocol["runs"][name]) > recency
    assert verdict["leave_one_out: the tower beats recency-weighted EASE on every seed"] == beats


def test_choose_takes_the_best_tower_then_its_best_length_and_epoch():
    report = {
        "leave_one_out": {
            "towers": {"gru, L 50": {"changes": {"user_tower": "gru"}, "curve": [0.1, 0.3]}},
            "best_tower": "gru, L 50",
            "lengths": {"10": [0.2, 0.25, 0.24], "50": [0.1, 0.3], "100": [0.3, 0.2]},
        }
    }
    chosen = sq.choose(report)["leave_one_out"]
    assert chosen == {"changes": {"user_tower": "gru"}, "history_length": 50, "epochs": 2, "validation": 0.3}
    config = presets.sequence_model("leave_one_out", epochs=1)
    chosen = presets.read_chosen("sequence")["leave_one_out"]
    assert config.epochs == 1 and config.model.user_tower.to_dict() == chosen["user_tower"]
    assert config.model.negatives == presets.sequence_shared()["negatives"]


def test_the_choices_written_to_the_presets_build_the_towers(tmp_path):
    found = {
        "leave_one_out": {
            "baselines": {
                "ease_lambda": 50.0,
                "ease_validation": 0.18,
                "recency": {"lambda": 200.0, "a": 10.0, "tau": 10.0},
                "recency_validation": 0.23,
            },
            "towers": {
                "sasrec (1 block), L 50 + user id": {
                    "changes": {"user_tower": "sasrec", "use_user_id": True},
                    "curve": [0.1, 0.2],
                }
            },
            "best_tower": "sasrec (1 block), L 50 + user id",
            "lengths": {50: [0.1, 0.2], 25: [0.25, 0.2]},
        }
    }
    choices, validation = sq.presets_choices(found, sq.choose(found))
    shared = presets.read_chosen("sequence")
    presets.write("sequence", {**shared, **choices}, command="test", folds=1, validation=validation, directory=tmp_path)
    config = presets.sequence_model("leave_one_out", directory=tmp_path)
    assert sq.tower_name(config) == "sasrec (1 block), L 25 + user id" and config.epochs == 1
    assert presets.sequence_baselines("leave_one_out", tmp_path)["recency"] == {"lambda": 200.0, "a": 10.0, "tau": 10.0}
    assert validation["leave_one_out"]["lengths"] == {"50": 0.2, "25": 0.25}


def test_length_curve_and_its_plot(data, tmp_path):
    curve = sq.length_curve(data, "leave_one_out", tiny_tower(epochs=1), [1, 3])
    assert list(curve["L"]) == [1, 3] and curve[["tower", sq.RECENCY_EASE]].to_numpy().max() <= 1
    sq.plot_length_curve(curve, "mean", "tiny").savefig(tmp_path / "curve.png")
    assert (
        sq.tower_name(tiny_tower(user_tower="sasrec", blocks=2, use_user_id=True)) == "sasrec (2 blocks), L 4 + user id"
    )


def test_the_command_line_refuses_bad_epochs(capsys):
    with pytest.raises(SystemExit):
        sq.main(["--epochs", "0"])
    assert "--epochs must be from 1 to 200" in capsys.readouterr().err
