"""Notebook 10's machinery: sequence user towers against history-reading baselines on the temporal protocols.

Two protocols hold out each user's *latest* ratings: **leave-latest-out** (the latest 20% of each user's
ratings) and **leave-one-out** (the single latest rating, ranked against the whole catalogue).  Their
validation is built the same way inside training (``splits.hold_out_latest``: each user's last training
ratings), and everything is chosen there, never on test: EASE's lambda, recency-weighted EASE's lambda, a and
tau, the sequence tower, its history length L and its epochs.  Every number is filtered (the user's
training movies are left out of the ranking): HR@10, NDCG@10 and HR@100, from the one counting core.

The third test is the **global time cut** (``splits.temporal_split``): 85% of its test ratings come from
users with no training rating at all.  An id tower cannot serve them; a model that reads a history can,
from the ratings the user gave earlier *inside the test period* (``data.history.histories_before``).

``python -m twotower_utils sequence`` (``make sequence-tune``) makes the validation choices and writes them
(each protocol's tower, its history length and epochs, the baselines' settings), with the command, the date and
the validation scores, to the presets (``twotower_utils/presets/sequence.json``); ``presets.sequence_model``
reads them.
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
from twotower_utils.evaluation import baselines
from twotower_utils.evaluation.counting import filtered_topk_accuracy, seen_matrix, topk_accuracy
from twotower_utils.evaluation.metrics import model_scores, ranking_metrics
from twotower_utils.experiments import comparison
from twotower_utils.experiments.workflow import load_data
from twotower_utils.results import write_json_atomic
from twotower_utils.runtime import progress, say
from twotower_utils.training import train

PROG = "python -m twotower_utils sequence"
PROTOCOLS = {"leave_latest": 0.2, "leave_one_out": None}  # held-out share of each user's ratings (None: one)
COLUMNS = ("HR@10", "NDCG@10", "HR@100")  # all filtered
TARGET = "HR@10"
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


def baseline_scores(data: MovieLens, train_frame: pd.DataFrame, histories: np.ndarray, choices: dict) -> dict:
    """Most-popular, EASE, last item and recency-weighted EASE scores, one row per history (``histories``:
    every user id's training history, or one query per test rating for users without training ratings)."""
    users, movies = data.num_users, data.num_movies
    recency = choices["recency"]
    plain = baselines.recency_ease_scores(train_frame, histories, users, movies, choices["ease_lambda"], 0.0, 1.0)
    popular = baselines.popularity_scores(train_frame, users, movies)[0]
    return {
        MOST_POPULAR: np.broadcast_to(popular, (len(histories), movies + 1)),
        f"{EASE} (lambda {choices['ease_lambda']:g})": plain,
        LAST_ITEM: baselines.last_item_scores(train_frame, histories, users, movies),
        f"{RECENCY_EASE} (lambda {recency['lambda']:g}, a {recency['a']:g}, tau {recency['tau']:g})": (
            baselines.recency_ease_scores(
                train_frame, histories, users, movies, recency["lambda"], recency["a"], recency["tau"]
            )
        ),
    }


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


def run_sequence(config: RunConfig, data: MovieLens, split: Split, seeds: Sequence[int]) -> list[dict]:
    """Train ``config`` once per seed on ``split.train``; each user's query is their training history."""
    runs = []
    exclude = seen(split.train, data)
    for seed in progress(seeds, desc="model seeds", unit="seed", leave=False):
        result = train(config.replace(seed=seed), data, split, verbose=0, curves=False)
        scores = model_scores(result.model, split.train)
        runs.append({**measures(scores, exclude, split.test), "seconds": result.seconds})
    return runs


def run_protocol(
    data: MovieLens,
    protocol: str,
    towers: dict[str, RunConfig],
    seeds: Sequence[int],
    log: Callable[[str], None] = say,
    lambdas: Sequence[float] = RECENCY_LAMBDAS,
) -> dict[str, Any]:
    """One protocol: the baselines (chosen on its validation; recency-weighted EASE over ``lambdas``) and each
    sequence tower, on test."""
    split = protocol_split(data, protocol)
    validation = validation_for(split, protocol)
    choices = choose_baselines(data, validation, lambdas)
    recency = choices["recency"]
    log(
        f"{protocol}: chosen on validation: EASE lambda {choices['ease_lambda']:g}; recency-weighted EASE lambda "
        f"{recency['lambda']:g}, a {recency['a']:g}, tau {recency['tau']:g}"
    )
    histories = user_histories(split.train, data.num_users)
    exclude = seen(split.train, data)
    runs = {
        name: [measures(s, exclude, split.test)]
        for name, s in baseline_scores(data, split.train, histories, choices).items()
    }
    for name, config in towers.items():
        runs[name] = run_sequence(config, data, split, seeds)
        log(f"{protocol}: {name}: HR@10 {np.mean([r['HR@10'] for r in runs[name]]):.4f}")
    return {
        "choices": choices,
        "runs": runs,
        "test": len(split.test),
        "train": len(split.train),
        "validation": len(validation.test),
    }


def summaries(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean and standard deviation over seeds of every column (``comparison.summarise``)."""
    return {
        name: comparison.summarise([{c: r[c] for c in COLUMNS} for r in rs], columns=dict) for name, rs in runs.items()
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


def run_unseen(
    data: MovieLens, config: RunConfig, seeds: Sequence[int], choices: dict, train_fraction: float = 0.8
) -> dict[str, Any]:
    """Baselines and the sequence tower (without the user id: these users have none) on the time cut's users
    that have no training rating, each test rating scored from the user's earlier test-period ratings."""
    queries = unseen_queries(data, train_fraction)
    split, histories, exclude, test = queries["split"], queries["histories"], queries["exclude"], queries["test"]
    runs = {
        name: [measures(s, exclude, test)] for name, s in baseline_scores(data, split.train, histories, choices).items()
    }
    config = config.replace(use_user_id=False)
    name = tower_name(config)
    length = config.model.history_length
    runs[name] = []
    for seed in progress(seeds, desc="model seeds", unit="seed", leave=False):
        result = train(config.replace(seed=seed), data, split, verbose=0, curves=False)
        users = result.model.user_tower.embed(histories[:, -length:])
        movies = result.model.movie_tower.embed_all().numpy()
        runs[name].append({**measures(users @ movies.T, exclude, test), "seconds": result.seconds})
    return {"runs": runs, "test": len(test), "share": queries["share"], "time_cut_test": len(split.test)}


def tower_name(config: RunConfig) -> str:
    """``"sasrec (1 block), L 50"``, ``"gru, L 50 + user id"``..."""
    tower = config.model.user_tower
    kind = tower.kind
    if kind == "sasrec":
        kind += f" ({tower.blocks} block{'s' if tower.blocks > 1 else ''})"
    return f"{kind}, L {tower.history_length}{' + user id' if tower.use_user_id else ''}"


def verdict(protocols: dict[str, dict], unseen: dict) -> pd.Series:
    """The goal: each protocol's chosen tower beats recency-weighted EASE (mean and every seed) and the tower
    beats most-popular on the unseen users of the time cut, by filtered HR@10."""
    answers = {}
    for protocol, found in protocols.items():
        recency = next(v for k, v in found["runs"].items() if k.startswith(RECENCY_EASE))[0][TARGET]
        tower = next(k for k in found["runs"] if k not in _baseline_names(found["runs"]))
        values = [r[TARGET] for r in found["runs"][tower]]
        answers[f"{protocol}: {tower}, HR@10 (mean)"] = float(np.mean(values))
        answers[f"{protocol}: recency-weighted EASE, HR@10"] = recency
        answers[f"{protocol}: the tower beats recency-weighted EASE on every seed"] = bool(min(values) > recency)
    tower = next(k for k in unseen["runs"] if k not in _baseline_names(unseen["runs"]))
    popular = unseen["runs"][MOST_POPULAR][0][TARGET]
    values = [r[TARGET] for r in unseen["runs"][tower]]
    answers[f"unseen users: {tower}, HR@10 (mean)"] = float(np.mean(values))
    answers["unseen users: most popular, HR@10"] = popular
    answers["unseen users: the tower beats most popular on every seed"] = bool(min(values) > popular)
    return pd.Series(answers)


def _baseline_names(runs: dict) -> set[str]:
    return {k for k in runs if k.startswith((MOST_POPULAR, EASE, LAST_ITEM, RECENCY_EASE))}


def length_curve(
    data: MovieLens, protocol: str, config: RunConfig, lengths: Sequence[int], choices: dict | None = None
) -> pd.DataFrame:
    """Validation HR@10 against the history length L: the tower trained with each L (its chosen epochs), and
    recency-weighted EASE (its validation choice) reading only the last L ratings."""
    validation = validation_for(protocol_split(data, protocol), protocol)
    choices = choices or choose_baselines(data, validation)
    recency = choices["recency"]
    exclude = seen(validation.train, data)
    rows = []
    for length in lengths:
        histories = latest_histories(validation.train, np.arange(data.num_users + 1), int(length))
        ease = baselines.recency_ease_scores(
            validation.train,
            histories,
            data.num_users,
            data.num_movies,
            recency["lambda"],
            recency["a"],
            recency["tau"],
        )
        result = train(config.replace(history_length=int(length)), data, validation, verbose=0, curves=False)
        rows.append(
            {
                "L": int(length),
                "tower": measures(model_scores(result.model, validation.train), exclude, validation.test)[TARGET],
                RECENCY_EASE: measures(ease, exclude, validation.test)[TARGET],
            }
        )
    return pd.DataFrame(rows)


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
