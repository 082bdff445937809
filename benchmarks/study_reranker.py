"""Study: re-ranking stage one's candidates with every training signal, a linear and a gradient-boosted ranker.

    python benchmarks/study_reranker.py [--split-seeds 42 7] [--seeds 42 43 44] [--folds 1]
        [--output results/ranking/study_reranker.json]

Stage one is the best two-tower (``presets.best_two_tower``).  For each random 80/20 split (``--split-seeds``) and
model seed (``--seeds``):

1. *Training lists*: stage one and every signal of ``evaluation.ltr_features`` are fitted on a validation fold's
   training part (``tuning.validation_folds``; ``--folds`` > 1 stacks several folds' lists); each user's top N
   candidates (the user's training movies left out) are labelled by the fold's held-out movies.
2. *Choices, on validation only*: on the first model seed of each split the fold's users are halved at random;
   each (N, LightGBM setting) of ``GRID`` is fitted on one half and judged by the hit rate @10 of the other
   half's lists (over every held-out user, so different N compare fairly).  The best is used for every seed.
3. *Re-rankers*, fitted on all the fold's lists: the existing linear listwise re-ranker
   (``reranking.LearnedReranker``) on its own inputs (stage one, predicted rating, EASE;
   ``reranking.candidate_features``) at the N the presets chose, the same linear model on every feature, and
   LightGBM's LambdaRank (``evaluation.gbdt_reranker``).
4. *Test*: stage one and the signals are fitted again on the whole training part; the test candidates are
   re-ranked and scored under the list protocol (the user's training movies never shown) with
   ``ranking_stage.pipeline_measures``: filtered HR@10 and NDCG@10.

Prints the table (mean ± std and every seed, per split), LightGBM's feature importances (gain) and each stage's
training and scoring seconds; writes everything to ``--output``.  The rating prediction is biased MF by ALS (the
presets' settings; seconds, where the TensorFlow SVD++ of notebook 08 takes a minute); no sequence tower's score
is used (a random split has no sequence protocol, and its training would double the cost).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# (num_leaves, n_estimators, learning_rate) tried for LightGBM; N tried for both
GRID = (
    {"num_leaves": 7, "n_estimators": 200, "learning_rate": 0.05},
    {"num_leaves": 15, "n_estimators": 300, "learning_rate": 0.05},
    {"num_leaves": 31, "n_estimators": 300, "learning_rate": 0.03},
)
CANDIDATES = (25, 50, 100)
HR = "HR@10 filtered"
COLUMNS = (HR, "NDCG@10")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Clock:
    """Seconds per named stage, summed."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def time(self, name: str, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds.setdefault(name, []).append(time.perf_counter() - start)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--folds", type=int, default=1, help="validation folds whose lists are stacked")
    parser.add_argument("--epochs", type=int, default=None, help="stage one's epochs (default: the presets')")
    parser.add_argument("--output", type=Path, default=Path("results/ranking/study_reranker.json"))
    parser.add_argument(
        "--gbdt-features",
        choices=("scale-free", "all"),
        default="scale-free",
        help="LightGBM's inputs: ltr_features.SCALE_FREE (default) or every feature, raw scores and counts too",
    )
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    from twotower_utils import presets
    from twotower_utils.data.loading import load_movielens
    from twotower_utils.data.splits import random_split
    from twotower_utils.evaluation import ltr_features, reranking
    from twotower_utils.evaluation.counting import seen_matrix
    from twotower_utils.evaluation.gbdt_reranker import GBDTReranker
    from twotower_utils.evaluation.metrics import model_scores
    from twotower_utils.experiments import ranking_stage, tuning
    from twotower_utils.results import write_json_atomic
    from twotower_utils.training import train

    data = load_movielens("100k", args.data_dir)
    clock = Clock()
    ease_lambda = presets.ease_lambda()
    recency = presets.sequence_baselines("leave_latest")["recency"]
    als = presets.rating_baselines()["biased MF (ALS)"]
    linear_n = presets.two_stage()["learned"]["N"]
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    log(f"EASE lambda {ease_lambda:g}, recency-weighted EASE {recency}, ALS {als}, linear N {linear_n}")

    def signals_of(frame):
        return clock.time(
            "signals: EASE, recency EASE, ALS (fit)",
            ltr_features.fit_signals,
            frame,
            data.num_users,
            data.num_movies,
            data.movie_vocabulary,
            ease_lambda=ease_lambda,
            recency=recency,
            rating_settings=als,
        )

    def stage_one(part, seed):
        model = clock.time(
            "stage one (train)",
            lambda: train(presets.best_two_tower(seed=seed, **epochs), data, part, verbose=0, curves=False).model,
        )
        return clock.time("stage one (score the catalogue)", model_scores, model)

    def lists(part, scores, signals, n):
        """Candidates, every feature, the linear re-ranker's own inputs and the labels of ``part``'s top n."""
        seen = seen_matrix(part.train, data.num_users, data.num_movies)
        ids = reranking.candidates(scores, seen, n)
        features, names = clock.time("features", ltr_features.candidate_matrix, ids, scores, signals)
        trees, tree_names = (
            (features, names)
            if args.gbdt_features == "all"
            else ltr_features.select(features, names, ltr_features.SCALE_FREE)
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
        return {
            "ids": ids,
            "features": features,
            "trees": trees,
            "tree_names": tree_names,
            "own": own,
            "labels": labels,
            "names": names,
            "seen": seen,
        }

    def held_out_hit_rate(scores, listed, users, part):
        """Hit rate @10 of re-ranked lists over every user of ``users`` with a held-out movie."""
        with_test = np.zeros(len(listed["ids"]), dtype=bool)
        with_test[part.test["user_idx"].to_numpy()] = True
        users = users[with_test[users]]
        order = np.argsort(-scores[users], axis=1, kind="stable")[:, :10]
        return float((np.take_along_axis(listed["labels"][users], order, axis=1).sum(axis=1) > 0).mean())

    report = {
        "command": sys.argv,
        "gbdt_features": args.gbdt_features,
        "grid": list(GRID),
        "candidates": list(CANDIDATES),
        "splits": {},
    }
    importances = []
    start_all = time.perf_counter()
    for split_seed in args.split_seeds:
        split = random_split(data, split_seed)
        folds = tuning.validation_folds(split.train, args.folds)
        fold_signals = [signals_of(f.train) for f in folds]
        test_signals = signals_of(split.train)
        runs: dict[str, list[dict]] = {}
        chosen = None
        for seed in args.seeds:
            started = time.perf_counter()
            fold_scores = [stage_one(f, seed) for f in folds]
            sizes = sorted({*CANDIDATES, linear_n})  # standardised features depend on the list's length: one per N
            fold_lists = {
                n: [lists(f, s, g, n) for f, s, g in zip(folds, fold_scores, fold_signals, strict=True)] for n in sizes
            }
            tree_names = fold_lists[linear_n][0]["tree_names"]

            def stacked(key, n, fold_lists=fold_lists):
                return np.concatenate([fl[key] for fl in fold_lists[n]])

            if chosen is None:  # choose N and LightGBM's setting on halves of the first fold's users
                users = np.random.default_rng(split_seed).permutation(np.arange(1, data.num_users + 1))
                half_a, half_b = users[: len(users) // 2], users[len(users) // 2 :]
                found = {}
                for n in CANDIDATES:
                    first = fold_lists[n][0]
                    stage = -np.broadcast_to(np.arange(n, dtype=np.float64), first["labels"].shape)
                    base = held_out_hit_rate(stage, first, half_b, folds[0])
                    for setting in GRID:
                        ranker = GBDTReranker(seed=seed, **setting).fit_lists(
                            first["trees"][half_a], first["labels"][half_a], tree_names
                        )
                        scores = np.zeros(first["labels"].shape)
                        scores[half_b] = ranker.score_lists(first["trees"][half_b])
                        found[(n, json.dumps(setting))] = held_out_hit_rate(scores, first, half_b, folds[0])
                        log(
                            f"  split {split_seed}, N = {n}, {setting}: validation HR@10 "
                            f"{found[(n, json.dumps(setting))]:.4f} (stage one's order {base:.4f})"
                        )
                n_best, setting_best = max(found, key=lambda key: found[key])
                chosen = {"N": n_best, "setting": json.loads(setting_best), "validation": found[(n_best, setting_best)]}
                report["splits"].setdefault(str(split_seed), {})["choices"] = {
                    f"N={n}, {s}": v for (n, s), v in found.items()
                }
                log(f"split {split_seed}: chosen {chosen}")
            n = chosen["N"]
            gbdt = clock.time(
                "LightGBM (fit)",
                GBDTReranker(seed=seed, **chosen["setting"]).fit_lists,
                stacked("trees", n),
                stacked("labels", n),
                tree_names,
            )
            linear_own = clock.time(
                "linear (fit)",
                reranking.LearnedReranker(seed=seed).fit,
                stacked("own", linear_n),
                stacked("labels", linear_n),
            )
            linear_all = clock.time(
                "linear (fit)",
                reranking.LearnedReranker(seed=seed).fit,
                stacked("features", linear_n),
                stacked("labels", linear_n),
            )
            importances.append(gbdt.importances().assign(split=split_seed, seed=seed))

            scores = stage_one(split, seed)
            test = {m: lists(split, scores, test_signals, m) for m in {n, linear_n}}

            def measure(listed, rerank, split=split):
                matrix = reranking.two_stage_scores(listed["ids"], rerank, data.num_movies)
                return ranking_stage.pipeline_measures(matrix, split, listed["seen"])

            stage = -np.broadcast_to(np.arange(n, dtype=np.float64), test[n]["ids"].shape)
            rows = {
                "stage one alone (best two-tower)": measure(test[n], stage),
                f"linear re-ranker, its inputs, N = {linear_n}": measure(
                    test[linear_n], clock.time("linear (score)", linear_own.score, test[linear_n]["own"])
                ),
                f"linear re-ranker, every feature, N = {linear_n}": measure(
                    test[linear_n], clock.time("linear (score)", linear_all.score, test[linear_n]["features"])
                ),
                f"LightGBM lambdarank, {args.gbdt_features} features, N = {n}": measure(
                    test[n], clock.time("LightGBM (score)", gbdt.score_lists, test[n]["trees"])
                ),
            }
            for name, measures in rows.items():
                runs.setdefault(name, []).append({"seed": seed, **{c: float(measures[c]) for c in COLUMNS}})
            log(
                f"split {split_seed}, seed {seed}: "
                + ", ".join(f"{name.split(',')[0]} {m[HR]:.4f}/{m['NDCG@10']:.4f}" for name, m in rows.items())
                + f"  ({time.perf_counter() - started:.0f} s)"
            )
        report["splits"].setdefault(str(split_seed), {}).update({"chosen": chosen, "runs": runs})

    print()
    for split_seed, found in report["splits"].items():
        print(f"random 80/20 split, split seed {split_seed} (filtered HR@10 / NDCG@10, list protocol)")
        rows = []
        for name, runs in found["runs"].items():
            row = {"pipeline": name}
            for column in COLUMNS:
                values = np.array([r[column] for r in runs])
                row[column] = f"{values.mean():.4f} ± {values.std():.4f}"
            row["every seed (HR@10)"] = " ".join(f"{r[HR]:.4f}" for r in runs)
            row["every seed (NDCG@10)"] = " ".join(f"{r['NDCG@10']:.4f}" for r in runs)
            rows.append(row)
        with pd.option_context("display.width", 250, "display.max_colwidth", 60):
            print(pd.DataFrame(rows).set_index("pipeline").to_string())
        print()
    table = pd.concat(importances)
    mean_gain = table.groupby("feature")[["gain share", "splits"]].mean().sort_values("gain share", ascending=False)
    print("LightGBM feature importances (share of the total gain, mean over splits and seeds)")
    print(mean_gain.to_string(float_format=lambda v: f"{v:.3f}"))
    print()
    cost = {
        name: {"calls": len(v), "mean s": float(np.mean(v)), "total s": float(np.sum(v))}
        for name, v in clock.seconds.items()
    }
    print("cost per stage (seconds)")
    print(pd.DataFrame(cost).T.to_string(float_format=lambda v: f"{v:.2f}"))
    report["importances"] = mean_gain.reset_index().to_dict(orient="records")
    report["cost"] = cost
    report["seconds"] = time.perf_counter() - start_all
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output, report)
    print(f"\nwrote {args.output} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
