"""Re-ranking stage one's candidates with every training signal: a linear listwise re-ranker and LightGBM's
LambdaRank over ``evaluation.ltr_features``, chosen on validation, with each stage's cost beside its gain.

For one split and each model seed:

1. *Training lists*: stage one (a callable: the best two-tower's score matrix of a training frame) and every
   signal of ``ltr_features`` are fitted on each validation fold's training part; each user's top N candidates
   (the user's training movies left out) are labelled by the fold's held-out movies.  Several folds' lists are
   stacked.
2. *Choices, on validation only*: on the first seed the first fold's users are halved at random; each (N,
   LightGBM setting) of ``GRID`` is fitted on one half and judged by the hit rate @10 of the other half's lists
   (over every held-out user, so different N compare fairly).  The choice is kept for the later seeds.
3. *Re-rankers*, fitted on all the folds' lists: the linear listwise re-ranker (``reranking.LearnedReranker``) on
   its own inputs (stage one, predicted rating, EASE; ``reranking.candidate_features``) and on every feature, at
   ``linear_n``; LightGBM at the chosen N on ``ltr_features.SCALE_FREE`` (or every feature).
4. *Test*: the signals are fitted again on the whole training part; stage one's test candidates are re-ranked and
   scored under the list protocol (the user's training movies never shown) with ``ranking_stage.pipeline_measures``.

Every step is timed (``Clock``), so ``cost_table`` puts each stage's seconds beside the hit rate it adds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from twotower_utils import presets
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split
from twotower_utils.evaluation import ltr_features, reranking
from twotower_utils.evaluation.counting import seen_matrix
from twotower_utils.evaluation.gbdt_reranker import GBDTReranker
from twotower_utils.experiments.ranking_stage import HR, STAGE_ONE, TrainedModels, pipeline_measures
from twotower_utils.runtime import say

# LightGBM settings tried (num_leaves, n_estimators, learning_rate) and the list lengths N tried for it
GRID = (
    {"num_leaves": 7, "n_estimators": 200, "learning_rate": 0.05},
    {"num_leaves": 15, "n_estimators": 300, "learning_rate": 0.05},
    {"num_leaves": 31, "n_estimators": 300, "learning_rate": 0.03},
)
CANDIDATES = (25, 50, 100)
COLUMNS = (HR, "NDCG@10")
SIGNALS = "signals: EASE, recency-weighted EASE, ALS (fit)"  # the clock's name for fitting them
LINEAR_OWN = "linear re-ranker, its inputs"
LINEAR_ALL = "linear re-ranker, every feature"
GBDT = "LightGBM lambdarank"


class Clock:
    """Seconds per named stage: every call's, so a stage's mean and total are both at hand."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def time(self, name: str, function: Callable, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.add(name, time.perf_counter() - start)
        return result

    def add(self, name: str, seconds: float) -> None:
        self.seconds.setdefault(name, []).append(float(seconds))

    def table(self) -> pd.DataFrame:
        """Calls, mean and total seconds per stage, in the order the stages first ran."""
        return pd.DataFrame(
            {
                name: {"calls": len(v), "mean s": float(np.mean(v)), "total s": float(np.sum(v))}
                for name, v in self.seconds.items()
            }
        ).T


@dataclass
class Lists:
    """One part's candidate lists: ids, every feature (and LightGBM's columns of them), the linear re-ranker's own
    inputs, the labels (the part's held-out movies) and the excluded (training) movies."""

    ids: np.ndarray
    features: np.ndarray
    names: list[str]
    trees: np.ndarray
    tree_names: list[str]
    own: np.ndarray
    labels: np.ndarray
    seen: np.ndarray


def fit_signals(data: MovieLens, frame: pd.DataFrame, clock: Clock) -> ltr_features.TrainingSignals:
    """Every signal of ``ltr_features`` fitted on ``frame``, with the presets' settings (EASE's lambda, recency-
    weighted EASE's, biased MF by ALS)."""
    return clock.time(
        SIGNALS,
        ltr_features.fit_signals,
        frame,
        data.num_users,
        data.num_movies,
        data.movie_vocabulary,
        ease_lambda=presets.ease_lambda(),
        recency=presets.sequence_baselines("leave_latest")["recency"],
        rating_settings=presets.rating_baselines()["biased MF (ALS)"],
    )


def candidate_lists(
    data: MovieLens,
    part: Split,
    scores: np.ndarray,
    signals: ltr_features.TrainingSignals,
    n: int,
    clock: Clock,
    gbdt_features: str = "scale-free",
) -> Lists:
    """``part``'s top ``n`` candidates of stage one's ``scores`` with their features and labels."""
    if gbdt_features not in ("scale-free", "all"):
        raise ValueError(f"gbdt_features must be 'scale-free' or 'all', got {gbdt_features!r}")
    seen = seen_matrix(part.train, data.num_users, data.num_movies)
    ids = reranking.candidates(scores, seen, n)
    features, names = clock.time("features", ltr_features.candidate_matrix, ids, scores, signals)
    trees, tree_names = (
        (features, names) if gbdt_features == "all" else ltr_features.select(features, names, ltr_features.SCALE_FREE)
    )
    own, _ = reranking.candidate_features(
        ids,
        {
            "retrieval score": reranking.gather(scores, ids),
            "predicted rating": features[..., names.index("predicted rating")].astype(np.float64),
            "EASE score": reranking.gather(signals.ease, ids),
        },
        part.train,
    )
    labels = reranking.candidate_labels(ids, part.test, data.num_movies)
    return Lists(ids, features, names, trees, tree_names, own, labels, seen)


def held_out_hit_rate(scores: np.ndarray, lists: Lists, users: np.ndarray, part: Split) -> float:
    """Hit rate @10 of the re-ranked lists over every user of ``users`` with a held-out movie in ``part``."""
    with_test = np.zeros(len(lists.ids), dtype=bool)
    with_test[part.test["user_idx"].to_numpy()] = True
    users = users[with_test[users]]
    order = np.argsort(-scores[users], axis=1, kind="stable")[:, :10]
    return float((np.take_along_axis(lists.labels[users], order, axis=1).sum(axis=1) > 0).mean())


def choose(
    lists: dict[int, Lists], fold: Split, seed: int, grid: Sequence[dict] = GRID, log: Callable[[str], None] = say
) -> dict[str, Any]:
    """LightGBM's N and setting with the best hit rate @10 on half of ``fold``'s users, fitted on the other half
    (``lists``: the fold's lists per N).  Returns the choice and every pair's validation hit rate."""
    users = np.random.default_rng(seed).permutation(np.arange(1, len(next(iter(lists.values())).ids)))
    half_a, half_b = users[: len(users) // 2], users[len(users) // 2 :]
    found = {}
    for n, listed in lists.items():
        stage = -np.broadcast_to(np.arange(n, dtype=np.float64), listed.labels.shape)
        base = held_out_hit_rate(stage, listed, half_b, fold)
        for setting in grid:
            ranker = GBDTReranker(seed=seed, **setting).fit_lists(
                listed.trees[half_a], listed.labels[half_a], listed.tree_names
            )
            scores = np.zeros(listed.labels.shape)
            scores[half_b] = ranker.score_lists(listed.trees[half_b])
            key = (n, json.dumps(setting, sort_keys=True))
            found[key] = held_out_hit_rate(scores, listed, half_b, fold)
            log(f"  N = {n}, {setting}: validation HR@10 {found[key]:.4f} (stage one's order {base:.4f})")
    n, setting = max(found, key=lambda key: (found[key], -key[0]))  # ties: the shorter list
    return {
        "N": n,
        "setting": json.loads(setting),
        "validation": found[(n, setting)],
        "tried": [{"N": k[0], **json.loads(k[1]), "validation HR@10": v} for k, v in found.items()],
    }


def run_split(
    data: MovieLens,
    split: Split,
    folds: Sequence[Split],
    seeds: Sequence[int],
    stage_one: Callable[[Split, int], np.ndarray],
    *,
    linear_n: int | None = None,
    candidates: Sequence[int] = CANDIDATES,
    grid: Sequence[dict] = GRID,
    gbdt_features: str = "scale-free",
    clock: Clock | None = None,
    log: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Stage one alone, the linear re-ranker on its inputs and on every feature, and LightGBM, on ``split``'s test
    for every seed of ``seeds`` (``stage_one(part, seed)``: stage one's score matrix trained on ``part.train``).
    Returns ``{"runs": {pipeline: [per-seed measures]}, "chosen": ..., "importances": frame, "clock": Clock,
    "folds": how many}``."""
    if not folds:
        raise ValueError("the re-rankers need at least one validation fold to learn from")
    clock = Clock() if clock is None else clock
    linear_n = presets.two_stage()["learned"]["N"] if linear_n is None else int(linear_n)
    fold_signals = [fit_signals(data, f.train, clock) for f in folds]
    test_signals = fit_signals(data, split.train, clock)
    runs: dict[str, list[dict]] = {}
    importances = []
    chosen = None
    for seed in seeds:
        started = time.perf_counter()
        fold_scores = [stage_one(f, seed) for f in folds]
        sizes = sorted({*candidates, linear_n})  # standardised features depend on the list's length: one per N
        fold_lists = {
            n: [
                candidate_lists(data, f, s, g, n, clock, gbdt_features)
                for f, s, g in zip(folds, fold_scores, fold_signals, strict=True)
            ]
            for n in sizes
        }
        if chosen is None:
            chosen = choose({n: fold_lists[n][0] for n in candidates}, folds[0], seed, grid, log)
            log(f"chosen on validation: N = {chosen['N']}, {chosen['setting']} (HR@10 {chosen['validation']:.4f})")
        n = chosen["N"]

        def stacked(key: str, size: int, fold_lists=fold_lists) -> np.ndarray:
            return np.concatenate([getattr(listed, key) for listed in fold_lists[size]])

        tree_names = fold_lists[n][0].tree_names
        gbdt = clock.time(
            "LightGBM (fit)",
            GBDTReranker(seed=seed, **chosen["setting"]).fit_lists,
            stacked("trees", n),
            stacked("labels", n),
            tree_names,
        )
        linear_own = clock.time(
            "linear re-ranker (fit)",
            reranking.LearnedReranker(seed=seed).fit,
            stacked("own", linear_n),
            stacked("labels", linear_n),
        )
        linear_all = clock.time(
            "linear re-ranker, every feature (fit)",
            reranking.LearnedReranker(seed=seed).fit,
            stacked("features", linear_n),
            stacked("labels", linear_n),
        )
        importances.append(gbdt.importances().assign(seed=seed))
        scores = stage_one(split, seed)
        test = {m: candidate_lists(data, split, scores, test_signals, m, clock, gbdt_features) for m in {n, linear_n}}

        def measure(listed: Lists, rerank: np.ndarray) -> dict[str, float]:
            matrix = reranking.two_stage_scores(listed.ids, rerank, data.num_movies)
            return pipeline_measures(matrix, split, listed.seen)

        stage = -np.broadcast_to(np.arange(n, dtype=np.float64), test[n].ids.shape)
        rows = {
            STAGE_ONE: measure(test[n], stage),
            f"{LINEAR_OWN}, N = {linear_n}": measure(
                test[linear_n], clock.time("linear re-ranker (score)", linear_own.score, test[linear_n].own)
            ),
            f"{LINEAR_ALL}, N = {linear_n}": measure(
                test[linear_n],
                clock.time("linear re-ranker, every feature (score)", linear_all.score, test[linear_n].features),
            ),
            f"{GBDT}, {gbdt_features} features, N = {n}": measure(
                test[n], clock.time("LightGBM (score)", gbdt.score_lists, test[n].trees)
            ),
        }
        for name, found in rows.items():
            runs.setdefault(name, []).append({"seed": seed, **{c: float(found[c]) for c in COLUMNS}})
        log(
            f"seed {seed}: "
            + ", ".join(f"{name.split(',')[0]} {m[HR]:.4f}" for name, m in rows.items())
            + f"  ({time.perf_counter() - started:.0f} s)"
        )
    table = pd.concat(importances)
    mean_gain = table.groupby("feature")[["gain share", "splits"]].mean().sort_values("gain share", ascending=False)
    return {"runs": runs, "chosen": chosen, "importances": mean_gain, "clock": clock, "folds": len(folds)}


def results_table(runs: dict[str, list[dict]]) -> pd.DataFrame:
    """Mean, standard deviation and every seed's filtered HR@10 and NDCG@10 per pipeline, with the gain over stage
    one's mean hit rate."""
    rows = {}
    stage = np.mean([r[HR] for r in runs[STAGE_ONE]]) if STAGE_ONE in runs else np.nan
    for name, entries in runs.items():
        row: dict[str, Any] = {}
        for column in COLUMNS:
            values = np.array([r[column] for r in entries])
            row[column] = float(values.mean())
            row[f"± {column}"] = float(values.std())
        row["HR@10 gain over stage one"] = row[HR] - stage
        row["every seed (HR@10)"] = " ".join(f"{r[HR]:.4f}" for r in entries)
        rows[name] = row
    return pd.DataFrame(rows).T


# The clock's stages each re-ranker needs beyond stage one (the signals and features are shared by all three)
STAGES = {
    LINEAR_OWN: (SIGNALS, "features", "linear re-ranker (fit)", "linear re-ranker (score)"),
    LINEAR_ALL: (
        SIGNALS,
        "features",
        "linear re-ranker, every feature (fit)",
        "linear re-ranker, every feature (score)",
    ),
    GBDT: (SIGNALS, "features", "LightGBM (fit)", "LightGBM (score)"),
}


def extra_seconds(found: dict[str, Any]) -> dict[str, float]:
    """Seconds per seed each re-ranker of ``run_split``'s result costs beyond stage one: its stages' total time
    over the run divided by the seeds (the signals, fitted once per training frame, are shared out)."""
    seeds = len(next(iter(found["runs"].values())))
    seconds = found["clock"].seconds
    extra = {}
    for name in found["runs"]:
        kind = next((k for k in STAGES if name.startswith(k)), None)
        if kind is not None:
            extra[name] = sum(float(np.sum(seconds.get(stage, []))) for stage in STAGES[kind]) / seeds
    return extra


def pipeline_seconds(
    found: dict[str, Any], models: TrainedModels, rating_model: str, two_stage_names: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """Stage one's training seconds and what every pipeline adds to them, per seed, from what ``models`` (the
    ranking stage's kept models) and ``found`` (``run_split``'s result, whose stage one came from ``models``)
    timed: (a) and (b) the rating model; (c) the rating model and EASE on the split and on the validation fold,
    stage one on the fold and its linear re-ranker's fit (the clock's, the same model on the same inputs); the
    every-signal re-rankers their stages (``extra_seconds``) and stage one on each fold."""
    stage_one = models.seconds_of("stage one")
    rating = models.seconds_of("rating", rating_model)
    linear_fit = float(np.mean(found["clock"].seconds.get("linear re-ranker (fit)", [np.nan])))
    extra = {}
    for name in two_stage_names:
        if name.startswith(("(a)", "(b)")):
            extra[name] = rating
        elif name.startswith("(c)"):
            extra[name] = 2 * rating + 2 * models.seconds_of("ease") + stage_one + linear_fit
    extra.update({name: seconds + found["folds"] * stage_one for name, seconds in extra_seconds(found).items()})
    return stage_one, extra


def cost_and_gain(hit_rates: dict[str, float], extra: dict[str, float], stage_one_seconds: float) -> pd.DataFrame:
    """Each pipeline's filtered HR@10 (``hit_rates``, stage one's under ``STAGE_ONE``), its gain over stage one and
    the seconds it adds (``extra``: training and scoring beyond stage one, per seed), with the seconds per
    0.001 of HR@10 gained (NaN where nothing was gained)."""
    if STAGE_ONE not in hit_rates:
        raise ValueError(f"the hit rates need stage one's ({STAGE_ONE!r}) to measure gains against")
    base = hit_rates[STAGE_ONE]
    rows = {
        STAGE_ONE: {HR: base, "gain": 0.0, "seconds beyond stage one": 0.0, "stage one's seconds": stage_one_seconds}
    }
    for name, value in hit_rates.items():
        if name == STAGE_ONE:
            continue
        gain, seconds = value - base, float(extra.get(name, np.nan))
        rows[name] = {
            HR: value,
            "gain": gain,
            "seconds beyond stage one": seconds,
            "seconds per 0.001 gained": seconds / (gain * 1000) if gain > 0 else np.nan,
        }
    return pd.DataFrame(rows).T


def plain(found: dict[str, Any]) -> dict[str, Any]:
    """``run_split``'s result as JSON-ready values (the importances as records, the clock as its table)."""
    return {
        "runs": found["runs"],
        "chosen": found["chosen"],
        "importances": found["importances"].reset_index().to_dict(orient="records"),
        "cost": found["clock"].table().to_dict(orient="index"),
    }
