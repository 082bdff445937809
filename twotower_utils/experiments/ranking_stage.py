"""Notebook 08's machinery: the ranking stage (rating models against their baselines) and two stages
(the best two-tower retrieves N candidates, a re-ranker orders them).

**Rating models** (``models.ranking``, ``models.rating_baselines``) are judged by RMSE and MAE on the test
ratings.  ``python -m twotower_utils ranking`` (``make ranking-tune``) chooses everything on k disjoint
validation folds of the training split (``experiments.tuning``), never on test: the baselines' penalties
and factors, then each rating-model variant's settings, then the blend weights of the ensemble.  Its
answers are the constants below.

**Two stages** (``evaluation.reranking``): stage one is the best two-tower (``presets.best_two_tower()``); the
re-rankers are the rating model alone, a blend of retrieval score and predicted rating (weight chosen on
validation), and a learned re-ranker trained on a validation fold's candidates.  Each pipeline is written
back as a score matrix and scored with the project's one set of metrics, plus graded NDCG and the mean
test rating of the hits (``evaluation.metrics.graded_metrics``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from twotower_utils import presets
from twotower_utils.config import ConfigError, RunConfig
from twotower_utils.data.movielens import DataUnavailableError, MovieLens
from twotower_utils.data.splits import Split
from twotower_utils.evaluation import baselines, reranking
from twotower_utils.evaluation.counting import seen_matrix, topk_accuracy
from twotower_utils.evaluation.metrics import graded_metrics, model_scores, ranking_metrics
from twotower_utils.evaluation.rating import predict_frame, predict_pairs, rating_errors
from twotower_utils.experiments import comparison, multitask_sweep, tuning
from twotower_utils.experiments.workflow import prepare
from twotower_utils.models import rating_baselines
from twotower_utils.models.ranking import RatingBlend
from twotower_utils.results import write_json_atomic
from twotower_utils.runtime import progress, say
from twotower_utils.training import train

PROG = "python -m twotower_utils ranking"
MEASURE_NAME = "rating-v1"  # names ``rating_measure`` in the validation cache keys
RMSE, MAE = "RMSE", "MAE"
USER_FEATURES = ("age", "gender", "occupation", "zip")
MOVIE_FEATURES = ("genres", "year")

# --- the rating models ---------------------------------------------------------------------------------------

# The rating models of notebook 08 (``presets.rating_models``: name -> RunConfig with a RatingSpec, in the table's
# order) share the best two-tower's optimisation (Adam 0.01, batch 2048, cosine, 20 epochs): heads with and without
# side features (the report's "richer features"), and implicit feedback (who rated what).  What make ranking-tune
# tries around each (one axis: the penalty that decides how much it overfits; mean validation RMSE over the folds):
VARIANT_GRID: dict[str, tuple[str, tuple]] = {
    "MF (biases + dot product)": ("l2_regularization", (0.05, 0.1, 0.2)),
    "MLP head": ("ranking_l2", (100.0, 1000.0)),
    "MLP head + features": ("ranking_l2", (100.0, 1000.0)),
    "DCN head": ("ranking_l2", (100.0, 1000.0)),
    "DCN head + features": ("ranking_l2", (100.0, 1000.0)),
    "MF + implicit feedback (SVD++)": ("l2_regularization", (0.1, 0.2, 0.3)),
}
# The baselines' settings are chosen on validation too (``presets.rating_baselines``), over these grids.
BASELINE_GRID: dict[str, list[dict[str, Any]]] = {
    "user + movie biases": [{"lam": lam} for lam in (1.0, 3.0, 5.0, 10.0, 25.0)],
    "biased MF (ALS)": [{"factors": f, "lam": lam} for f in (50, 120) for lam in (0.05, 0.1, 0.2)],
}
BASELINE_CLASSES = {
    "global mean": rating_baselines.GlobalMean,
    "user + movie biases": rating_baselines.Biases,
    "biased MF (ALS)": rating_baselines.BiasedMF,
}
# The ensemble: a least-squares blend of these members' predictions, its weights fitted on a validation fold.
# The multitask model of notebook 07 (its joint weights, ``presets.multitask_model``) brings the retrieval task's
# "who rated what" signal.
MULTITASK = "multitask, " + multitask_sweep.point_name(
    *(presets.joint_weights()[w] for w in ("retrieval_weight", "rating_weight"))
)
# The study's ensemble (the notebook's one-seed default blends ALS and the gradient-trained MF alone).
ENSEMBLE_MEMBERS = ("biased MF (ALS)", "MF + implicit feedback (SVD++)", MULTITASK)

# Published numbers (reported, not rerun here), with their protocols.
PUBLISHED = [
    ("TFRS basic_ranking tutorial", "random 80/20 (this split), 3 epochs", 1.11),
    ("TFRS DCN tutorial", "random 80/20 of 100K, DCN with features", 0.933),
    ("Surprise BaselineOnly", "5-fold cross-validation of 100K", 0.944),
    ("Surprise SVD", "5-fold cross-validation of 100K", 0.934),
    ("Surprise SVD++", "5-fold cross-validation of 100K", 0.919),
    ("GC-MC (Berg et al. 2017)", "canonical u1 split (80/20)", 0.910),
    ("GLocal-K (Han et al. 2021)", "canonical u1 split (80/20)", 0.889),
]


def fit_baseline(name: str, data: MovieLens, frame: pd.DataFrame, seed: int = 0, **settings: Any):
    """A rating baseline of ``BASELINE_CLASSES`` fitted on ``frame`` (``settings`` override the chosen ones,
    ``presets.rating_baselines``).  NumPy runs single-threaded here: ALS solves thousands of small systems, which
    threads only slow down."""
    chosen = {**presets.rating_baselines()[name], **settings}
    if name == "biased MF (ALS)":
        chosen.setdefault("seed", seed)
    with threadpool_limits(1):
        return BASELINE_CLASSES[name](data.num_users, data.num_movies, **chosen).fit(frame)


def fit_rating_model(name: str, data: MovieLens, split: Split, seed: int, overrides: dict[str, Any] | None = None):
    """Any model of the rating table, trained on ``split.train`` with model seed ``seed``: a baseline
    (``presets.rating_baselines``), a rating model (``presets.rating_models``) or the multitask model
    (``MULTITASK``).  ``overrides`` (notebook 08's parameters: ``embedding_dim``, ``epochs``, ``learning_rate``,
    ``batch_size``) change the TensorFlow models; of them the multitask model, whose towers are the best
    two-tower's, takes only ``epochs``."""
    if name in BASELINE_CLASSES:
        return fit_baseline(name, data, split.train, seed=seed)
    overrides = overrides or {}
    if name == MULTITASK:
        epochs = {"epochs": overrides["epochs"]} if "epochs" in overrides else {}
        config = presets.multitask_model(seed=seed, **epochs)
    else:
        config = presets.rating_model(name, seed=seed, **overrides)
    return train(config, data, split, verbose=0, curves=False).model


# Short names for the notebook's parameters (``-p rating_models=mean,als,mf``): key -> the table's name.
RATING_KEYS = {
    "mean": "global mean",
    "biases": "user + movie biases",
    "als": "biased MF (ALS)",
    "mf": "MF (biases + dot product)",
    "mlp": "MLP head",
    "mlp+features": "MLP head + features",
    "dcn": "DCN head",
    "dcn+features": "DCN head + features",
    "svd++": "MF + implicit feedback (SVD++)",
    "multitask": MULTITASK,
}


def model_names(keys: str | Sequence[str]) -> list[str]:
    """The table's names of comma-separated ``RATING_KEYS`` (a full name passes through unchanged)."""
    keys = [k.strip() for k in keys.split(",")] if isinstance(keys, str) else list(keys)
    names = {*RATING_KEYS.values()}
    unknown = [k for k in keys if k not in RATING_KEYS and k not in names]
    if unknown:
        raise ValueError(f"unknown rating model(s) {unknown}; the keys are {', '.join(RATING_KEYS)}")
    return [RATING_KEYS.get(k, k) for k in keys if k]


class TrainedModels:
    """Every model the ranking stage's tables train, trained once per (model, split, seed) and then kept: the
    rating table's models serve the ensemble's test predictions and the re-ranker, the ensemble's validation-fold
    members serve the learned re-ranker's fold, and stage one's score matrix (and EASE's) serve every N.  Every
    model is seeded from its config (``training.build_for``), so a kept model is the one a retraining gives."""

    def __init__(self, data: MovieLens, overrides: dict[str, Any] | None = None) -> None:
        self.data, self.overrides = data, dict(overrides or {})
        self._kept: dict[tuple, tuple[Split, Any]] = {}  # key -> (its split, kept alive for the id, the model)
        self.trained = 0  # how many models were trained (not found kept)
        self.seconds: dict[tuple, float] = {}  # (kind, name, split's name) -> training seconds, once per model

    def _get(self, what: tuple, split: Split, make: Callable[[], Any]) -> Any:
        key = (*what, id(split))
        if key not in self._kept:
            start = time.perf_counter()
            self._kept[key] = (split, make())
            self.seconds[(*what, split.name)] = time.perf_counter() - start
            self.trained += 1
        return self._kept[key][1]

    def seconds_of(self, kind: str, name: Any = None) -> float:
        """Mean training seconds of the kept models of one kind (``"rating"``, ``"stage one"``, ``"ease"``) and,
        for rating models, one name; NaN when none was trained."""
        found = [s for what, s in self.seconds.items() if what[0] == kind and (name is None or what[1] == name)]
        return float(np.mean(found)) if found else float("nan")

    def rating(self, name: str, split: Split, seed: int):
        """``fit_rating_model(name, ...)`` on ``split.train``, model seed ``seed``."""
        return self._get(
            ("rating", name, seed), split, lambda: fit_rating_model(name, self.data, split, seed, self.overrides)
        )

    def stage_one(self, split: Split, seed: int) -> np.ndarray:
        """The best two-tower's score matrix (``presets.best_two_tower``; of the overrides it takes ``epochs``)."""

        def make() -> np.ndarray:
            epochs = {"epochs": self.overrides["epochs"]} if "epochs" in self.overrides else {}
            config = presets.best_two_tower(seed=seed, **epochs)
            return model_scores(train(config, self.data, split, verbose=0, curves=False).model)

        return self._get(("stage one", seed), split, make)

    def ease(self, split: Split, ease_lambda: float | None = None) -> np.ndarray:
        """EASE's score matrix (its lambda by default the one ``make tune`` chose, ``presets.ease_lambda``)."""
        lam = presets.ease_lambda() if ease_lambda is None else ease_lambda
        return self._get(
            ("ease", lam),
            split,
            lambda: baselines.ease_scores(split.train, self.data.num_users, self.data.num_movies, lam),
        )


def rating_measure(model, split: Split, batch_size: int = 4096) -> dict[str, float]:
    """RMSE and MAE of a rating model on the split's test ratings."""
    errors = rating_errors(predict_frame(model, split.test, batch_size), split.test["user_rating"].to_numpy())
    return {RMSE: errors["rmse"], MAE: errors["mae"]}


def run_rating_models(
    names: Sequence[str],
    data: MovieLens,
    split: Split,
    seeds: Sequence[int],
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = say,
    models: TrainedModels | None = None,
) -> dict[str, list[dict]]:
    """Every named model (baselines, variants, the multitask model), once per model seed, scored on ``split.test``
    (trained through ``models``, which keeps them for the ensemble and the two stages; its overrides win)."""
    models = TrainedModels(data, overrides) if models is None else models
    runs: dict[str, list[dict]] = {}
    for name in names:
        start = time.perf_counter()
        runs[name] = [
            rating_measure(models.rating(name, split, seed), split)
            for seed in progress(seeds, desc=name, unit="seed", leave=False)
        ]
        log(f"{name:45s} RMSE {np.mean([r[RMSE] for r in runs[name]]):.4f}  ({time.perf_counter() - start:.0f} s)")
    return runs


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over seeds of every number."""
    return comparison.summarise(runs, columns=dict)


def rating_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """RMSE and MAE, ``mean ± std`` over seeds, one row per model."""
    return comparison.table(summaries)


def published_table(
    ours: float, name: str, protocol: str = "random 80/20 (the report's split), mean of seeds", only: str = ""
) -> pd.DataFrame:
    """The published RMSEs (reported, with their protocols; ``only``: those whose protocol names it, e.g. ``"u1"``)
    beside our best, measured on ``protocol``."""
    rows = [{"model": m, "protocol": p, "RMSE": r, "source": "reported"} for m, p, r in PUBLISHED if only in p]
    rows.append({"model": name, "protocol": protocol, "RMSE": ours, "source": "measured here"})
    return pd.DataFrame(rows).set_index("model").sort_values("RMSE")


# --- the ensemble ------------------------------------------------------------------------------------------


def member_predictions(
    members: Sequence[str],
    data: MovieLens,
    split: Split,
    seed: int,
    frame: pd.DataFrame,
    overrides: dict[str, Any] | None = None,
    models: TrainedModels | None = None,
) -> np.ndarray:
    """``[len(frame), len(members)]``: each member trained on ``split.train`` (model seed ``seed``; through
    ``models``, so a member already trained is reused), predicting the pairs of ``frame``."""
    models = TrainedModels(data, overrides) if models is None else models
    return np.stack([predict_frame(models.rating(n, split, seed), frame) for n in members], axis=1)


def run_ensemble(
    members: Sequence[str],
    data: MovieLens,
    split: Split,
    fold: Split,
    seeds: Sequence[int],
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = say,
    models: TrainedModels | None = None,
) -> tuple[list[dict], list[list[float]]]:
    """For each seed: fit the blend on the validation ``fold`` (members trained on ``fold.train``, predicting
    ``fold.test``), then apply its weights to the members trained on the whole ``split.train``, predicting
    ``split.test`` (the rating table's models, when ``models`` kept them).  Returns the runs and each seed's blend
    weights (intercept first)."""
    models = TrainedModels(data, overrides) if models is None else models
    runs, weights = [], []
    for seed in progress(seeds, desc="blend seeds", unit="seed", leave=False):
        start = time.perf_counter()
        fold_predictions = member_predictions(members, data, fold, seed, fold.test, models=models)
        blend = RatingBlend().fit(fold_predictions, fold.test)
        test_predictions = member_predictions(members, data, split, seed, split.test, models=models)
        errors = rating_errors(blend.predict(test_predictions), split.test["user_rating"].to_numpy())
        runs.append({RMSE: errors["rmse"], MAE: errors["mae"]})
        weights.append([float(w) for w in blend.weights])
        log(f"ensemble, seed {seed}: RMSE {errors['rmse']:.4f}  ({time.perf_counter() - start:.0f} s)")
    return runs, weights


# --- two stages ------------------------------------------------------------------------------------------------

HR = "HR@10 filtered"
TWO_STAGE_COLUMNS = (HR, "Recall@10", "NDCG@10", "graded NDCG@10", "mean rating of hits")
CANDIDATE_COUNTS = (10, 25, 50, 100, 200)
BLEND_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
# The rating model that re-ranks, fixed in advance: SVD++ (validation RMSE 0.9193; every TensorFlow variant landed
# within 0.0012 of the best, the DCN's 0.9191).  The choices of the two stages are made on two validation folds
# (make ranking-tune, ``presets.two_stage``): the blend's N and weight, the learned re-ranker's shape and N, and
# the pipeline with the best mean filtered HR@10.
RERANK_RATING_MODEL = "MF + implicit feedback (SVD++)"
LEARNED_SHAPES: dict[str, tuple[int, ...]] = {"linear": (), "hidden layer of 32": (32,)}
STAGE_ONE = "stage one alone (best two-tower)"
PIPELINES = (STAGE_ONE, "(a)", "(b)", "(c)")  # what two_stage_rows names them (by prefix)


def pipeline_measures(scores: np.ndarray, split: Split, seen: np.ndarray) -> dict[str, float]:
    """The two-stage table's numbers for one score matrix (filtered: ``seen``, the user's training movies, left
    out)."""
    ranking = ranking_metrics(scores, split.test, [10], exclude=seen)
    graded = graded_metrics(scores, split.test, 10, exclude=seen)
    return {
        HR: topk_accuracy(scores, split.test, [10], exclude=seen)[10],
        "Recall@10": ranking["recall@10"],
        "NDCG@10": ranking["ndcg@10"],
        "graded NDCG@10": graded["graded ndcg@10"],
        "mean rating of hits": graded["mean rating of hits@10"],
    }


class StageInputs:
    """What the re-rankers read for one split, from models trained on ``split.train`` alone: stage one's score
    matrix, the rating model (predicting the candidates' ratings), EASE's score matrix."""

    def __init__(self, retrieval: np.ndarray, rating_model, ease: np.ndarray, split: Split, data: MovieLens):
        self.retrieval, self.rating_model, self.ease = retrieval, rating_model, ease
        self.split, self.data = split, data
        self.seen = seen_matrix(split.train, data.num_users, data.num_movies)
        self._candidates: dict[int, np.ndarray] = {}
        self._ratings: dict[int, np.ndarray] = {}

    def candidates(self, n: int) -> np.ndarray:
        """``[num_users + 1, n]``: stage one's top n, the user's training movies left out."""
        if n not in self._candidates:
            self._candidates[n] = reranking.candidates(self.retrieval, self.seen, n)
        return self._candidates[n]

    def predicted_ratings(self, n: int) -> np.ndarray:
        """``[num_users + 1, n]``: the rating model's predictions for the candidates."""
        if n not in self._ratings:
            ids = self.candidates(n)
            users = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
            self._ratings[n] = predict_pairs(self.rating_model, users, ids, batch_size=65536)
        return self._ratings[n]

    def features(self, n: int) -> tuple[np.ndarray, list[str]]:
        """The learned re-ranker's inputs for the top n (``reranking.candidate_features``)."""
        ids = self.candidates(n)
        scores = {
            "retrieval score": reranking.gather(self.retrieval, ids),
            "predicted rating": self.predicted_ratings(n),
            "EASE score": reranking.gather(self.ease, ids),
        }
        return reranking.candidate_features(ids, scores, self.split.train)

    def pipeline(self, n: int, rerank: np.ndarray) -> np.ndarray:
        return reranking.two_stage_scores(self.candidates(n), rerank, self.data.num_movies)


def stage_inputs(
    data: MovieLens,
    split: Split,
    seed: int,
    overrides: dict[str, Any] | None = None,
    rating_model: str = RERANK_RATING_MODEL,
    ease_lambda: float | None = None,
    models: TrainedModels | None = None,
) -> StageInputs:
    """What the two stages need on ``split.train`` (model seed ``seed``), trained through ``models`` (or found kept
    there): the best two-tower (stage one; of ``overrides`` it takes only ``epochs``), the rating model
    (``fit_rating_model``), and EASE (an input of the learned re-ranker; its lambda by default the one ``make
    tune`` chose, ``presets.ease_lambda``)."""
    models = TrainedModels(data, overrides) if models is None else models
    return StageInputs(
        models.stage_one(split, seed),
        models.rating(rating_model, split, seed),
        models.ease(split, ease_lambda),
        split,
        data,
    )


def rerank_sweep(
    inputs: StageInputs, ns: Sequence[int] = CANDIDATE_COUNTS, weights: Sequence[float] = BLEND_WEIGHTS
) -> pd.DataFrame:
    """The blend ``(1 - w) z(retrieval) + w z(rating)`` for every N and weight: one row per (N, w).  ``w = 0`` is
    stage one alone (its own order, the same for every N >= 10) and ``w = 1`` the rating model alone."""
    rows = []
    for n in ns:
        retrieval = reranking.gather(inputs.retrieval, inputs.candidates(n))
        rating = inputs.predicted_ratings(n)
        for w in weights:
            scores = inputs.pipeline(n, reranking.blend(retrieval, rating, w))
            rows.append({"N": n, "w": w, **pipeline_measures(scores, inputs.split, inputs.seen)})
    return pd.DataFrame(rows)


def learned_reranker(
    train_inputs: StageInputs, n: int, seed: int = 0, layers: tuple[int, ...] = ()
) -> reranking.LearnedReranker:
    """The learned re-ranker (hidden ``layers``) fitted on ``train_inputs``' top n: positives are its split's
    held-out movies."""
    features, _ = train_inputs.features(n)
    labels = reranking.candidate_labels(
        train_inputs.candidates(n), train_inputs.split.test, train_inputs.data.num_movies
    )
    return reranking.LearnedReranker(layers, seed=seed).fit(features, labels)


def learned_measures(ranker: reranking.LearnedReranker, inputs: StageInputs, n: int) -> dict[str, float]:
    """The two-stage numbers of ``ranker`` re-ranking ``inputs``' top n."""
    features, _ = inputs.features(n)
    return pipeline_measures(inputs.pipeline(n, ranker.score(features)), inputs.split, inputs.seen)


def two_stage_rows(
    inputs: StageInputs, ranker_inputs: StageInputs, blend: dict[str, Any], learned: dict[str, Any], seed: int = 0
) -> dict[str, dict[str, float]]:
    """The pipelines of the two-stage table on ``inputs``: stage one alone, (a) by predicted rating, (b) the chosen
    blend, (c) the learned re-ranker trained on ``ranker_inputs`` (a validation fold's candidates)."""
    n = blend["N"]
    retrieval = reranking.gather(inputs.retrieval, inputs.candidates(n))
    rating = inputs.predicted_ratings(n)
    learned_n = learned["N"]
    ranker = learned_reranker(ranker_inputs, learned_n, seed=seed, layers=tuple(learned["layers"]))
    return {
        STAGE_ONE: pipeline_measures(inputs.pipeline(n, retrieval), inputs.split, inputs.seen),
        f"(a) by predicted rating, N = {n}": pipeline_measures(inputs.pipeline(n, rating), inputs.split, inputs.seen),
        f"(b) blend w = {blend['w']:g}, N = {n}": pipeline_measures(
            inputs.pipeline(n, reranking.blend(retrieval, rating, blend["w"])), inputs.split, inputs.seen
        ),
        f"(c) learned re-ranker, N = {learned_n}": learned_measures(ranker, inputs, learned_n),
    }


def run_two_stage(
    data: MovieLens,
    split: Split,
    fold: Split,
    seeds: Sequence[int],
    blend: dict[str, Any] | None = None,
    learned: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    ns: Sequence[int] = CANDIDATE_COUNTS,
    weights: Sequence[float] = BLEND_WEIGHTS,
    log: Callable[[str], None] = say,
    rating_model: str = RERANK_RATING_MODEL,
    models: TrainedModels | None = None,
) -> tuple[dict[str, list[dict]], pd.DataFrame]:
    """For each model seed: train the stages on ``split.train`` and on the validation ``fold``'s training part
    (where the learned re-ranker learns; through ``models``, so what the rating table and the ensemble trained is
    reused), score every pipeline of ``two_stage_rows`` (re-ranking by ``rating_model``) and the blend sweep on
    ``split.test``.  ``blend`` and ``learned`` default to the choices of ``presets.two_stage``.  Returns the runs
    per pipeline and the sweep's mean over seeds."""
    models = TrainedModels(data, overrides) if models is None else models
    chosen = presets.two_stage()
    blend = chosen["blend"] if blend is None else blend
    learned = chosen["learned"] if learned is None else learned
    runs: dict[str, list[dict]] = {}
    sweeps = []
    for seed in progress(seeds, desc="two-stage seeds", unit="seed", leave=False):
        start = time.perf_counter()
        inputs, ranker_inputs = (
            stage_inputs(data, s, seed, rating_model=rating_model, models=models) for s in (split, fold)
        )
        for name, measures in two_stage_rows(inputs, ranker_inputs, blend, learned, seed).items():
            runs.setdefault(name, []).append(measures)
        sweeps.append(rerank_sweep(inputs, ns, weights))
        log(
            f"seed {seed}: "
            + ", ".join(f"{n.split(',')[0]} {r[-1][HR]:.4f}" for n, r in runs.items())
            + f"  ({time.perf_counter() - start:.0f} s)"
        )
    return runs, pd.concat(sweeps).groupby(["N", "w"]).mean().reset_index()


def beats_stage_one(runs: dict[str, list[dict]], chosen: str | None = None) -> pd.Series:
    """Does the pipeline validation chose (named by its prefix; default ``presets.two_stage()["pipeline"]``) beat
    stage one alone on filtered HR@10 and NDCG@10 (the means over seeds, and on every seed)?"""
    chosen = presets.two_stage()["pipeline"] if chosen is None else chosen
    chosen = next(name for name in runs if name.startswith(chosen))
    summaries = {name: summarise(r) for name, r in runs.items()}
    every_seed = all(
        mine[c] > base[c] for mine, base in zip(runs[chosen], runs[STAGE_ONE], strict=True) for c in (HR, "NDCG@10")
    )

    def mean(name, column):
        return summaries[name][column]["mean"]

    return pd.Series(
        {
            "pipeline": chosen,
            f"stage one, {HR}": mean(STAGE_ONE, HR),
            f"pipeline, {HR}": mean(chosen, HR),
            "stage one, NDCG@10": mean(STAGE_ONE, "NDCG@10"),
            "pipeline, NDCG@10": mean(chosen, "NDCG@10"),
            "beats stage one on both": bool(
                mean(chosen, HR) > mean(STAGE_ONE, HR) and mean(chosen, "NDCG@10") > mean(STAGE_ONE, "NDCG@10")
            ),
            "... on every seed": every_seed,
        }
    )


def plot_tradeoff(sweep: pd.DataFrame, title: str = ""):
    """Filtered HR@10 and the mean test rating of the hits against the blend weight, one line per N: re-ranking
    by predicted rating trades hits for better-liked hits."""
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for n, rows in sweep.groupby("N"):
        for ax, column in zip(axes, (HR, "mean rating of hits"), strict=True):
            ax.plot(rows["w"], rows[column], marker="o", label=f"N = {n}")
    for ax, label in zip(axes, ("filtered hit rate @10", "mean test rating of the hits"), strict=True):
        ax.set_xlabel("blend weight w (0: retrieval order, 1: predicted rating)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- choosing on validation -------------------------------------------------------------------------------


def cross_validate_rating(
    config: RunConfig, data: MovieLens, folds: Sequence[Split], cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """RMSE/MAE of a rating-model config on every validation fold (cached per config and fold) and their means."""
    per_fold = tuning.cross_validate_measures(
        config,
        data,
        folds,
        lambda model, fold: rating_measure(model, fold, config.eval_batch_size),
        MEASURE_NAME,
        cache_dir,
    )
    return tuning.fold_summary(per_fold)


def cross_validate_baseline(name: str, settings: dict[str, Any], data: MovieLens, folds: Sequence[Split]) -> dict:
    """A baseline's RMSE/MAE on every validation fold (fold i with seed i) and their means."""
    per_fold = [rating_measure(fit_baseline(name, data, f.train, seed=i, **settings), f) for i, f in enumerate(folds)]
    return tuning.fold_summary(per_fold)


def choose_blend(sweeps: Sequence[pd.DataFrame]) -> dict[str, Any]:
    """The (N, w) with the best mean filtered HR@10 over the validation folds' sweeps (ties: the smaller w, N)."""
    mean = pd.concat(sweeps).groupby(["N", "w"])[HR].mean().reset_index()
    best = mean.sort_values([HR, "w", "N"], ascending=[False, True, True], kind="stable").iloc[0]
    return {"N": int(best["N"]), "w": float(best["w"]), HR: float(best[HR])}


def choose_learned(learned: dict[str, float]) -> dict[str, Any]:
    """The learned re-ranker (shape and N) with the best mean filtered HR@10 of ``_tune_two_stage``'s
    ``"<shape>, N = <n>"`` results (ties: the first tried, the simpler shape and the smaller N)."""
    name = max(learned, key=lambda key: learned[key])  # max keeps the first of equal values
    shape, _, n = name.partition(", N = ")
    return {"N": int(n), "layers": LEARNED_SHAPES[shape], HR: learned[name]}


def choose_pipeline(scores: dict[str, float]) -> str:
    """The pipeline (a prefix of ``PIPELINES``) with the best mean validation HR@10 (ties: the simpler, earlier)."""
    return max((name for name in PIPELINES if name in scores), key=lambda name: scores[name])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--part", choices=("all", "rating", "two-stage"), default="all")
    parser.add_argument(
        "--seed", type=int, default=RunConfig.seed, help="the report's split seed; fold i trains with seed+i"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("results/ranking"))
    parser.add_argument(
        "--presets-dir",
        type=Path,
        default=None,
        help="the presets folder read from and written to (default: the package's)",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    if not 2 <= args.folds <= 10:
        parser.error(
            f"--folds must be from 2 to 10 (the two stages train on one fold, judge on another), got {args.folds}"
        )

    with presets.using(args.presets_dir):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``main`` after its arguments, with the presets of ``--presets-dir``."""
    try:
        previous = presets.read("ranking")  # what a part left alone keeps
        models = presets.rating_models()
        chosen_baselines = presets.rating_baselines()
        base = next(iter(models.values())).replace(seed=args.seed)  # the data and split every model shares
        data, split = prepare(base, args.data_dir)
    except (ConfigError, DataUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    folds = tuning.validation_folds(split.train, args.folds)
    start = time.perf_counter()
    report: dict[str, Any] = {"command": sys.argv, "folds": args.folds, "base": base.to_dict()}
    chosen, validation = dict(previous["chosen"]), dict(previous["validation"])
    if args.part in ("all", "rating"):
        report["rating"] = _tune_rating(models, args.seed, data, folds, args.output_dir / "cache")
        chosen.update(_rating_choices(report["rating"], models, chosen_baselines))
        validation["rating"] = {
            name: {key: result["mean"] for key, result in results.items()} for name, results in report["rating"].items()
        }
    if args.part in ("all", "two-stage"):
        report["two_stage"] = _tune_two_stage(data, folds[:2], args.seed)
        found = report["two_stage"]
        chosen.update(
            blend={"N": found["blend"]["N"], "w": found["blend"]["w"]},
            learned={k: found["learned_chosen"][k] for k in ("N", "layers")},
            pipeline=found["pipeline"],
        )
        validation["two_stage"] = {
            "folds": len(folds[:2]),
            "metric": HR,
            "pipelines": found["pipelines"],
            "blend": found["blend"],
            "learned": found["learned"],
        }
    report["seconds"] = time.perf_counter() - start
    path = args.output_dir / ("ranking_tuning.json" if args.part == "all" else f"ranking_tuning_{args.part}.json")
    write_json_atomic(path, report)
    written = presets.write(
        "ranking",
        chosen,
        command=presets.command_line(PROG, argv),
        folds=args.folds,
        validation=validation,
    )
    print(f"wrote {path} in {report['seconds']:.0f} s; the choices to {written}")
    return 0


def _tune_rating(
    models: dict[str, RunConfig], seed: int, data: MovieLens, folds: Sequence[Split], cache: Path
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    print(f"1. rating baselines, mean RMSE over {len(folds)} validation folds")
    for name, grid in BASELINE_GRID.items():
        found[name] = {}
        for settings in grid:
            result = cross_validate_baseline(name, settings, data, folds)
            found[name][json.dumps(settings)] = result
            print(f"  {name:30s} {settings}: RMSE {result['mean'][RMSE]:.4f}", flush=True)
    print(f"2. rating models, mean RMSE over {len(folds)} validation folds")
    for name, (field, values) in VARIANT_GRID.items():
        found[name] = {}
        for value in values:
            config = models[name].replace(seed=seed, **{field: value})
            result = cross_validate_rating(config, data, folds, cache)
            found[name][f"{field}={value:g}"] = result
            print(f"  {name:36s} {field}={value:g}: RMSE {result['mean'][RMSE]:.4f}", flush=True)
    print("best of each (mean validation RMSE):")
    for name, results in found.items():
        best = min(results, key=lambda key: results[key]["mean"][RMSE])
        print(f"  {name:36s} {best}: {results[best]['mean'][RMSE]:.4f}")
    return found


def _rating_choices(
    found: dict[str, Any], models: dict[str, RunConfig], baselines_before: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The presets' ``baselines`` and ``rating_models`` from ``_tune_rating``'s results: each one's setting with the
    lowest mean validation RMSE (ties: the first tried); what has no grid keeps ``baselines_before``."""

    def best(name: str) -> str:
        return min(found[name], key=lambda key: found[name][key]["mean"][RMSE])

    baselines = [
        {"name": name, "settings": json.loads(best(name)) if name in BASELINE_GRID else baselines_before.get(name, {})}
        for name in BASELINE_CLASSES
    ]
    rating = []
    for name, config in models.items():
        spec = config.model
        if name in VARIANT_GRID:
            field, values = VARIANT_GRID[name]
            value = next(v for v in values if f"{field}={v:g}" == best(name))
            spec = spec.replace(**{field: value})
        rating.append({"name": name, "model": spec.to_dict()})
    return {"baselines": baselines, "rating_models": rating}


def _tune_two_stage(data: MovieLens, folds: Sequence[Split], seed: int) -> dict[str, Any]:
    print(f"3. two stages on {len(folds)} validation folds (stage one, rating model and EASE trained per fold)")
    inputs = [stage_inputs(data, fold, seed + i) for i, fold in enumerate(folds)]
    sweeps = [rerank_sweep(i) for i in inputs]
    blend = choose_blend(sweeps)
    print(f"  blend chosen: N = {blend['N']}, w = {blend['w']:g} (mean {HR} {blend[HR]:.4f})")
    learned: dict[str, float] = {}
    for shape, layers in LEARNED_SHAPES.items():  # trained on one fold's candidates, judged on the other's
        for n in CANDIDATE_COUNTS:
            pairs = ((0, 1), (1, 0))
            scores = [
                learned_measures(learned_reranker(inputs[a], n, seed, layers), inputs[b], n)[HR] for a, b in pairs
            ]
            learned[f"{shape}, N = {n}"] = float(np.mean(scores))
            print(f"  learned re-ranker, {shape}, N = {n}: mean {HR} {np.mean(scores):.4f}", flush=True)
    learned_chosen = choose_learned(learned)
    table = pd.concat(sweeps).groupby(["N", "w"]).mean().reset_index()
    at = table.set_index(["N", "w"])[HR]
    pipelines = {
        STAGE_ONE: float(at.loc[(blend["N"], 0.0)]) if (blend["N"], 0.0) in at.index else float("nan"),
        "(a)": float(at.loc[(blend["N"], 1.0)]) if (blend["N"], 1.0) in at.index else float("nan"),
        "(b)": blend[HR],
        "(c)": learned_chosen[HR],
    }
    pipeline = choose_pipeline({k: v for k, v in pipelines.items() if not np.isnan(v)})
    print(f"  learned re-ranker chosen: {learned_chosen}; pipeline chosen: {pipeline} ({pipelines})")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return {
        "blend": blend,
        "learned": learned,
        "learned_chosen": learned_chosen,
        "pipelines": pipelines,
        "pipeline": pipeline,
        "sweep": table.to_dict(orient="records"),
    }


if __name__ == "__main__":
    sys.exit(main())
