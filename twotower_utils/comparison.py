"""Notebook 06's machinery: the baselines, the switch-by-switch walk from the report's model
to the best two-tower, several seeds, one table and one plot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from twotower_utils import baselines
from twotower_utils.config import ExperimentConfig
from twotower_utils.data import MovieLens, Split, validation_split
from twotower_utils.metrics import evaluate_scores, model_scores
from twotower_utils.training import train

# Chosen by 5-fold validation inside the training data (`make tune`, tuning.py), never on test.
BEST_SWITCHES = {
    "logq_correction": 1.2,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "batch_size": 2048,
    "l2_regularization": 0.06,
    "embedding_dim": 128,
    "learning_rate_schedule": "cosine",
    "epochs": 20,
}
BEST_SUFFIX = " (best)"


def walk(report: ExperimentConfig, best: dict | None = None) -> list[tuple[str, ExperimentConfig]]:
    """The report's config, then one more switch per step up to the best one (its name ends in
    ``BEST_SUFFIX``), then side roads off the best one."""
    best = {**BEST_SWITCHES, **(best or {})}
    steps = [("report's recipe", report)]
    config = report.replace(logq_correction=best["logq_correction"])
    steps.append((f"+ logQ correction ({best['logq_correction']:g})", config))
    steps.append(("+ accidental hits removed (not kept)", config.replace(remove_accidental_hits=True)))
    config = config.replace(
        optimizer=best["optimizer"], learning_rate=best["learning_rate"], batch_size=best["batch_size"]
    )
    steps.append((f"+ {best['optimizer']} {best['learning_rate']:g}, batch {best['batch_size']}", config))
    config = config.replace(l2_regularization=best["l2_regularization"])
    steps.append((f"+ L2 {best['l2_regularization']:g}", config))
    config = config.replace(embedding_dim=best["embedding_dim"])
    steps.append((f"+ dimension {best['embedding_dim']}", config))
    config = config.replace(learning_rate_schedule=best["learning_rate_schedule"], epochs=best["epochs"])
    steps.append((f"+ {best['learning_rate_schedule']} schedule, {best['epochs']} epochs{BEST_SUFFIX}", config))
    steps.append(("best + normalised, temperature 0.2", config.replace(normalize_embeddings=True, temperature=0.2)))
    steps.append(
        (
            "best + side features",
            config.replace(user_features=("age", "gender", "occupation", "zip"), movie_features=("genres", "year")),
        )
    )
    steps.append(("best + deeper towers (64)", config.replace(tower_layers=(64,))))
    return steps


def best_step(steps: list[tuple[str, ExperimentConfig]]) -> tuple[str, ExperimentConfig]:
    """The walk's best step (the one named with ``BEST_SUFFIX``)."""
    return next(step for step in steps if step[0].endswith(BEST_SUFFIX))


def baseline_scores(data: MovieLens, split: Split, seed: int = 0, validation_fraction: float = 0.1) -> dict:
    """Random, most-popular and EASE scores on ``split``; EASE's lambda picked on validation."""
    carved = validation_split(split.train, validation_fraction, seed)
    lam, tried = baselines.tune_ease(carved.train, carved.test, data.num_users, data.num_movies)
    return {
        "scores": {
            "random": baselines.random_scores(data.num_users, data.num_movies, seed),
            "most popular": baselines.popularity_scores(split.train, data.num_users, data.num_movies),
            f"EASE (lambda {lam:g})": baselines.ease_scores(split.train, data.num_users, data.num_movies, lam),
        },
        "ease_lambda": lam,
        "ease_validation_hit_rate_at_10": tried,
    }


def measure_scores(scores: np.ndarray, data: MovieLens, split: Split, ks: Sequence[int]) -> dict:
    return evaluate_scores(scores, split.train, split.test, data.num_users, data.num_movies, ks)


def measure_two_tower(config: ExperimentConfig, data: MovieLens, split: Split, seeds: Sequence[int], ks) -> list[dict]:
    """Train once per model seed (the split stays fixed) and evaluate each model."""
    runs = []
    for seed in seeds:
        result = train(config.replace(seed=seed), data, split, verbose=0, curves=False)
        runs.append({**measure_scores(model_scores(result.model), data, split, ks), "seconds": result.seconds})
    return runs


def flatten(result: dict) -> dict[str, float]:
    """The table's columns of one evaluation."""
    return {
        "HR@10": result["hit_rate"][10],
        "HR@10 filtered": result["hit_rate_filtered"][10],
        "HR@100 filtered": result["hit_rate_filtered"][100],
        "Recall@10": result["ranking"]["recall@10"],
        "NDCG@10": result["ranking"]["ndcg@10"],
        "MAP@10": result["ranking"]["map@10"],
        "MRR": result["ranking"]["mrr"],
        "coverage@10": result["coverage@10"],
        "head share@10": result["popularity@10"]["share_of_slots_from_top_10pct_movies"],
    }


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (over seeds) of every column."""
    frame = pd.DataFrame([flatten(r) for r in runs])
    return {c: {"mean": float(frame[c].mean()), "std": float(frame[c].std(ddof=0))} for c in frame.columns}


def table(summaries: dict[str, dict]) -> pd.DataFrame:
    """One row per model, 'mean ± std' cells."""
    rows = {
        name: {c: f"{v['mean']:.4f} ± {v['std']:.4f}" if v["std"] else f"{v['mean']:.4f}" for c, v in s.items()}
        for name, s in summaries.items()
    }
    return pd.DataFrame(rows).T


def plot_walk(summaries: dict[str, dict], title: str):
    """Hit rate @10 of every model under both protocols, error bars over seeds."""
    import matplotlib.pyplot as plt

    names = list(summaries)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    for offset, column, label in ((-0.2, "HR@10", "unfiltered (FactorizedTopK)"), (0.2, "HR@10 filtered", "filtered")):
        means = [summaries[n][column]["mean"] for n in names]
        stds = [summaries[n][column]["std"] for n in names]
        ax.barh(y + offset, means, height=0.4, xerr=stds, label=label)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("test hit rate @10")
    ax.set_title(title)
    ease = [n for n in names if n.startswith("EASE")]
    if ease:
        ax.axvline(summaries[ease[0]]["HR@10 filtered"]["mean"], color="grey", linestyle="--", linewidth=1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.tight_layout()
    return fig
