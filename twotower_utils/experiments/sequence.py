"""Notebook 09's machinery: sequence user towers against history-reading baselines on the temporal protocols.

Two protocols hold out each user's *latest* ratings: **leave-latest-out** (the latest 20% of each user's
ratings) and **leave-one-out** (the single latest rating, ranked against the whole catalogue).  Their
validation is built the same way inside training (``splits.hold_out_latest``: each user's last training
ratings), and everything is chosen there, never on test: EASE's lambda, recency-weighted EASE's lambda, a and
tau, the tower's setting and epochs, the blend weight, the re-ranker and its N.  Every number is filtered (the
user's training movies are left out of the ranking): HR@10, NDCG@10 and HR@100, from the one counting core.

The towers are trained SASRec's way (``train_next_item`` over ``models.sequential``: each user's sequence once,
every position predicting the next movie, early-stopped on validation HR@10), and blended with recency-weighted
EASE in two ways: ``blend`` (per-user z-scores, the weight chosen on validation), and a **learned re-ranker**
of the blend's top N whose inputs are both scores and cheap signals (``choose_reranker``: the list length N and a
linear listwise model or LightGBM's LambdaRank, fitted on half of the validation users and chosen on the other
half, then refitted on all of them; ``apply_reranker`` on test).  ``compare_protocol`` runs one protocol,
``compare_unseen`` the **global time cut** (``splits.temporal_split``), where most test ratings come from users
with no training rating at all: an id tower cannot serve them; a model that reads a history can, from the
ratings the user gave earlier *inside the test period* (``data.history.histories_before``).  Notebook 09 and
``make sequence-study`` (``benchmarks/study_sequence.py``) both run on these.

``python -m twotower_utils sequence`` (``make sequence-tune``) makes the validation choices of the towers
trained the two-tower's way (one example per rating) and of the baselines, and writes them (each protocol's
tower, its history length and epochs, the baselines' settings), with the command, the date and the validation
scores, to the presets (``twotower_utils/presets/sequence.json``); ``presets.sequence_model`` and
``presets.sequence_baselines`` read them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils import presets
from twotower_utils.config import RunConfig, SequenceTower
from twotower_utils.data.history import histories_before, latest_histories, longest_history
from twotower_utils.data.movielens import DataUnavailableError, MovieLens
from twotower_utils.data.splits import Split, hold_out_latest, make_split, temporal_split
from twotower_utils.evaluation import baselines, reranking
from twotower_utils.evaluation.counting import filtered_topk_accuracy, seen_matrix, topk_accuracy
from twotower_utils.evaluation.gbdt_reranker import GBDTReranker
from twotower_utils.evaluation.metrics import model_scores, ranking_metrics
from twotower_utils.experiments import comparison
from twotower_utils.experiments.workflow import load_data
from twotower_utils.models.sequential import EarlyStopping, NextItemModel, fit_next_item, next_item_sequences
from twotower_utils.models.towers import SequenceTower as SequenceTowerModel
from twotower_utils.results import write_json_atomic
from twotower_utils.runtime import say
from twotower_utils.training import build_for, train

PROG = "python -m twotower_utils sequence"
PROTOCOLS = {"leave_latest": 0.2, "leave_one_out": None}  # held-out share of each user's ratings (None: one)
COLUMNS = ("HR@10", "NDCG@10", "HR@100")  # all filtered
METRIC = "HR@10"
MOST_POPULAR, EASE, LAST_ITEM, RECENCY_EASE = "most popular", "EASE", "last item (cosine)", "recency-weighted EASE"
# Recency-weighted EASE grid (a = 0 is plain EASE on the same lambdas)
RECENCY_LAMBDAS = (50.0, 200.0, 800.0)


def sequence_config(**changes: Any) -> RunConfig:
    """A sequence tower on the settings every sequence tower shares (``presets.sequence_shared``: Adam, batches
    of 1024, a full softmax over the catalogue, 64-d): SASRec, L 50, 5 epochs unless ``changes`` say otherwise.
    The towers validation chose are ``presets.sequence_model(protocol)``."""
    shared = presets.sequence_shared()
    return RunConfig().replace(**{**shared, "user_tower": "sasrec", "history_length": 50, "epochs": 5, **changes})


def protocol_split(data: MovieLens, protocol: str) -> Split:
    """The test split of a temporal protocol (``leave_latest`` 80/20 or ``leave_one_out``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {protocol!r}")
    return make_split(data, protocol)


def validation_for(split: Split, protocol: str) -> Split:
    """The protocol's validation inside training: each user's last training ratings (never a test rating)."""
    return hold_out_latest(split.train, PROTOCOLS[protocol], "validation")


def user_histories(frame: pd.DataFrame, num_users: int) -> np.ndarray:
    """Every user id's whole history in ``frame`` (``[num_users + 1, longest]``): the baselines' queries."""
    return latest_histories(frame, np.arange(num_users + 1), longest_history(frame))


def measures(scores: np.ndarray, exclude: np.ndarray, test: pd.DataFrame) -> dict[str, float]:
    """Filtered HR@10, NDCG@10 and HR@100 of a score matrix (rows indexed by ``test.user_idx``)."""
    hits = topk_accuracy(scores, test, (10, 100), exclude=exclude)
    ndcg = ranking_metrics(scores, test, [10], exclude=exclude)["ndcg@10"]
    return {"HR@10": hits[10], "NDCG@10": ndcg, "HR@100": hits[100]}


def seen(frame: pd.DataFrame, data: MovieLens) -> np.ndarray:
    """The filtered protocol's exclusions: the movies each user rated in ``frame``."""
    return seen_matrix(frame, data.num_users, data.num_movies)


# --- baselines -----------------------------------------------------------------------------------------------


def choose_baselines(data: MovieLens, validation: Split, lambdas: Sequence[float] = RECENCY_LAMBDAS) -> dict:
    """EASE's lambda and recency-weighted EASE's lambda, a and tau, by filtered HR@10 on ``validation``."""
    lam, tried = baselines.tune_ease(validation.train, validation.test, data.num_users, data.num_movies)
    histories = user_histories(validation.train, data.num_users)
    recency, found = baselines.tune_recency_ease(
        validation.train, validation.test, histories, data.num_users, data.num_movies, lambdas=lambdas
    )
    best = found[(recency["lambda"], recency["a"], recency["tau"])]
    return {
        "ease_lambda": lam,
        "ease_validation": tried[lam],
        "recency": recency,
        "recency_validation": best,
        "recency_grid": [{"lambda": k[0], "a": k[1], "tau": k[2], "HR@10": v} for k, v in found.items()],
    }


def baseline_scores(
    data: MovieLens,
    train_frame: pd.DataFrame,
    histories: np.ndarray,
    choices: dict,
    seconds: dict[str, float] | None = None,
) -> dict:
    """Most-popular, EASE, last item and recency-weighted EASE scores, one row per history (``histories``:
    every user id's training history, or one query per test rating for users without training ratings);
    ``seconds`` (a dict) receives each one's time to fit and score."""
    users, movies = data.num_users, data.num_movies
    recency = choices["recency"]
    makers = {
        MOST_POPULAR: lambda: np.broadcast_to(
            baselines.popularity_scores(train_frame, users, movies)[0], (len(histories), movies + 1)
        ),
        f"{EASE} (lambda {choices['ease_lambda']:g})": lambda: baselines.recency_ease_scores(
            train_frame, histories, users, movies, choices["ease_lambda"], 0.0, 1.0
        ),
        LAST_ITEM: lambda: baselines.last_item_scores(train_frame, histories, users, movies),
        f"{RECENCY_EASE} (lambda {recency['lambda']:g}, a {recency['a']:g}, tau {recency['tau']:g})": lambda: (
            baselines.recency_ease_scores(
                train_frame, histories, users, movies, recency["lambda"], recency["a"], recency["tau"]
            )
        ),
    }
    scores = {}
    for name, make in makers.items():
        started = time.perf_counter()
        scores[name] = make()
        if seconds is not None:
            seconds[name] = time.perf_counter() - started
    return scores


# --- sequence towers -----------------------------------------------------------------------------------------


class ValidationCurve(tf.keras.callbacks.Callback):
    """Filtered HR@10 on a validation split after every epoch (the sequence tower reads its training part)."""

    def __init__(self, validation: Split) -> None:
        super().__init__()
        self.validation = validation
        self.values: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.values.append(filtered_topk_accuracy(self.model, self.validation.train, self.validation.test, [10])[10])


def validation_curve(config: RunConfig, data: MovieLens, validation: Split) -> list[float]:
    """Filtered HR@10 on ``validation`` after each of ``config.epochs`` epochs (one fit)."""
    curve = ValidationCurve(validation)
    train(config, data, validation, verbose=0, curves=False, callbacks=[curve])
    return curve.values


def summaries(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean and standard deviation over seeds of every column and of the ``seconds`` (``comparison.summarise``)."""
    return {
        name: comparison.summarise([{c: r[c] for c in (*COLUMNS, "seconds") if c in r} for r in rs], columns=dict)
        for name, rs in runs.items()
    }


# --- users the training never saw -----------------------------------------------------------------------------


def unseen_queries(data: MovieLens, train_fraction: float = 0.8) -> dict[str, Any]:
    """The global time cut's test ratings by users without a training rating, each with its history: the
    user's strictly earlier ratings inside the test period.  One row per test rating: ``test`` has
    ``user_idx`` = the row (a pseudo user), ``exclude`` marks the earlier movies (the filtered protocol)."""
    split = temporal_split(data, train_fraction)
    unseen = split.test[~split.test["user_idx"].isin(set(split.train["user_idx"]))].reset_index(drop=True)
    histories = histories_before(split.test, unseen, longest_history(split.test))
    exclude = baselines.recency_matrix(histories, data.num_movies) > 0
    test = pd.DataFrame({"user_idx": np.arange(len(unseen)), "movie_idx": unseen["movie_idx"].to_numpy()})
    return {
        "split": split,
        "unseen": unseen,
        "histories": histories,
        "exclude": exclude,
        "test": test,
        "share": len(unseen) / len(split.test),
    }


def tower_name(config: RunConfig) -> str:
    """``"sasrec (1 block), L 50"``, ``"gru, L 50 + user id"``..."""
    tower = config.model.user_tower
    kind = tower.kind
    if kind == "sasrec":
        kind += f" ({tower.blocks} block{'s' if tower.blocks > 1 else ''})"
    return f"{kind}, L {tower.history_length}{' + user id' if tower.use_user_id else ''}"


# --- sequence towers trained SASRec's way (every position predicts the next movie) ------------------------------

ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 11))  # the blend weights tried on validation
TOWER_KINDS = ("sasrec", "gru")
SETTING = {"L": 200, "blocks": 2, "dropout": 0.2, "dim": 64}  # make sequence-study's SASRec (a setting's defaults)


def parse_setting(text: str) -> dict:
    """``"L=200,blocks=2,dropout=0.2,dim=64"`` -> ``{"L": 200, "blocks": 2, "dropout": 0.2, "dim": 64}`` (the
    keys not given keep ``SETTING``'s values; ``ahead=k``: also the next k movies as targets)."""
    setting = dict(SETTING)
    for part in filter(None, text.split(",")):
        key, value = part.split("=")
        setting[key.strip()] = float(value) if key.strip() == "dropout" else int(value)
    return setting


def describe(setting: dict, kind: str = "sasrec") -> str:
    """``"L 50, 1 blocks, d 64, dropout 0.2"``: a setting in a table's model name."""
    parts = [f"L {setting['L']}", f"d {setting['dim']}", f"dropout {setting['dropout']:g}"]
    if kind == "sasrec":
        parts.insert(1, f"{setting['blocks']} block{'s' if setting['blocks'] > 1 else ''}")
    if setting.get("ahead", 1) > 1:
        parts.append(f"{setting['ahead']} ahead")
    return ", ".join(parts)


def next_item_name(kind: str, setting: dict) -> str:
    """The tower's row in the tables: ``"sasrec all positions (L 50, 1 block, d 64, dropout 0.2)"``."""
    return f"{kind} all positions ({describe(setting, kind)})"


def blend_name(kind: str) -> str:
    return f"blend: {kind} + {RECENCY_EASE}"


def rerank_name(kind: str) -> str:
    """The learned re-ranker's row: ``"sasrec + recency-weighted EASE, learned re-ranker"``."""
    return f"{kind} + {RECENCY_EASE}, learned re-ranker"


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row's scores over the catalogue (columns 1..M) as z-scores; column 0 (out of vocabulary) stays 0."""
    body = np.asarray(scores, np.float64)[:, 1:]
    z = (body - body.mean(axis=1, keepdims=True)) / np.maximum(body.std(axis=1, keepdims=True), 1e-12)
    return np.concatenate([np.zeros((len(z), 1)), z], axis=1)


def blend(tower: np.ndarray, ease: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha z(tower) + (1 - alpha) z(ease)``, both standardised per row over the catalogue."""
    return alpha * standardised(tower) + (1 - alpha) * standardised(ease)


def choose_alpha(tower: np.ndarray, ease: np.ndarray, exclude: np.ndarray, validation: pd.DataFrame) -> tuple:
    """The blend weight with the best validation HR@10 (ties: the larger alpha) and every alpha's HR@10."""
    z_tower, z_ease = standardised(tower), standardised(ease)
    found = {a: measures(a * z_tower + (1 - a) * z_ease, exclude, validation)[METRIC] for a in ALPHAS}
    return max(found, key=lambda a: (found[a], a)), found


def next_item_config(kind: str, setting: dict, seed: int, learning_rate: float = 1e-3) -> RunConfig:
    """The two-tower whose user tower ``kind`` reads the last ``setting["L"]`` movies (full softmax, Adam)."""
    changes = {"user_tower": kind, "history_length": setting["L"], "dropout": setting["dropout"]}
    if kind == "sasrec":
        changes["blocks"] = setting["blocks"]
    return RunConfig().replace(
        optimizer="adam",
        learning_rate=learning_rate,
        embedding_dim=setting["dim"],
        negatives="catalogue",
        seed=seed,
        **changes,
    )


def train_next_item(
    data: MovieLens,
    kind: str,
    setting: dict,
    fit: pd.DataFrame,
    early: Split,
    seed: int,
    *,
    max_epochs: int = 200,
    patience: int = 10,
    learning_rate: float = 1e-3,
    batch_size: int = 128,
    loss: str = "softmax",
    negatives: int = 0,
    epoch_log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train tower ``kind`` with ``setting`` on ``fit`` SASRec's way (``models.sequential``: each sequence once,
    every position predicting the next movie), early-stopped on ``early``'s filtered HR@10 (the tower reads
    ``early.train``) with the best epoch's weights kept.  ``{"model", "trainer", "report", "config", "setting",
    "kind"}`` (``epoch_log``: a line per epoch); ``report`` is ``EarlyStopping.report()`` with the training ``seconds`` and the ``sequences``."""
    config = next_item_config(kind, setting, seed, learning_rate)
    model = build_for(config, data, fit)
    trainer = NextItemModel(
        model.user_tower,
        model.movie_tower,
        loss=loss,
        negatives=negatives,
        sampling="popularity" if loss == "sampled" else "uniform",
        popularity=np.bincount(fit["movie_idx"], minlength=data.num_movies + 1),
        seed=seed,
    )
    sequences = next_item_sequences(fit, setting["L"], targets_ahead=setting.get("ahead", 1))

    def score() -> float:
        return filtered_topk_accuracy(model, early.train, early.test, [10])[10]

    report_epoch = None if epoch_log is None else (lambda m: epoch_log(f"    {kind} seed {seed}: {m}"))
    stopper = EarlyStopping(score, patience=patience, log=report_epoch)
    started = time.perf_counter()
    fit_next_item(
        trainer,
        sequences,
        max_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        callbacks=[stopper],
    )
    report = stopper.report()
    report["seconds"] = time.perf_counter() - started
    report["sequences"] = len(sequences["history"])
    return {"model": model, "trainer": trainer, "report": report, "config": config, "setting": setting, "kind": kind}


def refit_next_item(
    data: MovieLens, run: dict, frame: pd.DataFrame, seed: int, batch_size: int = 128, learning_rate: float = 1e-3
) -> None:
    """Retrain ``run``'s tower on ``frame`` (the whole training part) for its best epoch count, in place."""
    model = build_for(run["config"], data, frame)
    trainer = NextItemModel(model.user_tower, model.movie_tower, seed=seed)
    sequences = next_item_sequences(frame, run["setting"]["L"], targets_ahead=run["setting"].get("ahead", 1))
    fit_next_item(trainer, sequences, max(1, run["report"]["best_epoch"]), batch_size, learning_rate, seed)
    run["model"] = model


def recency_scores(data: MovieLens, frame: pd.DataFrame, choices: dict, histories: np.ndarray | None = None):
    """Recency-weighted EASE (``choices["recency"]``) fitted on ``frame``, one row per history (default: every
    user id's whole history in ``frame``)."""
    recency = choices["recency"]
    histories = user_histories(frame, data.num_users) if histories is None else histories
    return baselines.recency_ease_scores(
        frame, histories, data.num_users, data.num_movies, recency["lambda"], recency["a"], recency["tau"]
    )


# --- the second hybrid: the tower's score as an input of a learned re-ranker -----------------------------------

RERANK_DEPTHS = (25, 50)  # the candidate lists' lengths N tried on validation (the blend's top N)
RERANKERS = ("linear", "gbdt")  # reranking.LearnedReranker (listwise softmax) and gbdt_reranker.GBDTReranker


def rerank_features(
    tower: np.ndarray, ease: np.ndarray, stage_one: np.ndarray, exclude: np.ndarray, frame: pd.DataFrame, n: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The re-ranker's lists: each row's top ``n`` of ``stage_one`` (the blend; ``exclude``d movies out) and
    ``reranking.candidate_features`` of them: the tower's and recency-weighted EASE's scores (raw and standardised
    in the list), the blend's ``log(1 + rank)`` and the movie's popularity in ``frame`` (the training ratings the
    scores were fitted on).  The user's activity is left out: constant within a list, a listwise model cannot use
    it, and the unseen users' rows are queries, not user ids.  ``(ids, [rows, n, F] features, names)``."""
    ids = reranking.candidates(stage_one, exclude, min(n, stage_one.shape[1] - 1))
    scores = {"tower": reranking.gather(tower, ids), RECENCY_EASE: reranking.gather(ease, ids)}
    features, names = reranking.candidate_features(ids, scores, frame)
    keep = [i for i, name in enumerate(names) if not name.startswith("user activity")]
    return ids, features[..., keep], [names[i] for i in keep]


def reranked(ids: np.ndarray, rerank: np.ndarray, stage_one: np.ndarray) -> np.ndarray:
    """A score matrix for ``measures``: the candidates in the re-ranker's order (``reranking.two_stage_scores``)
    above every other movie, which keep stage one's order below them: HR@100 still counts past N (with N <= 100
    it is stage one's own, the same movies in another order)."""
    top = reranking.two_stage_scores(ids, rerank, stage_one.shape[1] - 1)
    below = stage_one - stage_one.max(axis=1, keepdims=True)  # <= 0 < the candidates' 1..N
    return np.where(np.isfinite(top), top, below)


def make_reranker(ranker: str, seed: int) -> Any:
    """A fresh re-ranker of kind ``ranker`` (``RERANKERS``), seeded."""
    if ranker == "linear":
        return reranking.LearnedReranker(seed=seed)
    if ranker == "gbdt":
        return GBDTReranker(seed=seed)
    raise ValueError(f"ranker must be one of {RERANKERS}, got {ranker!r}")


def _fit(ranker: str, seed: int, features: np.ndarray, labels: np.ndarray, names: list[str]) -> Any:
    model = make_reranker(ranker, seed)
    return model.fit(features, labels) if ranker == "linear" else model.fit_lists(features, labels, names)


def _score(model: Any, features: np.ndarray) -> np.ndarray:
    return model.score(features) if isinstance(model, reranking.LearnedReranker) else model.score_lists(features)


def choose_reranker(
    tower: np.ndarray,
    ease: np.ndarray,
    stage_one: np.ndarray,
    exclude: np.ndarray,
    frame: pd.DataFrame,
    held_out: pd.DataFrame,
    seed: int,
    depths: Sequence[int] = RERANK_DEPTHS,
    rankers: Sequence[str] = RERANKERS,
) -> dict[str, Any]:
    """The re-ranker and its list length N, chosen on validation (``tower``, ``ease`` and the blend
    ``stage_one`` scored from ``frame``, the validation's training part; ``held_out`` its held-out ratings):
    the held-out users are split in two halves (by ``seed``); each (N, ranker) is fitted on one half and judged
    by HR@10 on the other, and the best wins (ties: the earlier in ``depths``, then ``rankers``).  The winner is
    refitted on every validation list.  ``{"n", "ranker", "validation", "stage_one", "tried", "model",
    "names"}``: ``validation`` the winner's HR@10 on the judging half, ``stage_one`` the blend's own there,
    ``tried`` every pair's."""
    users = np.random.default_rng(seed).permutation(np.unique(held_out["user_idx"].to_numpy()))
    fit, judge = users[: len(users) // 2], users[len(users) // 2 :]
    judged = held_out[held_out["user_idx"].isin(judge)]
    num_movies = stage_one.shape[1] - 1
    tried, lists = {}, {}
    for n in depths:
        ids, features, names = rerank_features(tower, ease, stage_one, exclude, frame, n)
        labels = reranking.candidate_labels(ids, held_out, num_movies)
        lists[n] = (ids, features, labels, names)
        for ranker in rankers:
            if not labels[fit].any():  # no positive among the half's candidates: nothing to learn from
                tried[(n, ranker)] = 0.0
                continue
            rerank = np.zeros(labels.shape)
            rerank[judge] = _score(_fit(ranker, seed, features[fit], labels[fit], names), features[judge])
            tried[(n, ranker)] = float(measures(reranked(ids, rerank, stage_one), exclude, judged)[METRIC])
    n, ranker = max(tried, key=lambda key: (tried[key], -list(depths).index(key[0]), -list(rankers).index(key[1])))
    _, features, labels, names = lists[n]
    return {
        "n": int(n),
        "ranker": ranker,
        "validation": tried[(n, ranker)],
        "stage_one": float(measures(stage_one, exclude, judged)[METRIC]),
        "tried": [{"N": int(k[0]), "ranker": k[1], METRIC: v} for k, v in tried.items()],
        "model": _fit(ranker, seed, features, labels, names),
        "names": names,
    }


def apply_reranker(
    chosen: dict, tower: np.ndarray, ease: np.ndarray, stage_one: np.ndarray, exclude: np.ndarray, frame: pd.DataFrame
) -> np.ndarray:
    """The chosen re-ranker (``choose_reranker``) on new scores (test): the blend's top ``chosen["n"]`` re-ordered,
    as a score matrix for ``measures``."""
    ids, features, _ = rerank_features(tower, ease, stage_one, exclude, frame, chosen["n"])
    return reranked(ids, _score(chosen["model"], features), stage_one)


def _towers(
    data: MovieLens,
    towers: dict[str, Sequence[dict]],
    seeds: Sequence[int],
    validation: Split,
    score_test: Callable[[Any], np.ndarray],
    test_ease: np.ndarray,
    test_frame: pd.DataFrame,
    exclude: np.ndarray,
    test_train: pd.DataFrame,
    choices: dict,
    refit_frame: pd.DataFrame | None,
    log: Callable[[str], None],
    training: dict,
    rerank_depths: Sequence[int] = RERANK_DEPTHS,
) -> tuple[dict, dict]:
    """Each tower kind: its setting chosen on the first seed's validation (among ``towers[kind]``), trained per
    seed, its blend weight with recency-weighted EASE chosen on validation, then a learned re-ranker of the blend's
    top N over both scores (``choose_reranker``, on validation); the tower, the blend and the re-ranked blend on
    test (``test_train``: the training ratings the test scores come from, the re-ranker's popularity)."""
    val_exclude = seen(validation.train, data)
    val_ease = recency_scores(data, validation.train, choices)
    runs: dict[str, list[dict]] = {}
    found: dict[str, Any] = {}
    for kind, grid in towers.items():
        first = seeds[0]
        trials = [train_next_item(data, kind, s, validation.train, validation, first, **training) for s in grid]
        best = max(trials, key=lambda t: t["report"]["best"])
        setting = best["setting"]
        tower_runs, blend_runs, rerank_runs, details = [], [], [], []
        for seed in seeds:
            run = (
                best
                if seed == first
                else train_next_item(data, kind, setting, validation.train, validation, seed, **training)
            )
            report = run["report"]
            log(
                f"  {kind} ({describe(setting, kind)}) seed {seed}: best validation HR@10 {report['best']:.4f} at "
                f"epoch {report['best_epoch']} of {report['epochs']} ({report['seconds']:.0f} s)"
            )
            val_tower = model_scores(run["model"], validation.train)
            alpha, alphas = choose_alpha(val_tower, val_ease, val_exclude, validation.test)
            started = time.perf_counter()
            chosen = choose_reranker(
                val_tower,
                val_ease,
                blend(val_tower, val_ease, alpha),
                val_exclude,
                validation.train,
                validation.test,
                seed,
                rerank_depths,
            )
            rerank_seconds = time.perf_counter() - started
            log(
                f"  {kind} seed {seed}: re-ranker {chosen['ranker']} over the blend's top {chosen['n']}, validation "
                f"HR@10 {chosen['validation']:.4f} on the judging half (the blend {chosen['stage_one']:.4f})"
            )
            if refit_frame is not None:
                refit_next_item(
                    data, run, refit_frame, seed, training.get("batch_size", 128), training.get("learning_rate", 1e-3)
                )
            scores = score_test(run["model"])
            seconds = report["seconds"]
            stage_one = blend(scores, test_ease, alpha)
            tower_runs.append({**measures(scores, exclude, test_frame), "seconds": seconds})
            blend_runs.append({**measures(stage_one, exclude, test_frame), "seconds": seconds})
            started = time.perf_counter()
            two_stage = apply_reranker(chosen, scores, test_ease, stage_one, exclude, test_train)
            rerank_seconds += time.perf_counter() - started
            rerank_runs.append({**measures(two_stage, exclude, test_frame), "seconds": seconds + rerank_seconds})
            reranker = {k: chosen[k] for k in ("n", "ranker", "validation", "stage_one", "tried", "names")}
            details.append(
                {
                    "seed": seed,
                    "alpha": alpha,
                    "alpha_validation": alphas,
                    "reranker": {**reranker, "seconds": rerank_seconds},
                    **report,
                }
            )
        runs[next_item_name(kind, setting)] = tower_runs
        runs[blend_name(kind)] = blend_runs
        runs[rerank_name(kind)] = rerank_runs
        found[kind] = {
            "setting": setting,
            "grid": [{"setting": t["setting"], **t["report"]} for t in trials],
            "seeds": details,
        }
    return runs, found


def compare_protocol(
    data: MovieLens,
    protocol: str,
    towers: dict[str, Sequence[dict]],
    seeds: Sequence[int],
    *,
    choices: dict | None = None,
    lambdas: Sequence[float] = RECENCY_LAMBDAS,
    refit: bool = False,
    rerank_depths: Sequence[int] = RERANK_DEPTHS,
    log: Callable[[str], None] = say,
    **training: Any,
) -> dict[str, Any]:
    """One protocol: the baselines (``choices``, or chosen on its validation over ``lambdas``) and each tower of
    ``towers`` (``{kind: [setting, ...]}``, trained by ``train_next_item`` with ``training``), alone, blended
    with recency-weighted EASE and re-ranked over both (the list lengths ``rerank_depths`` tried), on test.
    Every run carries its ``seconds`` (fitting; the towers' training, plus the re-ranker's choice and fit)."""
    split = protocol_split(data, protocol)
    validation = validation_for(split, protocol)
    started = time.perf_counter()
    if choices is None:
        choices = choose_baselines(data, validation, lambdas)
        log(f"{protocol}: baselines chosen on validation in {time.perf_counter() - started:.0f} s")
    histories = user_histories(split.train, data.num_users)
    exclude = seen(split.train, data)
    runs, test_ease = _baseline_runs(data, split.train, histories, choices, exclude, split.test)
    tower_runs, found = _towers(
        data,
        towers,
        seeds,
        validation,
        lambda model: model_scores(model, split.train),
        test_ease,
        split.test,
        exclude,
        split.train,
        choices,
        split.train if refit else None,
        lambda message: log(f"{protocol}: {message.strip()}"),
        training,
        rerank_depths,
    )
    return {
        "choices": plain_json(choices),
        "runs": {**runs, **tower_runs},
        "towers": found,
        "test": len(split.test),
        "train": len(split.train),
        "validation": len(validation.test),
    }


def _baseline_runs(
    data: MovieLens, train: pd.DataFrame, histories: np.ndarray, choices: dict, exclude: np.ndarray, test: pd.DataFrame
) -> tuple[dict[str, list[dict]], np.ndarray]:
    """Every baseline (``choices``) fitted on ``train`` and measured on ``test``, one run each with its fitting and
    scoring seconds; and recency-weighted EASE's test scores, the towers' blend partner."""
    seconds: dict[str, float] = {}
    base = baseline_scores(data, train, histories, choices, seconds)
    runs = {name: [{**measures(s, exclude, test), "seconds": seconds[name]}] for name, s in base.items()}
    return runs, next(s for name, s in base.items() if name.startswith(RECENCY_EASE))


def compare_unseen(
    data: MovieLens,
    towers: dict[str, Sequence[dict]],
    seeds: Sequence[int],
    choices: dict,
    *,
    train_fraction: float = 0.8,
    refit: bool = False,
    rerank_depths: Sequence[int] = RERANK_DEPTHS,
    log: Callable[[str], None] = say,
    **training: Any,
) -> dict[str, Any]:
    """The global time cut's users without a training rating: the baselines (``choices``) and each tower (its
    validation carved inside the time cut's training part as leave-latest-out carves it; no user id: these users
    have none), each test rating scored from the user's earlier test-period ratings.  The blend and the learned
    re-ranker are chosen on that validation's (seen) users and applied to these queries."""
    queries = unseen_queries(data, train_fraction)
    split, histories, exclude, test = queries["split"], queries["histories"], queries["exclude"], queries["test"]
    validation = hold_out_latest(split.train, PROTOCOLS["leave_latest"], "validation")
    runs, test_ease = _baseline_runs(data, split.train, histories, choices, exclude, test)

    def score_test(model) -> np.ndarray:
        users = model.user_tower.embed(histories[:, -model.user_tower.length :])
        return users @ model.movie_tower.embed_all().numpy().T

    tower_runs, found = _towers(
        data,
        towers,
        seeds,
        validation,
        score_test,
        test_ease,
        test,
        exclude,
        split.train,
        choices,
        split.train if refit else None,
        lambda message: log(f"unseen users: {message.strip()}"),
        training,
        rerank_depths,
    )
    return {
        "runs": {**runs, **tower_runs},
        "towers": found,
        "test": len(test),
        "share": queries["share"],
        "time_cut_test": len(split.test),
    }


def sasrec_from_layers(
    items: tf.keras.layers.Embedding,
    positions: tf.keras.layers.Embedding,
    norm_1: tf.keras.layers.Layer,
    attention: tf.keras.layers.MultiHeadAttention,
    norm_2: tf.keras.layers.Layer,
    ffn: tf.keras.Sequential,
    norm_out: tf.keras.layers.Layer,
    output: tf.keras.layers.Dense,
) -> SequenceTowerModel:
    """The package's one-block SASRec tower (``towers.SequenceTower``, pre-norm) reading ``items`` and carrying
    the other layers' weights: a causal block written out layer by layer next to the package's."""
    length = int(positions.input_dim)
    tower = SequenceTowerModel("sasrec", items, int(output.units), length, num_users=0, blocks=1)
    tower.encode_positions({"user_id": np.zeros(1, np.int64), "history": np.ones((1, length), np.int64)})
    block = tower.blocks[0]
    pairs = [
        (tower.positions, positions),
        (block["norm"], norm_1),
        (block["attention"], attention),
        (block["ffn_norm"], norm_2),
        (block["ffn"][0], ffn.layers[0]),
        (block["ffn"][1], ffn.layers[1]),
        (tower.final_norm, norm_out),
        (tower.output_layer, output),
    ]
    for mine, theirs in pairs:
        mine.set_weights(theirs.get_weights())
    return tower


def head_to_head(protocols: dict[str, dict], unseen: dict | None = None) -> pd.DataFrame:
    """Filtered HR@10 (mean over seeds) of each tower, its blend, its learned re-ranker, recency-weighted EASE and
    most popular, one row per test, with the differences to recency-weighted EASE."""
    rows = {}
    tests = {**protocols, **({"unseen users": unseen} if unseen is not None else {})}
    for test, found in tests.items():
        runs = found["runs"]
        for kind, tower in found["towers"].items():
            name = next_item_name(kind, tower["setting"])
            row = {
                "tower": np.mean([r[METRIC] for r in runs[name]]),
                "blend": np.mean([r[METRIC] for r in runs[blend_name(kind)]]),
                "re-ranked": np.mean([r[METRIC] for r in runs[rerank_name(kind)]]),
                RECENCY_EASE: next(v for k, v in runs.items() if k.startswith(RECENCY_EASE))[0][METRIC],
                MOST_POPULAR: runs[MOST_POPULAR][0][METRIC],
                "tower training (s)": np.mean([r["seconds"] for r in runs[name]]),
            }
            row["tower - " + RECENCY_EASE] = row["tower"] - row[RECENCY_EASE]
            row["blend - " + RECENCY_EASE] = row["blend"] - row[RECENCY_EASE]
            row["re-ranked - " + RECENCY_EASE] = row["re-ranked"] - row[RECENCY_EASE]
            rows[f"{test}: {kind}"] = row
    return pd.DataFrame(rows).T


def length_curve(
    data: MovieLens,
    protocol: str,
    kind: str,
    setting: dict,
    lengths: Sequence[int],
    choices: dict,
    seed: int,
    **training: Any,
) -> pd.DataFrame:
    """Validation HR@10 against the history length L: the tower trained with each L (early-stopped, its best
    epoch), and recency-weighted EASE (``choices``) reading only the last L ratings."""
    validation = validation_for(protocol_split(data, protocol), protocol)
    exclude = seen(validation.train, data)
    rows = []
    for length in lengths:
        histories = latest_histories(validation.train, np.arange(data.num_users + 1), int(length))
        ease = recency_scores(data, validation.train, choices, histories)
        run = train_next_item(data, kind, {**setting, "L": int(length)}, validation.train, validation, seed, **training)
        rows.append(
            {
                "L": int(length),
                "tower": run["report"]["best"],
                RECENCY_EASE: measures(ease, exclude, validation.test)[METRIC],
            }
        )
    return pd.DataFrame(rows)


def plain_json(value):
    """NumPy scalars as Python numbers, tuple keys as text: a report ``json`` can write."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def plot_length_curve(curve: pd.DataFrame, tower: str, title: str):
    """Validation HR@10 of the tower and of recency-weighted EASE against L (log axis)."""
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(curve["L"], curve["tower"], marker="o", label=tower)
    ax.plot(curve["L"], curve[RECENCY_EASE], marker="s", label=RECENCY_EASE)
    ax.set_xscale("log")
    ax.set_xticks(curve["L"], [str(n) for n in curve["L"]])
    ax.set_xlabel("history length L (last L ratings read)")
    ax.set_ylabel("validation HR@10 (filtered)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


# --- validation choices (make sequence-tune) ------------------------------------------------------------------

TUNE_TOWERS: tuple[dict[str, Any], ...] = (
    {"user_tower": "mean"},
    {"user_tower": "attention"},
    {"user_tower": "gru"},
    {"user_tower": "sasrec"},
    {"user_tower": "sasrec", "use_user_id": True},
)
TUNE_LENGTHS = (10, 25, 100)  # and 50, the towers' own


def tune(
    data: MovieLens,
    protocols: Sequence[str],
    epochs: int,
    seed: int,
    log: Callable[[str], None] = say,
) -> dict:
    """Per protocol: each tower of ``TUNE_TOWERS`` (L 50) with its validation HR@10 after every epoch; then the
    best tower's L over ``TUNE_LENGTHS``; and the baselines' choices."""
    found: dict[str, Any] = {}
    for protocol in protocols:
        validation = validation_for(protocol_split(data, protocol), protocol)
        choices = choose_baselines(data, validation)
        log(
            f"{protocol}: EASE {choices['ease_lambda']:g}: {choices['ease_validation']:.4f}; recency {choices['recency']}: {choices['recency_validation']:.4f}"
        )
        towers = {}
        for changes in TUNE_TOWERS:
            config = sequence_config(**{**changes, "history_length": 50, "epochs": epochs, "seed": seed})
            start = time.perf_counter()
            curve = validation_curve(config, data, validation)
            towers[tower_name(config)] = {"changes": changes, "curve": curve, "seconds": time.perf_counter() - start}
            log(f"{protocol}: {tower_name(config)}: " + " ".join(f"{v:.4f}" for v in curve))
        best = max(towers, key=lambda name: max(towers[name]["curve"]))
        lengths = {50: towers[best]["curve"]}
        for length in TUNE_LENGTHS:
            config = sequence_config(
                **{**towers[best]["changes"], "history_length": length, "epochs": epochs, "seed": seed}
            )
            lengths[length] = validation_curve(config, data, validation)
            log(f"{protocol}: {tower_name(config)}: " + " ".join(f"{v:.4f}" for v in lengths[length]))
        found[protocol] = {"baselines": choices, "towers": towers, "best_tower": best, "lengths": lengths}
    return found


def choose(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each protocol's tower from a ``tune`` report: the tower with the best validation HR@10 (at its best
    epoch), then its best L, with that curve's best epoch; ``{"changes", "history_length", "epochs",
    "validation"}`` per protocol."""
    chosen = {}
    for protocol, report in found.items():
        tower = report["towers"][report["best_tower"]]
        length, curve = max(report["lengths"].items(), key=lambda item: (max(item[1]), -int(item[0])))
        chosen[protocol] = {
            "changes": tower["changes"],
            "history_length": int(length),
            "epochs": int(np.argmax(curve)) + 1,
            "validation": float(max(curve)),
        }
    return chosen


def presets_choices(found: dict[str, Any], chosen: dict[str, dict[str, Any]]) -> tuple[dict, dict]:
    """What ``main`` writes to the presets for each tuned protocol, from ``tune``'s report and ``choose``'s
    answers: ``{protocol: {"user_tower", "epochs", "baselines"}}`` and the validation scores they were chosen on."""
    choices, validation = {}, {}
    for protocol, answer in chosen.items():
        changes = dict(answer["changes"])
        tower = SequenceTower(kind=changes.pop("user_tower"), **changes, history_length=answer["history_length"])
        baselines = found[protocol]["baselines"]
        choices[protocol] = {
            "user_tower": tower.to_dict(),
            "epochs": answer["epochs"],
            "baselines": {"ease_lambda": baselines["ease_lambda"], "recency": baselines["recency"]},
        }
        validation[protocol] = {
            "metric": "HR@10 (filtered)",
            "chosen": answer["validation"],
            "towers": {name: tower["curve"] for name, tower in found[protocol]["towers"].items()},
            "best_tower": found[protocol]["best_tower"],
            "lengths": {str(length): float(max(curve)) for length, curve in found[protocol]["lengths"].items()},
            "ease": baselines["ease_validation"],
            "recency": baselines["recency_validation"],
        }
    return choices, validation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocols", nargs="+", choices=tuple(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every validation fit (curve per epoch)")
    parser.add_argument("--seed", type=int, default=RunConfig.seed)
    parser.add_argument("--output-dir", type=Path, default=Path("results/sequence"))
    parser.add_argument(
        "--presets-dir",
        type=Path,
        default=None,
        help="the presets folder read from and written to (default: the package's)",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    if not 1 <= args.epochs <= 200:
        parser.error(f"--epochs must be from 1 to 200, got {args.epochs}")

    with presets.using(args.presets_dir):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``main`` after its arguments, with the presets of ``--presets-dir``."""
    try:
        previous = presets.read("sequence")  # the shared settings; protocols not tuned keep theirs
        data = load_data(args.data_dir)
    except (presets.PresetError, DataUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    report = {"command": sys.argv, "epochs": args.epochs, "seed": args.seed}
    report["protocols"] = tune(data, args.protocols, args.epochs, args.seed)
    report["chosen"] = choose(report["protocols"])
    report["seconds"] = time.perf_counter() - start
    path = args.output_dir / "sequence_tuning.json"
    write_json_atomic(path, report)
    choices, validation = presets_choices(report["protocols"], report["chosen"])
    written = presets.write(
        "sequence",
        {**previous["chosen"], **choices},
        command=presets.command_line(PROG, argv),
        folds=1,
        validation={**previous["validation"], **validation},
    )
    print(f"wrote {path} in {report['seconds']:.0f} s; the choices to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
