"""Sweep the embedding dimension: train each (dimension, seed), cache every finished run, summarise, plot.

``python -m twotower_utils sweep --dims 8 32 128 --seeds 42 --output-dir results/sweep`` (or ``make sweep``).

Each run trains two models with the same config:

* on the whole training split, evaluated on the **test** split with both protocols (all movies are
  candidates / the user's training movies are excluded) and on the training split (the train-test gap);
* on the training split minus a **validation** part carved out of it (``data.validation_split``), evaluated on
  that validation part.  The best dimension is chosen on validation only; test numbers are for reporting.

Finished runs are stored one JSON per (dimension, seed, config hash) in ``<output-dir>/cache`` (written
atomically), so running the same sweep again only computes what is missing.  The command writes the dimension
chosen on validation, with the command, the date and the validation scores, to the presets
(``twotower_utils/presets/dimension.json``).  The notebook
``05_embedding_dimension`` and its interactive panel call the same ``run_one``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils import presets
from twotower_utils.config import ConfigError, RunConfig
from twotower_utils.data.movielens import DataUnavailableError, MovieLens
from twotower_utils.data.splits import Split, validation_split
from twotower_utils.evaluation.counting import filtered_topk_accuracy, topk_accuracy
from twotower_utils.experiments.workflow import prepare, written_by_this_version
from twotower_utils.models.two_tower import parameter_counts
from twotower_utils.results import read_json, save_figure, write_json_atomic
from twotower_utils.runtime import progress, say
from twotower_utils.training import TrainingResult, train

PROG = "python -m twotower_utils sweep"
CACHE_VERSION = 2  # 2: keys from RunConfig (a run and one model spec)
RUN_FIELDS = tuple(name for name in RunConfig().to_dict() if name not in ("format", "model"))
# Always part of a run's cache key; any other field of the run or its model joins the key only when it differs
# from its default, so adding a new switch to a spec (default: off, the report's recipe) keeps existing caches valid.
RECIPE_FIELDS = (
    "epochs",
    "learning_rate",
    "batch_size",
    "eval_batch_size",
    "optimizer",
    "train_fraction",
    "split",
    "ks",
)
DEFAULT_DIMS = (8, 16, 32, 64, 128, 256)
DEFAULT_VALIDATION_FRACTION = 0.1
SELECTION_METRIC = "val_filtered_top_10"


class FitTimer(tf.keras.callbacks.Callback):
    """Seconds spent in training steps only (from epoch start to its last batch), without the
    end-of-epoch evaluation that ``TopKCurves`` adds."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self._start = self._last = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds += self._last - self._start


def _by_k(values: dict[int, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items()}


def run_one(
    config: RunConfig,
    data: MovieLens,
    split: Split,
    validation: Split | None = None,
    callbacks: Sequence[tf.keras.callbacks.Callback] = (),
) -> tuple[dict[str, Any], TrainingResult]:
    """Train ``config`` on ``split`` (and on ``validation`` when given) and summarise it in one record.

    The record (plain JSON) holds the parameter counts, training time, per-epoch history, final train and
    test top-k (test both unfiltered and with the user's training movies excluded), the train-test gap,
    and, with ``validation``, the validation top-k of a second model trained on ``validation.train``.
    ``callbacks`` go to the main training (they see the epoch's top-k in ``logs``).
    """
    timer = FitTimer()
    start = time.perf_counter()
    result = train(config, data, split, verbose=0, callbacks=[timer, *callbacks])
    ks = config.ks
    train_topk = {k: result.final(k, test=False) for k in ks}
    test_topk = {k: result.final(k, test=True) for k in ks}
    test_filtered = filtered_topk_accuracy(result.model, split.train, split.test, ks, config.eval_batch_size)
    counts = parameter_counts(result.model)
    history = result.history
    record: dict[str, Any] = {
        "embedding_dim": config.model.embedding_dim,
        "seed": config.seed,
        "config": config.to_dict(),
        "parameters": {**counts, "total": sum(counts.values())},
        "train_seconds": timer.seconds,
        "wall_seconds": 0.0,
        "history": {column: history[column].tolist() for column in history.columns},
        "train_topk": _by_k(train_topk),
        "test_topk": _by_k(test_topk),
        "test_topk_filtered": _by_k(test_filtered),
        "gap_topk": _by_k({k: train_topk[k] - test_topk[k] for k in ks}),
    }
    if validation is not None:
        checked = train(config, data, validation, verbose=0, curves=False)
        record["val_topk"] = _by_k(topk_accuracy(checked.model, validation.test, ks, config.eval_batch_size))
        record["val_topk_filtered"] = _by_k(
            filtered_topk_accuracy(checked.model, validation.train, validation.test, ks, config.eval_batch_size)
        )
        record["validation_rows"] = len(validation.test)
    record["wall_seconds"] = time.perf_counter() - start
    return record, result


def parse_dims(value, base: RunConfig | None = None) -> list[int]:
    """Dimensions from papermill/CLI friendly forms: ``"8 32 128"``, ``"8,32"``, ``64`` or ``[8, 32]``;
    each is checked by ``RunConfig`` (a bad one stops here with one ``ConfigError``)."""
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    dims = []
    for item in items:
        try:
            dims.append(int(item))
        except (TypeError, ValueError):
            raise ConfigError(f"embedding dimensions must be whole numbers, got {item!r} in {value!r}") from None
        (base or RunConfig()).replace(embedding_dim=dims[-1])
    return dims


def data_fingerprint(data: MovieLens, split: Split) -> str:
    """A short hash of the catalogue and of the split's rows, so a cache never mixes data."""
    digest = hashlib.sha256()
    digest.update(f"{data.num_users}/{data.num_movies}/{split.name}".encode())
    for frame in (split.train, split.test):
        digest.update(np.ascontiguousarray(frame[["user_idx", "movie_idx"]].to_numpy(np.int64)).tobytes())
    return digest.hexdigest()[:16]


def settings_key(
    config: RunConfig, always: Sequence[str] = RUN_FIELDS, leave_out: Sequence[str] = ()
) -> dict[str, Any]:
    """A run's settings for a cache key (plain JSON): the run's fields of ``always``, any other run field set
    away from its default, and ``"model"``: the model's family and its fields set away from the family's
    defaults; the names of ``leave_out`` are left out (they name the cache file instead)."""
    values, defaults = config.to_dict(), RunConfig(type(config.model)()).to_dict()
    run = {k: values[k] for k in RUN_FIELDS if k not in leave_out and (k in always or values[k] != defaults[k])}
    model = {
        k: v for k, v in values["model"].items() if k not in leave_out and (k == "family" or v != defaults["model"][k])
    }
    return {**run, "model": model}


def cache_key(config: RunConfig, fingerprint: str, validation_fraction: float | None) -> dict[str, Any]:
    """Everything that defines a run except the dimension and seed (they name the file): the recipe, any
    switch set away from its default, the data, the validation fraction and ``CACHE_VERSION``."""
    settings = settings_key(config, RECIPE_FIELDS, leave_out=("embedding_dim", "seed"))
    return {"v": CACHE_VERSION, "config": settings, "data": fingerprint, "validation": validation_fraction}


def config_hash(config: RunConfig, fingerprint: str, validation_fraction: float | None) -> str:
    """Short hash of ``cache_key``."""
    key = cache_key(config, fingerprint, validation_fraction)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(cache_dir: Path, dim: int, seed: int, digest: str) -> Path:
    return Path(cache_dir) / f"dim{dim:04d}-seed{seed}-{digest}.json"


def cached_dimensions(
    base_config: RunConfig,
    data: MovieLens,
    split: Split,
    cache_dir: str | Path,
    seeds: Sequence[int] | None = None,
    validation_fraction: float | None = DEFAULT_VALIDATION_FRACTION,
) -> list[int]:
    """Dimensions already in the cache for this config, data and every one of ``seeds`` (free to add to a sweep)."""
    seeds = list(seeds) if seeds else [base_config.seed]
    digest = config_hash(base_config, data_fingerprint(data, split), validation_fraction)
    found = {}
    for path in Path(cache_dir).glob(f"dim*-seed*-{digest}.json"):
        dim, seed = path.name.split("-")[:2]
        found.setdefault(int(dim[3:]), set()).add(int(seed[4:]))
    return sorted(dim for dim, have in found.items() if set(seeds) <= have)


def run_sweep(
    base_config: RunConfig,
    data: MovieLens,
    split: Split,
    dims: Sequence[int] = DEFAULT_DIMS,
    seeds: Sequence[int] | None = None,
    cache_dir: str | Path | None = None,
    validation_fraction: float | None = DEFAULT_VALIDATION_FRACTION,
    log: Callable[[str], None] = say,
) -> pd.DataFrame:
    """Run (or read from the cache) every (dimension, seed); one summary row per run.

    The split is fixed (the caller's); seeds change the model's initialisation and batch order.
    The validation part is carved with ``base_config.seed``, the same for every run.
    """
    seeds = list(seeds) if seeds else [base_config.seed]
    validation = None
    if validation_fraction:
        validation = validation_split(split.train, validation_fraction, base_config.seed)
    fingerprint = data_fingerprint(data, split)
    digest = config_hash(base_config, fingerprint, validation_fraction)
    records, computed, reused = [], 0, 0
    start = time.perf_counter()
    for dim, seed in progress(list(itertools.product(dims, seeds)), desc="sweep", unit="run"):
        config = base_config.replace(embedding_dim=int(dim), seed=int(seed))
        path = cache_path(Path(cache_dir), dim, seed, digest) if cache_dir is not None else None
        record = read_json(path) if path is not None else None
        if record is not None and not written_by_this_version(
            record, f"the cached run {path.name}", log, "training it again"
        ):
            record = None
        if record is not None:
            reused += 1
            log(f"dim {dim:>4} seed {seed}: cached ({path.name})")
        else:
            log(f"dim {dim:>4} seed {seed}: training ...")
            record, _ = run_one(config, data, split, validation)
            record["config_hash"] = digest
            record["cache_key"] = cache_key(config, fingerprint, validation_fraction)
            computed += 1
            if path is not None:
                write_json_atomic(path, record)
            log(f"dim {dim:>4} seed {seed}: done in {record['wall_seconds']:.1f} s")
        records.append(record)
    log(
        f"{len(records)} run(s): {reused} reused from the cache, {computed} computed, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return summary_table(records)


def summary_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: dimension, seed, parameters, times, and every top-k as a column."""
    rows = []
    for record in records:
        row = {
            "embedding_dim": record["embedding_dim"],
            "seed": record["seed"],
            "parameters": record["parameters"]["total"],
            "train_seconds": record["train_seconds"],
            "wall_seconds": record["wall_seconds"],
        }
        for field, prefix in (
            ("test_topk", "test"),
            ("test_topk_filtered", "test_filtered"),
            ("train_topk", "train"),
            ("gap_topk", "gap"),
            ("val_topk", "val"),
            ("val_topk_filtered", "val_filtered"),
        ):
            # numeric order of k: JSON files sort their keys as text ("10" < "5")
            for k, value in sorted(record.get(field, {}).items(), key=lambda item: int(item[0])):
                row[f"{prefix}_top_{k}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def by_dimension(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per dimension (and the spread across seeds as ``*_std`` where there are several)."""
    numeric = summary.drop(columns=["seed"])
    grouped = numeric.groupby("embedding_dim")
    table = grouped.mean()
    table.insert(0, "seeds", grouped.size())
    if (table["seeds"] > 1).any():
        spread = grouped.std(ddof=0).add_suffix("_std")
        table = table.join(spread[[c for c in spread.columns if c.startswith(("test_", "val_"))]])
    return table


def best_dimension(summary: pd.DataFrame, metric: str = SELECTION_METRIC) -> dict[str, Any]:
    """The dimension with the highest mean ``metric`` over seeds (a validation metric, never test)."""
    if not metric.startswith("val"):
        raise ValueError(f"choose on validation metrics only, got {metric!r}")
    if metric not in summary:
        raise ValueError(f"{metric!r} is not in the summary (was the sweep run without validation?)")
    means = summary.groupby("embedding_dim")[metric].mean()
    dim = int(means.idxmax())
    return {"metric": metric, "embedding_dim": dim, "value": float(means.loc[dim]), "by_dimension": means.to_dict()}


# ---- plots ---------------------------------------------------------------------------------------------------


def _errorbar(ax, table: pd.DataFrame, column: str, label: str, **kwargs) -> None:
    spread = table.get(f"{column}_std")
    ax.errorbar(table.index, table[column], yerr=spread, marker="o", capsize=3, label=label, **kwargs)


def _dimension_axis(ax, dims) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(dims), [str(d) for d in dims])
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def plot_topk_vs_dimension(summary: pd.DataFrame, k: int = 10):
    """Test top-k against the dimension, both protocols, with the validation numbers for comparison."""
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    table = by_dimension(summary)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for column, label in (
        (f"test_top_{k}", "test, all movies"),
        (f"test_filtered_top_{k}", "test, training movies excluded"),
        (f"val_top_{k}", "validation, all movies"),
        (f"val_filtered_top_{k}", "validation, training movies excluded"),
    ):
        if column in table:
            _errorbar(ax, table, column, label, linestyle="--" if column.startswith("val") else "-")
    _dimension_axis(ax, table.index)
    ax.set(xlabel="embedding dimension", ylabel=f"top-{k} accuracy", title=f"Top-{k} accuracy vs dimension")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_parameters_vs_dimension(summary: pd.DataFrame):
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    table = by_dimension(summary)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(table.index, table["parameters"], marker="o")
    ax.set_yscale("log")
    _dimension_axis(ax, table.index)
    ax.set(xlabel="embedding dimension", ylabel="trainable parameters (both towers)", title="Parameters vs dimension")
    fig.tight_layout()
    return fig


def plot_gap_vs_dimension(summary: pd.DataFrame, ks: Sequence[int] = (10, 100)):
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    table = by_dimension(summary)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k in ks:
        if f"gap_top_{k}" in table:
            ax.plot(table.index, table[f"gap_top_{k}"], marker="o", label=f"top-{k}: train - test")
    _dimension_axis(ax, table.index)
    ax.set(xlabel="embedding dimension", ylabel="train minus test accuracy", title="Train-test gap vs dimension")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_time_vs_dimension(summary: pd.DataFrame):
    import matplotlib.pyplot as plt  # here: only plots need matplotlib, and it is slow to import

    table = by_dimension(summary)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(table.index, table["train_seconds"], marker="o", label="training steps")
    ax.plot(table.index, table["wall_seconds"], marker="o", label="whole run (with evaluation, validation model)")
    _dimension_axis(ax, table.index)
    ax.set(xlabel="embedding dimension", ylabel="seconds", title="Training time vs dimension")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


SWEEP_PLOTS = {
    "sweep_topk_vs_dimension": plot_topk_vs_dimension,
    "sweep_parameters_vs_dimension": plot_parameters_vs_dimension,
    "sweep_gap_vs_dimension": plot_gap_vs_dimension,
    "sweep_time_vs_dimension": plot_time_vs_dimension,
}


def write_outputs(summary: pd.DataFrame, output_dir: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``summary.csv`` (one row per run), ``summary_by_dimension.csv``, ``summary.json`` and the figures."""
    import matplotlib.pyplot as plt  # here: only the figures need matplotlib, and it is slow to import

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(output_dir / "summary.csv", index=False)
    table = by_dimension(summary)
    table.to_csv(output_dir / "summary_by_dimension.csv")
    report: dict[str, Any] = {"runs": summary.to_dict("records"), **(extra or {})}
    if SELECTION_METRIC in summary:
        report["best_on_validation"] = best_dimension(summary)
        if "val_top_10" in summary:
            report["best_on_validation_unfiltered"] = best_dimension(summary, "val_top_10")
    write_json_atomic(output_dir / "summary.json", report)
    for name, plot in SWEEP_PLOTS.items():
        fig = plot(summary)
        save_figure(fig, output_dir, name)
        plt.close(fig)
    return report


def format_table(summary: pd.DataFrame, k: int = 10) -> str:
    """The by-dimension table as Markdown (README, notebook, command line)."""
    table = by_dimension(summary)
    columns = {
        "parameters": "params",
        f"val_top_{k}": f"val top-{k}",
        f"val_filtered_top_{k}": f"val top-{k} filt.",
        f"train_top_{k}": f"train top-{k}",
        f"test_top_{k}": f"test top-{k}",
        f"test_filtered_top_{k}": f"test top-{k} filt.",
        "test_top_100": "test top-100",
        "test_filtered_top_100": "test top-100 filt.",
        f"gap_top_{k}": f"gap top-{k}",
        "train_seconds": "train s",
    }
    shown = table[[c for c in columns if c in table]].rename(columns=columns)
    lines = ["| dim | " + " | ".join(shown.columns) + " |", "|---" * (len(shown.columns) + 1) + "|"]
    for dim, row in shown.iterrows():
        cells = []
        for column, value in row.items():
            if column == "params":
                cells.append(f"{int(value):,}")
            elif column == "train s":
                cells.append(f"{value:.1f}")
            else:
                cells.append(f"{value:.4f}")
        lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_sweep(summary: pd.DataFrame, validation_rows: int, epochs: int, reference_dim: int = 32) -> str:
    """The sweep's verdict in Markdown: the dimension chosen on validation against ``reference_dim`` (the
    report's), and how parameters, train/test top-10, the gap and training time move across the sweep."""
    table = by_dimension(summary)
    best, best_unfiltered = best_dimension(summary), best_dimension(summary, "val_top_10")
    reference = min(table.index, key=lambda d: abs(d - reference_dim))
    low, high = table.index.min(), table.index.max()
    chosen, ref = table.loc[best["embedding_dim"]], table.loc[reference]

    def span(column: str, fmt: str = ".4f") -> str:
        return f"{table.loc[low, column]:{fmt}} to {table.loc[high, column]:{fmt}}"

    if best["embedding_dim"] == reference:
        verdict = f"so the report's choice of {reference} is **the best of the sweep** on validation"
    else:
        ratio = chosen["val_filtered_top_10"] / max(ref["val_filtered_top_10"], 1e-12)
        verdict = f"so the report's {reference} is **not** the best: {best['embedding_dim']} scores {ratio:.2f}× its validation top-10"
    return (
        f"**Chosen on validation** (top-10, training movies excluded, {validation_rows:,} held-out training ratings): "
        f"**$d = {best['embedding_dim']}$** with {best['value']:.4f}, against {ref['val_filtered_top_10']:.4f} at "
        f"$d = {reference}$, {verdict}. Without filtering, validation top-10 prefers $d = {best_unfiltered['embedding_dim']}$.\n\n"
        f"From $d = {low}$ to $d = {high}$ the parameters grow from {span('parameters', ',.0f')}, train top-10 goes from "
        f"{span('train_top_10')}, while test top-10 goes from {span('test_top_10')} (filtered: "
        f"{span('test_filtered_top_10')}). The train–test gap at top-10 moves from {span('gap_top_10')}. "
        f"For the chosen $d = {best['embedding_dim']}$ the test numbers — looked at only now — are "
        f"{chosen['test_top_10']:.4f} (all movies) and {chosen['test_filtered_top_10']:.4f} (training movies excluded). "
        f"Training steps took {span('train_seconds', '.1f')} s from $d = {low}$ to $d = {high}$ ({epochs} epochs; "
        "wall-clock times on a shared machine are noisy)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=list(DEFAULT_DIMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="model seeds (default: --split-seed)")
    parser.add_argument(
        "--split-seed", type=int, default=RunConfig.seed, help="seed of the 80/20 split and the validation part"
    )
    parser.add_argument("--epochs", type=int, default=RunConfig.epochs)
    parser.add_argument("--learning-rate", type=float, default=RunConfig.learning_rate)
    parser.add_argument("--batch-size", type=int, default=RunConfig.batch_size)
    parser.add_argument("--validation-fraction", type=float, default=DEFAULT_VALIDATION_FRACTION)
    parser.add_argument("--output-dir", type=Path, default=Path("results/sweep"))
    parser.add_argument(
        "--presets-dir",
        type=Path,
        default=None,
        help="the presets folder read from and written to (default: the package's)",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    try:
        base = RunConfig(
            epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size, seed=args.split_seed
        )
        for dim in args.dims:
            base.replace(embedding_dim=dim)
        data, split = prepare(base, args.data_dir)
    except (ConfigError, DataUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    summary = run_sweep(
        base, data, split, args.dims, args.seeds, args.output_dir / "cache", args.validation_fraction or None
    )
    report = write_outputs(summary, args.output_dir, {"command": sys.argv, "base_config": base.to_dict()})
    print(format_table(summary))
    best = report.get("best_on_validation")
    if best:
        print(f"best dimension on validation ({best['metric']}): {best['embedding_dim']} ({best['value']:.4f})")
        written = presets.write(
            "dimension",
            {"embedding_dim": best["embedding_dim"]},
            command=presets.command_line(PROG, argv),
            folds=1,
            validation={
                "metric": best["metric"],
                "value": best["value"],
                "by_dimension": best["by_dimension"],
                "seeds": args.seeds or [args.split_seed],
                "recipe": {
                    **settings_key(base, leave_out=("embedding_dim",)),
                    "validation_fraction": args.validation_fraction,
                },
            },
            directory=args.presets_dir,
        )
        print(f"wrote the chosen dimension to {written}")
    print(f"wrote {args.output_dir}/summary.csv, summary.json and figures/ in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
