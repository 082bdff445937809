"""Notebook 07's machinery: one model trained on retrieval and rating together, swept over the two task weights.

Every point of the sweep is the same model (``models.multitask``: the best two-tower's towers and retrieval
loss, plus a rating head) trained with ``loss = w_retrieval * retrieval + w_rating * rating``; rating-only is
``w_retrieval = 0`` and retrieval-only ``w_rating = 0``.  Each point is scored on retrieval (filtered hit
rate @10 from the one counting core; the unfiltered top-100 accuracy that TFRS's tutorial reports) and on
rating (RMSE and MAE, ``evaluation.rating``).

``python -m twotower_utils multitask`` (``make multitask-tune``) chooses what the sweep needs on validation,
never on test: first the rating head (hidden layers, L2) by the rating-only model's RMSE, then which joint
weights come closest to both single-task models, over k disjoint validation folds of the training split
(``experiments.tuning``), cached per (config, fold).  It writes its answers (the head, the rating-only model's
tower L2, the joint weights) with the command, the date, the folds and the validation scores to the presets
(``twotower_utils/presets/multitask.json``); ``presets.multitask_model`` reads them.
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

from twotower_utils import presets
from twotower_utils.config import ConfigError, RunConfig
from twotower_utils.data.movielens import DataUnavailableError, MovieLens
from twotower_utils.data.pipeline import interactions_dataset
from twotower_utils.data.splits import Split
from twotower_utils.evaluation.counting import filtered_topk_accuracy, topk_accuracy
from twotower_utils.evaluation.rating import rating_metrics
from twotower_utils.experiments import comparison, tuning
from twotower_utils.experiments.workflow import prepare
from twotower_utils.results import write_json_atomic
from twotower_utils.runtime import progress, say
from twotower_utils.training import build_for, train

PROG = "python -m twotower_utils multitask"
MEASURE_NAME = "multitask-v1"  # names ``measure`` in the validation cache keys
HIT_RATE = "HR@10 filtered"
RMSE = "RMSE"
TOP100 = "top-100 (unfiltered)"

# TFRS's multitask tutorial (reported, not measured here): 3 epochs, unfiltered top-100 accuracy and RMSE.
TFRS_REPORTED = {
    "rating-specialised (0 : 1)": {TOP100: 0.060, RMSE: 1.113},
    "retrieval-specialised (1 : 0)": {TOP100: 0.233, RMSE: 3.688},
    "joint (1 : 1)": {TOP100: 0.235, RMSE: 1.110},
}
RATING_ONLY = "rating-only (0 : 1)"
RETRIEVAL_ONLY = "retrieval-only (1 : 0)"


def point_name(retrieval_weight: float, rating_weight: float, stop_gradient: bool = False, label: str = "") -> str:
    """``"joint (1 : 0.1)"``, ``"rating-only (0 : 1)"``...: the weights w_retrieval : w_rating."""
    if rating_weight == 0:
        kind = "retrieval-only"
    elif retrieval_weight == 0:
        kind = "rating-only"
    else:
        kind = "joint, rating stop-gradient" if stop_gradient else "joint"
    return f"{kind} ({retrieval_weight:.3g} : {rating_weight:.3g}){f' {label}' if label else ''}"


def sweep_points(
    balanced: float | None,
    rating_weights: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0),
    stop_gradient: bool = True,
    rating_only: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The sweep: rating-only (with ``rating_only``'s changes, default ``presets.rating_only_switches``), retrieval-only,
    joint with ``w_retrieval = 1`` and each of ``rating_weights``, the joint point that balances the losses'
    scales (``w_rating = balanced``; ``None``: no such point), and optionally 1 : 1 with the rating head reading
    the embeddings through a stop-gradient.  Name -> config changes."""
    rating_only = presets.rating_only_switches() if rating_only is None else rating_only
    points = {
        RATING_ONLY: {**rating_only, "retrieval_weight": 0.0, "rating_weight": 1.0},
        RETRIEVAL_ONLY: {"retrieval_weight": 1.0, "rating_weight": 0.0},
    }
    for weight in sorted({float(w) for w in rating_weights}):
        points[point_name(1.0, weight)] = {"retrieval_weight": 1.0, "rating_weight": weight}
    if balanced is not None:
        points[point_name(1.0, balanced, label="balanced")] = {
            "retrieval_weight": 1.0,
            "rating_weight": float(balanced),
        }
    if stop_gradient:
        changes = {"retrieval_weight": 1.0, "rating_weight": 1.0, "rating_stop_gradient": True}
        points[point_name(1.0, 1.0, stop_gradient=True)] = changes
    return points


def loss_scales(config: RunConfig, data: MovieLens, frame: pd.DataFrame) -> dict[str, float]:
    """Per-example retrieval and rating losses of the untrained model over one pass of ``frame`` (the
    training batches as ``train`` makes them): the scale each task's loss starts at."""
    model = build_for(config.replace(retrieval_weight=1.0, rating_weight=1.0), data, frame)
    totals = np.zeros(2)
    for batch in interactions_dataset(frame, config.batch_size, seed=config.seed, ratings=True):
        totals += [float(loss) for loss in model.task_losses(batch, training=True)]
    return {"retrieval": totals[0] / len(frame), "rating": totals[1] / len(frame)}


def balanced_rating_weight(scales: dict[str, float]) -> float:
    """``w_rating`` for ``w_retrieval = 1`` that makes both weighted losses start at the same value:
    weights inversely proportional to each loss at initialisation."""
    if scales["rating"] <= 0 or scales["retrieval"] <= 0:
        raise ValueError(f"loss scales must be positive, got {scales}")
    return scales["retrieval"] / scales["rating"]


def measure(model, split: Split, batch_size: int = 4096) -> dict[str, float]:
    """Retrieval and rating numbers of a multitask model on the split's test part."""
    filtered = filtered_topk_accuracy(model, split.train, split.test, (10, 100), batch_size)
    unfiltered = topk_accuracy(model, split.test, (10, 100), batch_size)
    rating = rating_metrics(model, split.test, batch_size)
    return {
        HIT_RATE: filtered[10],
        "HR@100 filtered": filtered[100],
        "HR@10": unfiltered[10],
        TOP100: unfiltered[100],
        RMSE: rating["rmse"],
        "MAE": rating["mae"],
    }


def run_point(
    config: RunConfig, data: MovieLens, split: Split, seeds: Sequence[int]
) -> tuple[list[dict[str, float]], pd.DataFrame]:
    """Train ``config`` once per model seed and measure each model; also the first seed's history."""
    runs, first_history = [], None
    for seed in progress(seeds, desc="model seeds", unit="seed", leave=False):
        result = train(config.replace(seed=seed), data, split, verbose=0, curves=False)
        runs.append({**measure(result.model, split, config.eval_batch_size), "seconds": result.seconds})
        if first_history is None:
            first_history = result.history
    return runs, first_history


def run_sweep(
    base: RunConfig,
    points: dict[str, dict[str, Any]],
    data: MovieLens,
    split: Split,
    seeds: Sequence[int],
    log: Callable[[str], None] = say,
) -> tuple[dict[str, list[dict]], dict[str, pd.DataFrame]]:
    """Every point of the sweep on ``split``, ``len(seeds)`` models each: runs and first-seed histories."""
    runs, histories = {}, {}
    for name, changes in points.items():
        start = time.perf_counter()
        runs[name], histories[name] = run_point(base.replace(**changes), data, split, seeds)
        summary = summarise(runs[name])
        log(
            f"{name:42s} {HIT_RATE} {summary[HIT_RATE]['mean']:.4f}  RMSE {summary[RMSE]['mean']:.4f}"
            f"  ({time.perf_counter() - start:.0f} s)"
        )
    return runs, histories


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over seeds of every number of ``measure`` (training time left out)."""
    return comparison.summarise([{k: v for k, v in r.items() if k != "seconds"} for r in runs], columns=dict)


def pareto_front(summaries: dict[str, dict]) -> list[str]:
    """The points no other point beats on both filtered HR@10 (higher) and RMSE (lower), best HR first."""

    def value(name):
        return summaries[name][HIT_RATE]["mean"], summaries[name][RMSE]["mean"]

    front = []
    for name in summaries:
        hit, rmse = value(name)
        dominated = any(
            (h >= hit and r <= rmse) and (h > hit or r < rmse) for h, r in (value(o) for o in summaries if o != name)
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: -value(n)[0])


def plot_pareto(summaries: dict[str, dict], title: str, zoom: float = 0.01):
    """Filtered HR@10 against RMSE, one marker per weight setting (error bars over seeds); points on the Pareto
    front are ringed.  The right panel zooms on the points within ``zoom`` of the best hit rate."""
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    front = set(pareto_front(summaries))
    best = max(s[HIT_RATE]["mean"] for s in summaries.values())
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    markers = "osD^v<>pPX*h"
    for i, (name, s) in enumerate(summaries.items()):
        x, y = s[RMSE], s[HIT_RATE]
        for ax in axes:
            if ax is axes[1] and y["mean"] < best - zoom:
                continue
            style = {"fmt": markers[i % len(markers)], "color": f"C{i % 10}", "capsize": 3, "label": name}
            ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], **style)
            if name in front:
                ax.plot(x["mean"], y["mean"], "o", markersize=16, fillstyle="none", color=style["color"])
    axes[0].set_title(title, fontsize=10)
    axes[1].set_title(f"zoom: within {zoom:g} of the best hit rate (ringed: Pareto front)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("test RMSE (lower is better)")
        ax.set_ylabel("test filtered hit rate @10 (higher is better)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def plot_task_losses(histories: dict[str, pd.DataFrame], names: Sequence[str] | None = None):
    """Per-example training loss of each task by epoch (one seed), for the chosen points of the sweep."""
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    names = list(histories) if names is None else list(names)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, column, label in (
        (axes[0], "retrieval_loss", "retrieval loss per example (in-batch softmax)"),
        (axes[1], "rating_loss", "rating loss per example (squared error)"),
    ):
        for name in names:
            ax.plot(histories[name]["epoch"], histories[name][column], marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def tolerance_check(
    summaries: dict[str, dict],
    joint: str,
    hit_tolerance: float = 0.005,
    rmse_tolerance: float = 0.01,
    retrieval: str = RETRIEVAL_ONLY,
    rating: str = RATING_ONLY,
) -> pd.Series:
    """Is ``joint`` within ``hit_tolerance`` filtered HR@10 of the retrieval-only model and within
    ``rmse_tolerance`` RMSE of the rating-only model (means over seeds)?"""

    def mean(name, column):
        return summaries[name][column]["mean"]

    hit_gap = mean(retrieval, HIT_RATE) - mean(joint, HIT_RATE)
    rmse_gap = mean(joint, RMSE) - mean(rating, RMSE)
    return pd.Series(
        {
            "joint model": joint,
            "retrieval-only, filtered HR@10": mean(retrieval, HIT_RATE),
            "joint, filtered HR@10": mean(joint, HIT_RATE),
            "HR@10 lost to the rating task": hit_gap,
            "rating-only, RMSE": mean(rating, RMSE),
            "joint, RMSE": mean(joint, RMSE),
            "RMSE above rating-only": rmse_gap,
            f"within {hit_tolerance:g} HR@10 of retrieval-only": bool(hit_gap <= hit_tolerance),
            f"within {rmse_tolerance:g} RMSE of rating-only": bool(rmse_gap <= rmse_tolerance),
            "within both tolerances": bool(hit_gap <= hit_tolerance and rmse_gap <= rmse_tolerance),
        }
    )


def tfrs_table(summaries: dict[str, dict], ours: dict[str, str]) -> pd.DataFrame:
    """TFRS's reported multitask numbers beside ours (``ours``: our row name for each of TFRS's rows)."""
    rows = []
    for tfrs_name, reported in TFRS_REPORTED.items():
        mine = summaries[ours[tfrs_name]]
        rows.append(
            {
                "model": tfrs_name,
                f"TFRS tutorial (reported), {TOP100}": reported[TOP100],
                "TFRS tutorial (reported), RMSE": reported[RMSE],
                "ours": ours[tfrs_name],
                f"ours, {TOP100}": mine[TOP100]["mean"],
                f"ours, {HIT_RATE}": mine[HIT_RATE]["mean"],
                "ours, RMSE": mine[RMSE]["mean"],
            }
        )
    return pd.DataFrame(rows).set_index("model")


# --- choosing on validation ------------------------------------------------------------------------------


def cross_validate_point(
    config: RunConfig, data: MovieLens, folds: Sequence[Split], cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """``measure`` of ``config`` on every validation fold (cached): per-fold numbers and their means."""
    per_fold = tuning.cross_validate_measures(
        config, data, folds, lambda model, fold: measure(model, fold, config.eval_batch_size), MEASURE_NAME, cache_dir
    )
    return tuning.fold_summary(per_fold)


def lowest_rmse(results: dict[str, dict]) -> str:
    """The key of ``results`` (rating-only models: heads, tower L2s) with the lowest mean validation RMSE."""
    return min(results, key=lambda name: results[name]["mean"][RMSE])


def choose_joint(
    results: dict[str, dict], hit_tolerance: float = 0.005, rmse_tolerance: float = 0.01
) -> tuple[str, bool]:
    """The joint point to report, from validation means: among joint points within both tolerances of
    the single-task models, the one with the lowest RMSE; if none is, the one with the smallest worst
    shortfall (each gap divided by its tolerance).  Returns the name and whether it met both tolerances."""
    retrieval = results[RETRIEVAL_ONLY]["mean"][HIT_RATE]
    rating = results[RATING_ONLY]["mean"][RMSE]
    joint = [name for name in results if name not in (RETRIEVAL_ONLY, RATING_ONLY)]
    if not joint:
        raise ValueError("no joint point among the results")

    def shortfall(name):
        means = results[name]["mean"]
        return max((retrieval - means[HIT_RATE]) / hit_tolerance, (means[RMSE] - rating) / rmse_tolerance)

    meeting = [name for name in joint if shortfall(name) <= 1]
    if meeting:
        return min(meeting, key=lambda name: results[name]["mean"][RMSE]), True
    return min(joint, key=shortfall), False


def validation_table(results: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame({name: r["mean"] for name, r in results.items()}).T[[HIT_RATE, TOP100, RMSE, "MAE"]]


def _layers(text: str) -> tuple[int, ...]:
    return () if text in ("", "none", "linear") else tuple(int(n) for n in text.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--rating-layers", nargs="+", default=["none", "64"], help="head shapes: none, 64, 64,32 ...")
    parser.add_argument("--rating-l2", nargs="+", type=float, default=[1.0, 2.0, 3.0, 5.0])
    parser.add_argument(
        "--rating-only-l2", nargs="+", type=float, default=[0.03, 0.06, 0.1, 0.2], help="tower L2 of rating-only"
    )
    parser.add_argument("--rating-weights", nargs="+", type=float, default=[0.03, 0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the best two-tower's (presets)")
    parser.add_argument(
        "--seed", type=int, default=RunConfig.seed, help="the report's split seed; fold i trains with seed+i"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("results/multitask"))
    parser.add_argument(
        "--presets-dir",
        type=Path,
        default=None,
        help="the presets folder read from and written to (default: the package's)",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)

    with presets.using(args.presets_dir):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``main`` after its arguments, with the presets of ``--presets-dir``."""
    try:
        # the best two-tower with a rating head; every fit below sets the head and the weights it is judged with
        epochs = {} if args.epochs is None else {"epochs": args.epochs}
        base = presets.multitask_model(
            seed=args.seed, retrieval_weight=1.0, rating_weight=1.0, rating_stop_gradient=False, **epochs
        )
        heads = {
            f"layers {layers or '()'}, L2 {l2:g}": {"rating_layers": layers, "rating_l2": l2}
            for layers in (_layers(t) for t in args.rating_layers)
            for l2 in args.rating_l2
        }
        for changes in heads.values():
            base.replace(**changes)  # fail early on a bad value
        data, split = prepare(base, args.data_dir)
        folds = tuning.validation_folds(split.train, args.folds)
    except (ConfigError, DataUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    cache = args.output_dir / "cache"
    print(f"1. the rating head: rating-only models, mean over {args.folds} validation folds")
    head_results = {}
    for name, changes in heads.items():
        config = base.replace(**changes, retrieval_weight=0.0, rating_weight=1.0)
        head_results[name] = cross_validate_point(config, data, folds, cache)
        print(f"  {name:28s} RMSE {head_results[name]['mean'][RMSE]:.4f}", flush=True)
    head = heads[lowest_rmse(head_results)]
    print(f"  chosen: {lowest_rmse(head_results)}")
    base = base.replace(**head)
    print("   the rating-only model's tower L2, with that head")
    tower_l2 = {f"tower L2 {l2:g}": l2 for l2 in args.rating_only_l2}
    tower_results = {}
    for name, l2 in tower_l2.items():
        config = base.replace(l2_regularization=l2, retrieval_weight=0.0, rating_weight=1.0)
        tower_results[name] = cross_validate_point(config, data, folds, cache)
        print(f"  {name:28s} RMSE {tower_results[name]['mean'][RMSE]:.4f}", flush=True)
    rating_only = {"l2_regularization": tower_l2[lowest_rmse(tower_results)]}
    print(f"  chosen: {lowest_rmse(tower_results)}")
    balanced = balanced_rating_weight(loss_scales(base, data, folds[0].train))
    print(f"2. the weights (balanced w_rating = {balanced:.3g}), mean over {args.folds} validation folds")
    weight_results = {}
    points = sweep_points(balanced, args.rating_weights, rating_only=rating_only)
    for name, changes in points.items():
        weight_results[name] = cross_validate_point(base.replace(**changes), data, folds, cache)
        means = weight_results[name]["mean"]
        print(f"  {name:42s} {HIT_RATE} {means[HIT_RATE]:.4f}  RMSE {means[RMSE]:.4f}", flush=True)
    joint, met = choose_joint(weight_results)
    joint_found = {
        "name": joint,
        "within_tolerances": met,
        **{k: weight_results[joint]["mean"][k] for k in (HIT_RATE, RMSE)},
    }
    report = {
        "command": sys.argv,
        "folds": args.folds,
        "base": base.to_dict(),
        "head": {"results": head_results, "chosen": head},
        "rating_only_tower_l2": {"results": tower_results, "chosen": rating_only},
        "balanced_rating_weight": balanced,
        "weights": weight_results,
        "joint": joint_found,
        "seconds": time.perf_counter() - start,
    }
    write_json_atomic(args.output_dir / "multitask_tuning.json", report)
    written = presets.write(
        "multitask",
        {"head": head, "rating_only": rating_only, "joint": points[joint]},
        command=presets.command_line(PROG, argv),
        folds=args.folds,
        validation={
            "head": {name: r["mean"] for name, r in head_results.items()},
            "rating_only_tower_l2": {name: r["mean"] for name, r in tower_results.items()},
            "weights": {name: r["mean"] for name, r in weight_results.items()},
            "joint": joint_found,
            "balanced_rating_weight": balanced,
        },
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(validation_table(weight_results).to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"joint point: {joint} ({'meets' if met else 'misses'} both tolerances on validation); wrote {written}")
    print(f"wrote {args.output_dir}/multitask_tuning.json in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
