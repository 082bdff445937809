"""Figures of the series: the report's Figures 2-6 and the data overview."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from twotower_utils.evaluation.counting import metric_name


def plot_loss(history: pd.DataFrame, ax=None):
    """Training loss per epoch (the report's Figure 2)."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    ax.plot(history["epoch"], history["loss"], marker="o")
    ax.set(xlabel="epoch", ylabel="retrieval loss (summed over a batch)", title="Training loss")
    ax.grid(alpha=0.3)
    return ax.figure


def plot_topk_curves(history: pd.DataFrame, ks: Sequence[int] = (1, 5, 10)):
    """Top-k accuracy per epoch, train and test, one panel per k (the report's Figures 3-5)."""
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.6), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        for prefix, label in (("", "train"), ("val_", "test")):
            column = metric_name(k, prefix)
            if column in history:
                ax.plot(history["epoch"], history[column], marker="o", label=label)
        ax.set(xlabel="epoch", ylabel=f"top-{k} accuracy", title=f"Top-{k} accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_topk_bars(results: dict[str, dict[int, float]], title: str = "Top-k accuracy"):
    """Grouped bars: one group per k, one bar per named result (the report's Figure 6)."""
    names = list(results)
    ks = sorted({k for values in results.values() for k in values})
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(7, 4))
    positions = np.arange(len(ks))
    for i, name in enumerate(names):
        heights = [results[name].get(k, np.nan) for k in ks]
        bars = ax.bar(positions + i * width - 0.4 + width / 2, heights, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(positions, [f"top-{k}" for k in ks])
    ax.set(ylabel="accuracy", title=title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_long_tail(per_user: pd.Series, per_movie: pd.Series):
    """Ratings per user and per movie, sorted: the long tail."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, counts, what in ((axes[0], per_user, "user"), (axes[1], per_movie, "movie")):
        ax.plot(np.arange(1, len(counts) + 1), np.sort(counts.to_numpy())[::-1])
        ax.set(xlabel=f"{what} (sorted by ratings)", ylabel="ratings", title=f"Ratings per {what}", yscale="log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_bar_counts(counts: pd.Series, title: str, xlabel: str, horizontal: bool = False):
    """A plain bar chart of counts (rating histogram, genres)."""
    fig, ax = plt.subplots(figsize=(7, 4) if not horizontal else (7, 5))
    if horizontal:
        ax.barh(counts.index.astype(str), counts.to_numpy())
        ax.invert_yaxis()
        ax.set(xlabel="count", ylabel=xlabel, title=title)
    else:
        ax.bar(counts.index.astype(str), counts.to_numpy())
        ax.set(xlabel=xlabel, ylabel="count", title=title)
    ax.grid(alpha=0.3, axis="x" if horizontal else "y")
    fig.tight_layout()
    return fig


def plot_ratings_over_time(ratings: pd.DataFrame):
    """Ratings per week across the data's time span."""
    weeks = pd.to_datetime(ratings["timestamp"], unit="s").dt.to_period("W").dt.start_time
    counts = weeks.value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(counts.index, counts.to_numpy())
    ax.set(xlabel="week", ylabel="ratings", title="Ratings per week")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_latency_recall(comparisons: Sequence[dict], k: int = 10):
    """Per-query latency (p50, log scale) against recall@k: ScaNN's settings as points joined by a line, one
    colour per catalogue size; exact search (NumPy solid, TensorFlow dotted) as horizontal lines at recall 1
    (``serving.index.compare_search`` results)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, comparison in enumerate(comparisons):
        colour = f"C{n}"
        size = f"{comparison['num_candidates']:,}"
        rows = sorted(comparison["scann"]["settings"], key=lambda r: r[f"recall@{k}"])
        ax.plot(
            [r[f"recall@{k}"] for r in rows], [r["p50_ms"] for r in rows], "o-", color=colour, label=f"ScaNN, {size}"
        )
        for r in rows:
            ax.annotate(
                f"{r['leaves_to_search']}/{r['reorder']}",
                (r[f"recall@{k}"], r["p50_ms"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, -10),
                color=colour,
            )
        for name, style, label in (("exact_numpy", "-", "NumPy"), ("exact_tf", ":", "TensorFlow")):
            if name in comparison:
                ax.axhline(
                    comparison[name]["p50_ms"],
                    color=colour,
                    linestyle=style,
                    linewidth=1,
                    label=f"exact ({label}), {size}",
                )
    ax.set_yscale("log")
    ax.set(
        xlabel=f"recall@{k} against exact search",
        ylabel="single-query latency, p50 (ms)",
        title="Exact vs approximate search (ScaNN: leaves searched / reordered)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    return fig


def plot_scaling(table):
    """Seconds against the number of ratings (log-log): one epoch and one exact evaluation, one line per number
    of workers (``make bench-scale`` rows), with the 25M budgets (60 s an epoch, 120 s an evaluation) as dotted lines."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (step, label, colour), workers in itertools.product(
        (("epoch_s", "one epoch", "C0"), ("evaluation_s", "exact evaluation", "C1")), sorted(set(table["workers"]))
    ):
        rows = table[table["workers"] == workers].sort_values("ratings")
        style = "o-" if workers == 1 else "s--"
        ax.plot(rows["ratings"], rows[step], style, color=colour, label=f"{label}, {workers} worker(s)")
    for target, label, colour in ((60, "epoch target", "C0"), (120, "evaluation target", "C1")):
        ax.axhline(target, color=colour, linestyle=":", linewidth=1, label=f"{label} ({target} s at 25M)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="ratings (synthetic, ML-25M's shape)", ylabel="seconds", title="Time against data size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
