"""Stronger rating models on MovieLens 100K, everything chosen on validation, scored on test.

For each split (``u1``: GroupLens's canonical u1.base/u1.test; ``random``: the project's seed split, seed 42,
80/20) and each seed, a seeded ``--validation`` fraction of the training part is held out (``validation_split``).
Every model is trained on the rest; its settings are chosen on that validation part over a small grid (the grid
runs on the first seed of each split, later seeds reuse its choice -- still a validation choice), autoencoders stop
early on it, and a least-squares blend (``RatingBlend``) of all members' validation predictions is fitted there.
Test RMSE/MAE per model and for the blend: mean and standard deviation over the seeds, with fit times.

Models: user + movie biases, time-aware biases (timeSVD++'s baseline terms), biased MF by ALS (the preset),
Bayesian MF by Gibbs sampling (with and without time effects), I-AutoRec, GLocal-K, and optionally the project's
TensorFlow rating models (``--tf-models``: names from ``presets.rating_models`` or ``multitask``).

    python benchmarks/study_rating_models.py --output rating_study.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split, make_split, validation_split
from twotower_utils.evaluation.rating import predict_frame
from twotower_utils.models.autorec import GLocalK, IAutoRec
from twotower_utils.models.bayesian_mf import BayesianMF, TimeBiases
from twotower_utils.models.ranking import RatingBlend
from twotower_utils.models.rating_baselines import BiasedMF, Biases


def rmse_mae(predicted: np.ndarray, frame) -> dict[str, float]:
    error = np.asarray(predicted, np.float64) - frame["user_rating"].to_numpy(np.float64)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def predictions(model, frame) -> np.ndarray:
    if hasattr(model, "predict_frame"):
        return np.clip(model.predict_frame(frame), 1.0, 5.0)
    return np.clip(predict_frame(model, frame), 1.0, 5.0)


# name -> (grid of settings, fit(settings, data, fold, seed) -> model); the first grid entry is the default
def _biases(settings, data, fold, seed):
    return Biases(data.num_users, data.num_movies, **settings).fit(fold.train)


def _time_biases(settings, data, fold, seed):
    return TimeBiases(data.num_users, data.num_movies, **settings).fit(fold.train)


def _als(settings, data, fold, seed):
    with threadpool_limits(1):
        return BiasedMF(data.num_users, data.num_movies, seed=seed, **settings).fit(fold.train)


def _bayesian(settings, data, fold, seed):
    return BayesianMF(data.num_users, data.num_movies, seed=seed, **settings).fit(fold.train)


def _autorec(settings, data, fold, seed):
    return IAutoRec(seed=seed, **settings).fit(fold.train, data.num_users, data.num_movies, validation=fold.test)


def _glocal(settings, data, fold, seed):
    return GLocalK(seed=seed, **settings).fit(fold.train, data.num_users, data.num_movies, validation=fold.test)


def model_grid(quick: bool) -> dict[str, tuple[list[dict], object]]:
    sweeps = {"burn_in": 5, "samples": 10} if quick else {"burn_in": 30, "samples": 100}
    autorec = {"epochs": 20, "patience": 2} if quick else {"epochs": 600, "patience": 5, "eval_every": 10}
    glocal = {"pretrain_epochs": 1, "finetune_epochs": 2} if quick else {"pretrain_epochs": 20, "finetune_epochs": 30}
    glocal["patience"] = 4
    return {
        "biases": ([{"lam": 3.0}, {"lam": 10.0}], _biases),
        "time biases": ([{}, {"lam_day": 2.0, "lam_bin": 10.0}, {"lam_day": 10.0, "lam_bin": 50.0}], _time_biases),
        "biased MF (ALS)": ([{"factors": 120, "lam": 0.1}], _als),
        "Bayesian MF": ([{"factors": 10, **sweeps}], _bayesian),
        "Bayesian timeMF": (
            [{"factors": f, "time_effects": True, **sweeps} for f in (10, 30)],
            _bayesian,
        ),
        "I-AutoRec": ([{"l2": lam, **autorec} for lam in (100.0, 300.0)], _autorec),
        "GLocal-K": ([glocal], _glocal),
    }


def tf_member(name: str):
    """A TensorFlow rating model of the project (preset settings) or the multitask model, as a fit function."""

    def fit(settings, data, fold, seed):
        from twotower_utils.experiments import ranking_stage  # deferred: only with --tf-models

        target = ranking_stage.MULTITASK if name == "multitask" else name
        return ranking_stage.fit_rating_model(target, data, fold, seed)

    return [{}], fit


def study(args) -> dict:
    data = MovieLens.load(download=False)
    grid = model_grid(args.quick)
    grid = {name: grid[name] for name in args.models}
    for name in args.tf_models:
        grid[name] = tf_member(name)
    results: dict = {"command": " ".join(["python", *sys.argv]), "splits": {}}
    for split_name in args.splits:
        split = make_split(data, "u1") if split_name == "u1" else make_split(data, "random", 42, 0.8)
        chosen: dict[str, dict] = {}
        runs: dict[str, list[dict]] = {}
        for seed in args.seeds:
            fold = validation_split(split.train, args.validation, seed)
            fold = Split(fold.train, fold.test, "validation")
            print(f"[{split_name} seed {seed}] train {len(fold.train)}, validation {len(fold.test)}", flush=True)
            validation_columns, test_columns, members = [], [], []
            for name, (settings_grid, fit) in grid.items():
                candidates = [chosen[name]] if name in chosen else settings_grid
                best = None
                for settings in candidates:
                    start = time.perf_counter()
                    model = fit(settings, data, fold, seed)
                    seconds = time.perf_counter() - start
                    validation = rmse_mae(predictions(model, fold.test), fold.test)["rmse"]
                    extra = f", best epoch {model.best_epoch}" if hasattr(model, "best_epoch") else ""
                    print(f"  {name} {settings}: validation RMSE {validation:.4f} ({seconds:.0f}s{extra})", flush=True)
                    if best is None or validation < best[0]:
                        best = (validation, settings, model, seconds)
                validation, settings, model, seconds = best
                chosen[name] = settings
                test = rmse_mae(predictions(model, split.test), split.test)
                print(f"  -> {name}: test RMSE {test['rmse']:.4f}, MAE {test['mae']:.4f}", flush=True)
                runs.setdefault(name, []).append(
                    {"seed": seed, "validation_rmse": validation, **test, "fit_seconds": seconds}
                )
                validation_columns.append(predictions(model, fold.test))
                test_columns.append(predictions(model, split.test))
                members.append(name)
            blend = RatingBlend().fit(np.stack(validation_columns, 1), fold.test)
            validation = rmse_mae(blend.predict(np.stack(validation_columns, 1)), fold.test)["rmse"]
            test = rmse_mae(blend.predict(np.stack(test_columns, 1)), split.test)
            weights = dict(zip(["intercept", *members], np.round(blend.weights, 4).tolist(), strict=True))
            print(f"  blend: validation RMSE {validation:.4f}, test RMSE {test['rmse']:.4f}; {weights}", flush=True)
            runs.setdefault("blend", []).append(
                {"seed": seed, "validation_rmse": validation, **test, "weights": weights}
            )
        results["splits"][split_name] = {"chosen": chosen, "runs": runs, "summary": summarise(runs)}
        print_table(split_name, results["splits"][split_name]["summary"])
        if args.output:
            Path(args.output).write_text(json.dumps(results, indent=2))
    return results


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    summary = {}
    for name, entries in runs.items():
        row = {}
        for key in ("rmse", "mae", "validation_rmse", "fit_seconds"):
            values = [e[key] for e in entries if key in e]
            if values:
                row[key] = float(np.mean(values))
                row[f"{key}_std"] = float(np.std(values))
        row["seeds"] = len(entries)
        summary[name] = row
    return summary


def print_table(split_name: str, summary: dict[str, dict[str, float]]) -> None:
    print(f"\n{split_name}: test RMSE / MAE, mean +- std over seeds")
    print(f"{'model':<28} {'RMSE':>17} {'MAE':>17} {'fit s':>7}")
    for name, row in summary.items():
        seconds = f"{row['fit_seconds']:7.0f}" if "fit_seconds" in row else " " * 7
        print(
            f"{name:<28} {row['rmse']:.4f} +- {row['rmse_std']:.4f} {row['mae']:.4f} +- {row['mae_std']:.4f} {seconds}"
        )
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", nargs="+", default=["u1", "random"], choices=["u1", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--validation", type=float, default=0.05, help="validation fraction of the training part")
    names = list(model_grid(False))
    parser.add_argument("--models", nargs="+", default=names, choices=names)
    parser.add_argument("--tf-models", nargs="*", default=[], help="preset rating model names, or 'multitask'")
    parser.add_argument("--quick", action="store_true", help="a few sweeps/epochs only (smoke test)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    for variable in ("TFDS_DATA_DIR", "TWOTOWER_ML100K_DIR"):
        if variable not in os.environ:
            print(f"note: ${variable} is not set", file=sys.stderr)
    study(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
