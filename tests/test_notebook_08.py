"""Notebook 08 (the ranking stage): the pieces it writes out in sight give the package's numbers (unit-level, on the
tiny synthetic data), and it runs headless in the series with small parameters (1 seed, 2 epochs) and records what
it should: the rating table with its baselines and published numbers, the ensemble, and the two-stage pipelines."""

import numpy as np
import pytest
import tensorflow as tf

from tests.test_notebook_pieces import run_in_sight
from twotower_utils import presets
from twotower_utils.evaluation import reranking
from twotower_utils.evaluation.baselines import ease_scores
from twotower_utils.evaluation.rating import predict_frame
from twotower_utils.experiments import ranking_stage as rk
from twotower_utils.training import train

MF = "MF (biases + dot product)"


def plain_config(seed: int = 7, epochs: int = 2):
    """The package's twin of the written-out model on the tiny data: biased MF with its penalties switched off."""
    return presets.rating_model(
        MF,
        seed=seed,
        epochs=epochs,
        embedding_dim=8,
        batch_size=16,
        learning_rate=0.05,
        l2_regularization=0.0,
        bias_l2=0.0,
    )


def test_08_rating_model_in_sight_trains_as_the_package(tiny_data, tiny_split):
    plain = plain_config()
    cell = run_in_sight("08", data=tiny_data, split=tiny_split, plain=plain)
    package_losses = []
    twin = train(
        plain, tiny_data, tiny_split, verbose=0, curves=False, callbacks=[cell["loss_logger"](package_losses)]
    ).model
    steps = plain.epochs * -(-len(tiny_split.train) // plain.batch_size)
    assert len(cell["mf_losses"]) == steps > 2
    assert cell["mf_losses"] == pytest.approx(package_losses, rel=1e-5)
    mf = cell["mf"]
    pairs = {"user_id": tiny_split.test["user_idx"].to_numpy(), "movie_title": tiny_split.test["movie_idx"].to_numpy()}
    np.testing.assert_allclose(mf(pairs).numpy(), predict_frame(twin, tiny_split.test), atol=1e-5)
    np.testing.assert_allclose(
        mf.user_vectors.embeddings.numpy(), twin.user_tower.embedding.embeddings.numpy(), atol=1e-5
    )


def test_08_rating_model_in_sight_starts_from_the_packages_tables(tiny_data, tiny_split):
    """Before any training the written-out model's tables are the package's at the same seed, and not at another."""
    plain = plain_config(epochs=1)
    cell = run_in_sight("08", data=tiny_data, split=tiny_split, plain=plain.replace(epochs=1))
    model_class = cell["RatingMF"]
    for seed, equal in ((plain.seed, True), (plain.seed + 1, False)):
        tf.keras.utils.set_random_seed(seed)
        mine = model_class(tiny_data.num_users, tiny_data.num_movies, 8, tiny_split.train["user_rating"].mean())
        mine({"user_id": tf.constant([0], tf.int64), "movie_title": tf.constant([0], tf.int64)})
        tf.keras.utils.set_random_seed(plain.seed)
        package = plain.model.build(tiny_data, tiny_split.train)
        same = np.array_equal(mine.movie_vectors.embeddings.numpy(), package.movie_tower.embedding.embeddings.numpy())
        assert same is equal, seed
    assert float(mine.mu.numpy()) == pytest.approx(float(package.global_bias.numpy()))


@pytest.mark.parametrize(("n", "w"), [(10, 0.3), (12, 0.0), (10, 1.0)])
def test_08_reranker_in_sight_gives_the_packages_top_10(tiny_data, tiny_split, n, w):
    cell = run_in_sight("08", data=tiny_data, split=tiny_split, plain=plain_config(epochs=1))
    rating_model = train(plain_config(epochs=1), tiny_data, tiny_split, verbose=0, curves=False).model
    stage_one = np.random.default_rng(5).normal(size=(tiny_data.num_users + 1, tiny_data.num_movies + 1))
    stage_one = stage_one.astype(np.float32)
    ease = ease_scores(tiny_split.train, tiny_data.num_users, tiny_data.num_movies, 10.0)
    stage = rk.StageInputs(stage_one, rating_model, ease, tiny_split, tiny_data)
    mine = cell["rerank_in_sight"](stage.retrieval, stage.seen, rating_model, n, w)
    ids = stage.candidates(n)
    blended = reranking.blend(reranking.gather(stage.retrieval, ids), stage.predicted_ratings(n), w)
    package = reranking.candidates(stage.pipeline(n, blended), None, 10)
    assert mine.shape == (tiny_data.num_users + 1, 10)
    np.testing.assert_array_equal(mine, package)
    if w == 0:  # stage one's own order
        np.testing.assert_array_equal(mine, ids[:, :10])
    assert not stage.seen[np.arange(len(mine))[:, None], mine].any()  # never a training movie


@pytest.mark.notebooks
def test_notebook_08_runs_headless_and_records_the_ranking_stage(series):
    tmp_path, metrics = series
    section = metrics["08_ranking_stage"]
    assert section["seeds"] == [42] and section["epochs"] == 2
    in_sight = section["rating_in_sight"]["test_rmse"]
    written, package = in_sight.values()
    assert written == pytest.approx(package, abs=1e-5)
    assert section["rating_in_sight"]["max_relative_loss_difference"] < 1e-4
    assert section["rerank_in_sight"]["lists_equal"] is True
    rating = {name: s["RMSE"]["mean"] for name, s in section["rating_summaries"].items()}
    # the NumPy baselines do not depend on epochs: the mean, ridge biases, ALS (0.906 measured on this split)
    assert rating["global mean"] == pytest.approx(1.1248, abs=0.001)
    assert rating["user + movie biases"] == pytest.approx(0.936, abs=0.003)
    assert rating["biased MF (ALS)"] == pytest.approx(0.906, abs=0.005)
    assert rating["biased MF (ALS)"] < rating["user + movie biases"] < rating["global mean"]
    for name, value in rating.items():  # two epochs are enough to beat predicting the mean
        assert name == "global mean" or value < 1.05, name
    ensemble = next(name for name in rating if name.startswith("ensemble"))
    assert len(section["ensemble_weights"][0]) == 1 + len(section["ensemble_members"])  # intercept + members
    assert rating[ensemble] <= min(rating[m] for m in section["ensemble_members"]) + 0.005
    assert section["best_rating_model"]["rmse"] == min(rating.values())
    assert {row["source"] for row in section["published"]} == {"reported", "measured here"}

    stages = {name: {c: v["mean"] for c, v in s.items()} for name, s in section["two_stage_summaries"].items()}
    stage_one = stages["stage one alone (best two-tower)"]
    by_rating = next(v for k, v in stages.items() if k.startswith("(a)"))
    # re-ranking by predicted rating alone trades hits for better-liked hits
    assert by_rating["HR@10 filtered"] < stage_one["HR@10 filtered"]
    assert by_rating["mean rating of hits"] > stage_one["mean rating of hits"]
    # the blend with weight 0 is stage one alone, for every N
    for row in section["sweep"]:
        if row["w"] == 0:
            assert row["HR@10 filtered"] == pytest.approx(stage_one["HR@10 filtered"]), row["N"]
    assert set(section["beats_stage_one"]) >= {"pipeline", "beats stage one on both", "... on every seed"}
    assert (tmp_path / "figures" / "08_tradeoff.png").exists()

    # like for like: the u1 rows (ridge biases need no epochs: 0.955 measured on u1.test), refitted, and a blend
    u1 = section["u1"]
    assert u1["split"] == "u1" and u1["refit"] is True and u1["effort"] == "smoke"
    u1_rmse = {name: row["rmse"] for name, row in u1["summary"].items()}
    assert set(u1_rmse) == {"biases", "time biases", "Bayesian timeMF", "blend (weights fitted on validation)"}
    assert u1_rmse["biases"] == pytest.approx(0.955, abs=0.003)
    assert u1_rmse["blend (weights fitted on validation)"] <= min(u1_rmse.values()) + 0.005
    # every signal: the three re-rankers against stage one, the same kept stage one as the two-stage table's
    signal_runs = section["every_signal"]["runs"]
    assert len(signal_runs) == 4
    assert signal_runs[rk.STAGE_ONE][0]["HR@10 filtered"] == pytest.approx(stage_one["HR@10 filtered"])
    assert section["every_signal"]["chosen"]["N"] in (25, 50)
    costs = {row["pipeline"]: row for row in section["cost_and_gain"]}
    assert set(costs) == set(stages) | set(signal_runs)
    assert all(row["seconds beyond stage one"] > 0 for name, row in costs.items() if name != rk.STAGE_ONE)
