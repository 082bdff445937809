"""Notebook 09's machinery (experiments.sequence): temporal protocols, validation, baselines, towers trained
SASRec's way and their blends, unseen users."""

import dataclasses

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


TINY = {"L": 4, "blocks": 1, "dropout": 0.0, "dim": 8}
TRAINING = {"max_epochs": 2, "patience": 1, "learning_rate": 0.01, "batch_size": 16, "epoch_log": lambda _: None}


def test_a_protocol_scores_baselines_towers_blends_and_reranked_blends_with_the_same_measures(data):
    found = sq.compare_protocol(
        data,
        "leave_one_out",
        {"sasrec": [TINY, {**TINY, "L": 2}]},
        [1, 2],
        rerank_depths=(10, 20),
        log=lambda _: None,
        **TRAINING,
    )
    runs = found["runs"]
    tower, blended = sq.next_item_name("sasrec", found["towers"]["sasrec"]["setting"]), sq.blend_name("sasrec")
    reranked = sq.rerank_name("sasrec")
    assert len(runs[tower]) == len(runs[blended]) == len(runs[reranked]) == 2
    assert all(len(v) == 1 for k, v in runs.items() if k not in (tower, blended, reranked))
    assert {name.split(" (")[0] for name in runs} == {
        "most popular",
        "EASE",
        "last item",
        "recency-weighted EASE",
        "sasrec all positions",
        "blend: sasrec + recency-weighted EASE",
        "sasrec + recency-weighted EASE, learned re-ranker",
    }
    assert all(set(row) == set(runs[tower][0]) for row in runs[reranked])
    # the re-ranker's N and kind are chosen on validation's halves among every pair tried; its seconds add to the
    # tower's training
    for detail, tower_row, row in zip(found["towers"]["sasrec"]["seeds"], runs[tower], runs[reranked], strict=True):
        chosen = detail["reranker"]
        tried = {(t["N"], t["ranker"]): t["HR@10"] for t in chosen["tried"]}
        assert set(tried) == {(n, r) for n in (10, 20) for r in sq.RERANKERS}
        assert chosen["validation"] == tried[(chosen["n"], chosen["ranker"])] == max(tried.values())
        assert 0 <= chosen["stage_one"] <= 1 and "movie popularity, log(1 + n)" in chosen["names"]
        assert not any(name.startswith("user activity") for name in chosen["names"])
        assert row["seconds"] == pytest.approx(tower_row["seconds"] + chosen["seconds"])
    for rows in runs.values():
        for row in rows:
            assert 0 <= row["HR@10"] <= row["HR@100"] <= 1 and 0 <= row["NDCG@10"] <= row["HR@10"] + 1e-12
            assert row["seconds"] >= 0
    # the setting is chosen on the first seed's validation among the grid; each seed has its curve and alpha
    towers = found["towers"]["sasrec"]
    assert len(towers["grid"]) == 2 and towers["setting"] in (TINY, {**TINY, "L": 2})
    for detail in towers["seeds"]:
        assert detail["alpha"] in sq.ALPHAS and 1 <= detail["best_epoch"] <= detail["epochs"] <= 2
        assert detail["alpha"] == max(detail["alpha_validation"], key=lambda a: (detail["alpha_validation"][a], a))
    summary = sq.summaries(runs)[tower]
    assert summary["HR@10"]["mean"] == pytest.approx(np.mean([r["HR@10"] for r in runs[tower]]))
    assert set(summary) == {"HR@10", "NDCG@10", "HR@100", "seconds"}
    recency = next(v for k, v in runs.items() if k.startswith("recency"))[0]
    chosen = found["choices"]["recency"]
    assert found["choices"]["recency_validation"] == max(row["HR@10"] for row in found["choices"]["recency_grid"])
    assert set(chosen) == {"lambda", "a", "tau"} and 0 <= recency["NDCG@10"] <= recency["HR@10"]


def test_the_blend_standardises_both_scores_per_user():
    rng = np.random.default_rng(0)
    tower, ease = rng.normal(size=(3, 6)), 100 * rng.normal(size=(3, 6))
    z = sq.standardised(tower)
    assert (z[:, 0] == 0).all() and np.allclose(z[:, 1:].mean(axis=1), 0) and np.allclose(z[:, 1:].std(axis=1), 1)
    np.testing.assert_allclose(sq.blend(tower, ease, 1.0), z)
    np.testing.assert_allclose(sq.blend(tower, ease, 0.0), sq.standardised(ease))


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
    found = sq.compare_unseen(data, {"gru": [TINY]}, [1], choices, train_fraction=0.5, rerank_depths=(10,), **TRAINING)
    name = sq.next_item_name("gru", TINY)
    assert set(found["runs"]) >= {name, "most popular", sq.blend_name("gru"), sq.rerank_name("gru")}
    assert found["test"] == len(unseen) and found["towers"]["gru"]["seeds"][0]["reranker"]["n"] == 10
    protocol = sq.compare_protocol(
        data, "leave_one_out", {"gru": [TINY]}, [1, 2], choices=choices, rerank_depths=(10,), **TRAINING
    )
    side = sq.head_to_head({"leave_one_out": protocol}, found)
    assert side.loc["unseen users: gru", "most popular"] == found["runs"]["most popular"][0]["HR@10"]
    assert side.loc["unseen users: gru", "tower"] == found["runs"][name][0]["HR@10"]
    assert side.loc["unseen users: gru", "re-ranked"] == found["runs"][sq.rerank_name("gru")][0]["HR@10"]
    recency = next(v for k, v in protocol["runs"].items() if k.startswith("recency"))[0]["HR@10"]
    row = side.loc["leave_one_out: gru"]
    assert row["tower - recency-weighted EASE"] == pytest.approx(row["tower"] - recency)
    assert row["tower"] == pytest.approx(np.mean([r["HR@10"] for r in protocol["runs"][name]]))
    assert row["re-ranked - recency-weighted EASE"] == pytest.approx(row["re-ranked"] - recency)


def test_the_reranked_matrix_puts_the_candidates_on_top_in_the_rerankers_order():
    stage_one = np.array([[0.0, 0, 0, 0, 0, 0], [0.0, 5, 4, 3, 2, 1]])
    ids = np.array([[1, 2, 3], [1, 2, 3]])
    scores = sq.reranked(ids, np.array([[0.0, 0, 0], [0.1, 0.3, 0.2]]), stage_one)
    assert list(np.argsort(-scores[1, 1:], kind="stable") + 1) == [2, 3, 1, 4, 5]  # re-ranked top 3, then stage one
    assert np.isfinite(scores).all()


def planted(data, movie_of):
    """``data`` with each user's latest rating (the leave-one-out test rating) moved to ``movie_of(user)``."""
    ratings = data.ratings.copy()
    latest = ratings.groupby("user_idx")["timestamp"].idxmax()
    ratings.loc[latest, "movie_idx"] = [movie_of(u) for u in ratings.loc[latest, "user_idx"]]
    return dataclasses.replace(data, ratings=ratings)


def test_the_learned_reranker_reads_training_and_validation_only_and_is_deterministic(data, monkeypatch):
    """Its features come from the training ratings (validation's for the choice, the protocol's for test), its
    labels from validation; moving every test rating to a movie of another taste group changes no choice, and
    the same seed gives the same choices and validation numbers."""
    frames, held_out = [], []
    features, labels = sq.reranking.candidate_features, sq.reranking.candidate_labels
    monkeypatch.setattr(
        sq.reranking, "candidate_features", lambda ids, s, train: frames.append(train) or features(ids, s, train)
    )
    monkeypatch.setattr(
        sq.reranking, "candidate_labels", lambda ids, frame, m: held_out.append(frame) or labels(ids, frame, m)
    )
    choices = {"ease_lambda": 10.0, "recency": {"lambda": 10.0, "a": 3.0, "tau": 2.0}}

    def run(on):
        frames.clear(), held_out.clear()
        found = sq.compare_protocol(
            on, "leave_one_out", {"gru": [TINY]}, [1], choices=choices, rerank_depths=(10,), **TRAINING
        )
        split = sq.protocol_split(on, "leave_one_out")
        validation = sq.validation_for(split, "leave_one_out")
        test_pairs = set(zip(split.test.user_idx, split.test.movie_idx, strict=True))
        for frame in frames:  # the validation's training part (choice) or the protocol's (test), never test
            assert not test_pairs & set(zip(frame.user_idx, frame.movie_idx, strict=True))
            assert len(frame) in (len(validation.train), len(split.train))
        assert {len(f) for f in frames} == {len(validation.train), len(split.train)}
        assert all(frame.equals(validation.test) for frame in held_out) and held_out
        chosen = found["towers"]["gru"]["seeds"][0]["reranker"]
        return {k: chosen[k] for k in ("n", "ranker", "validation", "stage_one", "tried")}, found

    clean, found = run(data)
    again, _ = run(data)
    assert again == clean  # deterministic for a seed
    # every test rating moved to a movie of another taste group (users like movies m with m % 4 == user % 4)
    other = planted(
        data, lambda user: int(next(m for m in range(1, data.num_movies + 1) if (m - 1) % 4 != (user - 1) % 4))
    )
    moved, found_moved = run(other)
    assert moved == clean
    name = sq.rerank_name("gru")
    assert found_moved["runs"][name][0]["HR@10"] != found["runs"][name][0]["HR@10"]  # the plant reached test


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
    choices = {"ease_lambda": 10.0, "recency": {"lambda": 10.0, "a": 3.0, "tau": 2.0}}
    curve = sq.length_curve(data, "leave_one_out", "sasrec", TINY, [1, 3], choices, 0, **TRAINING)
    assert list(curve["L"]) == [1, 3] and curve[["tower", sq.RECENCY_EASE]].to_numpy().max() <= 1
    sq.plot_length_curve(curve, "sasrec", "tiny").savefig(tmp_path / "curve.png")
    assert (
        sq.tower_name(tiny_tower(user_tower="sasrec", blocks=2, use_user_id=True)) == "sasrec (2 blocks), L 4 + user id"
    )
    assert sq.parse_setting("L=50,blocks=1") == {"L": 50, "blocks": 1, "dropout": 0.2, "dim": 64}
    assert sq.describe(TINY) == "L 4, 1 block, d 8, dropout 0"


def test_the_command_line_refuses_bad_epochs(capsys):
    with pytest.raises(SystemExit):
        sq.main(["--epochs", "0"])
    assert "--epochs must be from 1 to 200" in capsys.readouterr().err
