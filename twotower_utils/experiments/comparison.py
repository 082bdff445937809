"""Notebook 06's machinery: the baselines, the switch-by-switch walk from the report's model to the best
two-tower, several seeds, the checks (evaluators agree, 5-fold validation), the temporal splits, the
verdict, one table and one plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from twotower_utils import presets
from twotower_utils.config import RunConfig
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split, make_split, validation_split
from twotower_utils.evaluation import baselines
from twotower_utils.evaluation.counting import filtered_topk_accuracy
from twotower_utils.evaluation.metrics import evaluate_scores, model_scores
from twotower_utils.experiments import tuning
from twotower_utils.runtime import progress, say
from twotower_utils.training import train

BEST_SUFFIX = " (best)"
# The walk's switches, in its order (grouped: optimiser with its rate and batch, schedule with its epochs).
WALKED = (
    "logq_correction",
    "optimizer",
    "learning_rate",
    "batch_size",
    "l2_regularization",
    "embedding_dim",
    "learning_rate_schedule",
    "epochs",
)
SIDE_FEATURES = {"user_features": ("age", "gender", "occupation", "zip"), "movie_features": ("genres", "year")}


def best_switches(**overrides) -> dict:
    """The best two-tower's switches (``presets.best_switches``, chosen by ``make tune``) with some values replaced
    (notebook 06's parameters); unknown names are refused."""
    switches = presets.best_switches()
    unknown = set(overrides) - set(switches)
    if unknown:
        raise ValueError(f"not a switch of the best model: {sorted(unknown)}; the switches are {sorted(switches)}")
    return {**switches, **overrides}


def walk(report: RunConfig, best: dict | None = None, side_roads: bool = True) -> list[tuple[str, RunConfig]]:
    """The report's run, then one more switch per step up to the best one (its name ends in
    ``BEST_SUFFIX``), then (``side_roads``) three roads off the best one: normalised embeddings, side features,
    deeper towers.  ``best``: switches replacing the chosen ones (``best_switches``); a chosen switch outside the
    walk's groups joins the last step."""
    best = {**presets.best_switches(), **(best or {})}
    others = {name: value for name, value in best.items() if name not in WALKED}
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
    config = config.replace(learning_rate_schedule=best["learning_rate_schedule"], epochs=best["epochs"], **others)
    steps.append((f"+ {best['learning_rate_schedule']} schedule, {best['epochs']} epochs{BEST_SUFFIX}", config))
    if not side_roads:
        return steps
    steps.append(("best + normalised, temperature 0.2", config.replace(normalize_embeddings=True, temperature=0.2)))
    steps.append(("best + side features", config.replace(**SIDE_FEATURES)))
    steps.append(("best + deeper towers (64)", config.replace(tower_layers=(64,))))
    return steps


def best_step(steps: list[tuple[str, RunConfig]]) -> tuple[str, RunConfig]:
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


def measure_two_tower(
    config: RunConfig, data: MovieLens, split: Split, seeds: Sequence[int], ks, keep_models: bool = False
) -> list[dict]:
    """Train once per model seed (the split stays fixed) and evaluate each model; ``keep_models`` keeps each
    training's ``TrainingResult`` in its run (``run["result"]``, the model is ``.model``) for later checks and
    for serving, so nothing is trained twice."""
    runs = []
    for seed in progress(seeds, desc="model seeds", unit="seed", leave=False):
        result = train(config.replace(seed=seed), data, split, verbose=0, curves=False)
        run = {**measure_scores(model_scores(result.model), data, split, ks), "seconds": result.seconds}
        runs.append({**run, "result": result} if keep_models else run)
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


def summarise(runs: list[dict], columns: Callable[[dict], dict[str, float]] = flatten) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (over seeds) of every column (``columns`` turns one run into its row;
    runs that already are rows of numbers pass ``columns=dict``)."""
    frame = pd.DataFrame([columns(r) for r in runs])
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
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

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


def evaluator_check(model, split: Split, ks: Sequence[int]) -> float:
    """The largest difference in filtered hit rate of a trained ``model`` between scoring from the towers
    (TensorFlow, as ``FactorizedTopK`` does) and from the NumPy score matrix the metrics use."""
    from_towers = filtered_topk_accuracy(model, split.train, split.test, ks)
    from_scores = filtered_topk_accuracy(model_scores(model), split.train, split.test, ks)
    return max(abs(from_towers[k] - from_scores[k]) for k in ks)


def validation_check(config: RunConfig, data: MovieLens, split: Split, folds: int) -> dict:
    """``config`` and EASE (its lambda chosen over the same folds) on ``folds`` disjoint validation parts of
    the training split: filtered hit rate @10 per fold and the means."""
    parts = tuning.validation_folds(split.train, folds)
    two_tower = tuning.cross_validate(config, data, parts)
    ease = tuning.cross_validate_ease(data, parts)
    lam = tuning.best_lambda(ease)
    return {
        "folds": folds,
        "best_two_tower": float(np.mean(two_tower)),
        "best_two_tower_folds": two_tower,
        "ease": float(np.mean(ease[lam])),
        "ease_folds": ease[lam],
        "ease_lambda": lam,
    }


def temporal_comparison(
    data: MovieLens,
    models: Sequence[tuple[str, RunConfig]],
    seeds: Sequence[int],
    ks: Sequence[int],
    train_fraction: float = 0.8,
    log: Callable[[str], None] = say,
) -> dict[str, dict]:
    """Most-popular, EASE and ``models`` on the two time-respecting splits (leave-latest-out and the
    global time cut).  On the time cut only users with training ratings are scored (an id tower cannot
    serve the others); ``log`` says how many test interactions that leaves out."""
    summaries = {}
    for split_name in ("leave_latest", "temporal"):
        split = make_split(data, split_name, train_fraction=train_fraction)
        warm = split.test["user_idx"].isin(set(split.train["user_idx"]))
        if not warm.all():
            log(f"{split_name}: {1 - warm.mean():.0%} of test interactions are from users without training ratings")
            split_name = f"{split_name} (warm users)"
            split = Split(split.train, split.test[warm].reset_index(drop=True), split_name)
        scores = baseline_scores(data, split, seed=0)["scores"]
        for name, matrix in scores.items():
            if name != "random":
                summaries[f"{split_name}: {name}"] = summarise([measure_scores(matrix, data, split, ks)])
        for name, config in models:
            summaries[f"{split_name}: {name}"] = summarise(measure_two_tower(config, data, split, seeds, ks))
    return summaries


def verdict(summaries: dict, walk_runs: dict, temporal: dict, best_name: str) -> pd.Series:
    """The comparisons notebook 06 draws, as numbers and yes/no answers (filtered hit rate @10)."""

    def mean(table: dict, name: str) -> float:
        return table[name]["HR@10 filtered"]["mean"]

    ease = next(name for name in summaries if name.startswith("EASE"))
    best = mean(summaries, best_name)
    per_seed = [flatten(run)["HR@10 filtered"] for run in walk_runs[best_name]]
    return pd.Series(
        {
            "best two-tower, filtered HR@10": best,
            "EASE, filtered HR@10": mean(summaries, ease),
            "most popular, filtered HR@10": mean(summaries, "most popular"),
            "report's recipe, filtered HR@10": mean(summaries, "report's recipe"),
            "best over the report's recipe (times)": best / mean(summaries, "report's recipe"),
            "best beats most popular on every seed": min(per_seed) > mean(summaries, "most popular"),
            "best beats EASE on every seed": min(per_seed) > mean(summaries, ease),
            "leave-latest: best beats most popular": mean(temporal, f"leave_latest: {best_name}")
            > mean(temporal, "leave_latest: most popular"),
            "time cut, warm users: best beats most popular": mean(temporal, f"temporal (warm users): {best_name}")
            > mean(temporal, "temporal (warm users): most popular"),
        }
    )
