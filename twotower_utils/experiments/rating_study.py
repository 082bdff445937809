"""Stronger rating models, like for like: every setting chosen on validation, scored on a split's test ratings.

For one split (``u1``: GroupLens's canonical u1.base/u1.test; or the project's random 80/20) and each seed, a
seeded ``validation`` share of the training part is held out (``data.splits.validation_split``).  Every model is
trained on the rest and its settings are chosen on the held-out part over a small grid (``MODELS``; the grid runs
on the first seed, later seeds reuse its choice -- still a validation choice); the autoencoders stop early on it;
a least-squares blend (``models.ranking.RatingBlend``) of the members' validation predictions is fitted there.

With ``refit=True`` every member is then trained again on the *whole* training part with its chosen setting (the
autoencoders for the epochs validation chose), and the blend's weights, fitted on validation, combine the refitted
members on test -- the usual "probe, then retrain on probe + train" of rating competitions: the held-out share
of the ratings is not lost to the final models.

Models: user + movie biases, time-aware biases (timeSVD++'s baseline terms), biased MF by ALS (the presets'
setting), Bayesian MF by Gibbs sampling (with and without time effects), I-AutoRec, GLocal-K, and the project's
TensorFlow rating models (``tf_member``: a ``presets.rating_models`` name or ``"multitask"``).

    rows = run_split(data, make_split(data, "u1"), models=["biases", "Bayesian timeMF"], seeds=[0])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split, validation_split
from twotower_utils.evaluation.rating import predict_frame, rating_errors
from twotower_utils.models.autorec import GLocalK, IAutoRec
from twotower_utils.models.bayesian_mf import BayesianMF, TimeBiases
from twotower_utils.models.ranking import RatingBlend
from twotower_utils.models.rating_baselines import BiasedMF, Biases
from twotower_utils.runtime import say

VALIDATION = 0.05  # the held-out share of the training part the choices are made on
BLEND = "blend (weights fitted on validation)"


def rmse_mae(predicted: np.ndarray, frame: pd.DataFrame) -> dict[str, float]:
    """Test RMSE and MAE of ``predicted`` against ``frame``'s ratings."""
    return rating_errors(predicted, frame["user_rating"].to_numpy())


def predictions(model, frame: pd.DataFrame) -> np.ndarray:
    """A fitted model's ratings of ``frame``'s pairs, clipped to the 1-5 scale."""
    if hasattr(model, "predict_frame"):
        return np.clip(model.predict_frame(frame), 1.0, 5.0)
    return np.clip(predict_frame(model, frame), 1.0, 5.0)


# --- the models: name -> (grid of settings, fit(settings, data, train, validation, seed) -> model) ------------
# ``validation`` is None when a model is refitted on the whole training part: the autoencoders then train for
# the epochs their validation run chose (``refit_settings``).


def _biases(settings, data, train, validation, seed):
    return Biases(data.num_users, data.num_movies, **settings).fit(train)


def _time_biases(settings, data, train, validation, seed):
    return TimeBiases(data.num_users, data.num_movies, **settings).fit(train)


def _als(settings, data, train, validation, seed):
    with threadpool_limits(1):
        return BiasedMF(data.num_users, data.num_movies, seed=seed, **settings).fit(train)


def _bayesian(settings, data, train, validation, seed):
    return BayesianMF(data.num_users, data.num_movies, seed=seed, **settings).fit(train)


def _autorec(settings, data, train, validation, seed):
    return IAutoRec(seed=seed, **settings).fit(train, data.num_users, data.num_movies, validation=validation)


def _glocal(settings, data, train, validation, seed):
    return GLocalK(seed=seed, **settings).fit(train, data.num_users, data.num_movies, validation=validation)


# How long the samplers and autoencoders run: "smoke" (the tests), "short" (the notebook's teaching run), "full"
# (the study: Bayesian MF's sweeps as BPMF's authors ran ML-100K-sized sets; the autoencoders early-stopped).
EFFORT = {
    "smoke": {
        "sweeps": {"burn_in": 5, "samples": 10},
        "autorec": {"epochs": 20, "patience": 2},
        "glocal": {"pretrain_epochs": 1, "finetune_epochs": 2},
    },
    "short": {
        "sweeps": {"burn_in": 10, "samples": 40},
        "autorec": {"epochs": 150, "patience": 3, "eval_every": 10},
        "glocal": {"pretrain_epochs": 5, "finetune_epochs": 5},
    },
    "full": {
        "sweeps": {"burn_in": 30, "samples": 100},
        "autorec": {"epochs": 600, "patience": 5, "eval_every": 10},
        "glocal": {"pretrain_epochs": 20, "finetune_epochs": 30},
    },
}


def model_grid(effort: str = "full") -> dict[str, tuple[list[dict[str, Any]], Callable]]:
    """Every model's grid (its first entry is its default) and fit function, at an ``EFFORT`` level."""
    if effort not in EFFORT:
        raise ValueError(f"effort must be one of {list(EFFORT)}, got {effort!r}")
    sweeps, autorec = EFFORT[effort]["sweeps"], EFFORT[effort]["autorec"]
    glocal = {**EFFORT[effort]["glocal"], "patience": 4}
    return {
        "biases": ([{"lam": 3.0}, {"lam": 10.0}], _biases),
        "time biases": ([{}, {"lam_day": 2.0, "lam_bin": 10.0}, {"lam_day": 10.0, "lam_bin": 50.0}], _time_biases),
        "biased MF (ALS)": ([{"factors": 120, "lam": 0.1}], _als),
        "Bayesian MF": ([{"factors": 10, **sweeps}], _bayesian),
        "Bayesian timeMF": ([{"factors": f, "time_effects": True, **sweeps} for f in (10, 30)], _bayesian),
        "I-AutoRec": ([{"l2": lam, **autorec} for lam in (100.0, 300.0)], _autorec),
        "GLocal-K": ([glocal], _glocal),
    }


MODEL_NAMES = tuple(model_grid())


def tf_member(name: str) -> tuple[list[dict[str, Any]], Callable]:
    """A TensorFlow rating model of the project (its preset settings and epochs) or notebook 07's multitask model
    (``"multitask"``), as a grid entry."""

    def fit(settings, data, train, validation, seed):
        from twotower_utils.experiments import ranking_stage  # deferred: TensorFlow's models only when asked

        target = ranking_stage.MULTITASK if name == "multitask" else name
        return ranking_stage.fit_rating_model(target, data, Split(train, train.iloc[:0], "refit"), seed)

    return [{}], fit


def refit_settings(settings: dict[str, Any], model) -> dict[str, Any]:
    """The setting that trains ``model`` again without validation: an autoencoder for the epochs it stopped at
    (GLocal-K: its fine-tuning epochs; 0 keeps the pretrained network)."""
    if isinstance(model, GLocalK):
        return {**settings, "finetune_epochs": int(model.best_epoch)}
    if isinstance(model, IAutoRec):
        return {**settings, "epochs": max(int(model.best_epoch), 1)}
    return dict(settings)


def run_split(
    data: MovieLens,
    split: Split,
    models: Sequence[str] = MODEL_NAMES,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    validation: float = VALIDATION,
    effort: str = "full",
    refit: bool = False,
    tf_models: Sequence[str] = (),
    log: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Every model of ``models`` (and ``tf_models``) and their blend on one split, per seed: ``{"chosen": {name:
    setting}, "runs": {name: [per-seed test RMSE/MAE, validation RMSE, fit seconds]}, "summary": ...}``."""
    grid_all = model_grid(effort)
    unknown = [name for name in models if name not in grid_all]
    if unknown:
        raise ValueError(f"unknown rating model(s) {unknown}; choose from {list(grid_all)}")
    if not 0 < validation < 1:
        raise ValueError(f"validation must be a share between 0 and 1, got {validation!r}")
    grid = {name: grid_all[name] for name in models}
    for name in tf_models:
        grid[name] = tf_member(name)
    chosen: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {}
    for seed in seeds:
        fold = validation_split(split.train, validation, seed)
        log(f"[{split.name} seed {seed}] train {len(fold.train):,}, validation {len(fold.test):,}")
        validation_columns, test_columns = [], []
        for name, (settings_grid, fit) in grid.items():
            best = None
            for settings in [chosen[name]] if name in chosen else settings_grid:
                start = time.perf_counter()
                model = fit(settings, data, fold.train, fold.test, seed)
                seconds = time.perf_counter() - start
                predicted = predictions(model, fold.test)
                score = rmse_mae(predicted, fold.test)["rmse"]
                epoch = f", best epoch {model.best_epoch}" if hasattr(model, "best_epoch") else ""
                log(f"  {name} {settings}: validation RMSE {score:.4f} ({seconds:.0f} s{epoch})")
                if best is None or score < best[0]:
                    best = (score, settings, model, seconds, predicted)
            score, settings, model, seconds, predicted = best
            chosen[name] = settings
            validation_columns.append(predicted)
            run = {"seed": seed, "validation_rmse": score, "fit_seconds": seconds}
            if refit:
                start = time.perf_counter()
                model = fit(refit_settings(settings, model), data, split.train, None, seed)
                run["refit_seconds"] = time.perf_counter() - start
            test_columns.append(predictions(model, split.test))
            run.update(rmse_mae(test_columns[-1], split.test))
            log(f"  -> {name}: test RMSE {run['rmse']:.4f}, MAE {run['mae']:.4f}{' (refitted)' if refit else ''}")
            runs.setdefault(name, []).append(run)
        blend = RatingBlend().fit(np.stack(validation_columns, 1), fold.test)
        score = rmse_mae(blend.predict(np.stack(validation_columns, 1)), fold.test)["rmse"]
        test = rmse_mae(blend.predict(np.stack(test_columns, 1)), split.test)
        weights = dict(zip(["intercept", *grid], np.round(blend.weights, 4).tolist(), strict=True))
        log(f"  blend: validation RMSE {score:.4f}, test RMSE {test['rmse']:.4f}; weights {weights}")
        runs.setdefault(BLEND, []).append({"seed": seed, "validation_rmse": score, **test, "weights": weights})
    return {
        "split": split.name,
        "effort": effort,
        "refit": refit,
        "chosen": chosen,
        "runs": runs,
        "summary": summarise(runs),
    }


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over the seeds of each model's figures."""
    summary = {}
    for name, entries in runs.items():
        row: dict[str, float] = {}
        for key in ("rmse", "mae", "validation_rmse", "fit_seconds", "refit_seconds"):
            values = [e[key] for e in entries if key in e]
            if values:
                row[key] = float(np.mean(values))
                row[f"{key}_std"] = float(np.std(values))
        row["seeds"] = len(entries)
        summary[name] = row
    return summary


def table(summary: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Test RMSE and MAE (mean, std over seeds), validation RMSE and seconds per model, best RMSE first."""
    rows = {
        name: {
            "test RMSE": row["rmse"],
            "± RMSE": row["rmse_std"],
            "test MAE": row["mae"],
            "validation RMSE": row["validation_rmse"],
            "fit s": row.get("fit_seconds", np.nan) + row.get("refit_seconds", 0.0),
            "seeds": int(row["seeds"]),
        }
        for name, row in summary.items()
    }
    return pd.DataFrame(rows).T.sort_values("test RMSE")


def print_table(name: str, summary: dict[str, dict[str, float]]) -> None:
    """The summary of one split as text."""
    print(f"\n{name}: test RMSE / MAE, mean +- std over seeds")
    print(f"{'model':<36} {'RMSE':>17} {'MAE':>17} {'fit s':>7}")
    for model, row in summary.items():
        seconds = row.get("fit_seconds", 0.0) + row.get("refit_seconds", 0.0)
        print(
            f"{model:<36} {row['rmse']:.4f} +- {row['rmse_std']:.4f} {row['mae']:.4f} +- {row['mae_std']:.4f} "
            f"{seconds:7.0f}"
        )
    print(flush=True)
