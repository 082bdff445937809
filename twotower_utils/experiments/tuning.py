"""Tune on validation, never on test: k-fold cross-validation of two-tower configs and of EASE.

One 10% validation part is a noisy judge.  On MovieLens 100K the filtered hit rate @10 of one config
moves by about ±0.003 from one validation part (and model seed) to another, as much as most switches
change it.  So each config here is trained and scored on ``folds`` disjoint validation parts of the
training split (fold ``i`` trains with model seed ``config.seed + i``) and judged by the mean; EASE goes
through the same folds.  The test split is never touched.

``python -m twotower_utils tune --output-dir results/tuning`` (or ``make tune``) cross-validates the
grid ``DEFAULT_GRID`` around ``comparison.BEST_SWITCHES`` (every combination), caching one JSON per
(config, fold) so a rerun only trains what is missing, and prints a table best-first.
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

from twotower_utils.config import ExperimentConfig
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split, validation_split
from twotower_utils.evaluation import baselines
from twotower_utils.evaluation.counting import filtered_topk_accuracy
from twotower_utils.experiments.sweep import data_fingerprint
from twotower_utils.results import read_json, write_json_atomic
from twotower_utils.runtime import progress, say
from twotower_utils.training import train

PROG = "python -m twotower_utils tune"
DEFAULT_FOLDS = 5
DEFAULT_FRACTION = 0.1
CACHE_VERSION = 1
# Config fields added after the cache format was fixed: left out of a key while at their defaults, so the folds
# cached before they existed stay valid.
LATER_FIELDS = (
    "rating_task",
    "retrieval_weight",
    "rating_weight",
    "rating_layers",
    "rating_stop_gradient",
    "rating_l2",
    "ranking_head",
    "ranking_layers",
    "cross_layers",
    "implicit_feedback",
    "ranking_l2",
    "bias_l2",
    "user_tower",
    "history_length",
    "use_user_id",
    "sequence_blocks",
    "sequence_dropout",
    "dataset",
)
# Axes of `make tune`, crossed with each other around comparison.BEST_SWITCHES.
DEFAULT_GRID: dict[str, tuple] = {
    "learning_rate_schedule": ("constant", "cosine"),
    "epochs": (10, 20),
    "embedding_dim": (64, 128),
    "logq_correction": (1.0, 1.2),
}


def validation_folds(
    train_frame: pd.DataFrame, folds: int = DEFAULT_FOLDS, fraction: float = DEFAULT_FRACTION, seed: int = 0
) -> list[Split]:
    """``folds`` splits of the training frame with disjoint validation parts of ``fraction`` each."""
    if not isinstance(folds, int) or folds < 1:
        raise ValueError(f"folds must be a positive whole number, got {folds!r}")
    return [validation_split(train_frame, fraction, seed, fold) for fold in range(folds)]


def fold_hit_rate(config: ExperimentConfig, data: MovieLens, fold: Split, k: int = 10) -> float:
    """Train ``config`` on the fold's training part; filtered hit rate @k on its validation part."""
    model = train(config, data, fold, verbose=0, curves=False).model
    return float(filtered_topk_accuracy(model, fold.train, fold.test, [k], config.eval_batch_size)[k])


def _fold_key(config: ExperimentConfig, data: MovieLens, fold: Split, k: int | str) -> str:
    values, defaults = config.to_dict(), ExperimentConfig().to_dict()
    values = {name: v for name, v in values.items() if name not in LATER_FIELDS or v != defaults[name]}
    key = [CACHE_VERSION, values, k, data_fingerprint(data, fold)]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cross_validate(
    config: ExperimentConfig,
    data: MovieLens,
    folds: Sequence[Split],
    k: int = 10,
    cache_dir: str | Path | None = None,
) -> list[float]:
    """Filtered hit rate @k of ``config`` on every fold (model seed ``config.seed + fold``).

    With ``cache_dir`` each (config, fold) result is stored as JSON and reused when the same config
    meets the same fold rows again."""
    return _per_fold(config, data, folds, k, cache_dir, "hit_rate", lambda c, fold: fold_hit_rate(c, data, fold, k))


def cross_validate_measures(
    config: ExperimentConfig,
    data: MovieLens,
    folds: Sequence[Split],
    measure: Callable[[Any, Split], dict[str, float]],
    name: str,
    cache_dir: str | Path | None = None,
) -> list[dict[str, float]]:
    """Like ``cross_validate``, for models judged by several numbers: ``measure(model, fold)`` on every fold
    (model seed ``config.seed + fold``).  ``name`` names the measure in the cache key: change it whenever
    ``measure`` changes what it returns."""

    def compute(fold_config: ExperimentConfig, fold: Split) -> dict[str, float]:
        return measure(train(fold_config, data, fold, verbose=0, curves=False).model, fold)

    return _per_fold(config, data, folds, name, cache_dir, "measures", compute)


def fold_summary(per_fold: list[dict[str, float]]) -> dict[str, Any]:
    """Several numbers per fold -> ``{"mean": {number: mean over folds}, "folds": per_fold}``."""
    return {"mean": {c: float(np.mean([f[c] for f in per_fold])) for c in per_fold[0]}, "folds": per_fold}


def _per_fold(config, data, folds, key: int | str, cache_dir, field: str, compute) -> list:
    """``compute(config with seed + fold, fold)`` on every fold, each result cached as ``field`` of a JSON file."""
    results = []
    for index, fold in enumerate(progress(folds, desc="folds", unit="fold", leave=False)):
        fold_config = config.replace(seed=config.seed + index)
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"fold{index}-{_fold_key(fold_config, data, fold, key)}.json"
            cached = read_json(path, {})
            if field in cached:
                results.append(cached[field])
                continue
        value = compute(fold_config, fold)
        if path is not None:
            write_json_atomic(path, {"config": fold_config.to_dict(), "fold": index, "k": key, field: value})
        results.append(value)
    return results


def cross_validate_ease(
    data: MovieLens, folds: Sequence[Split], lambdas: Sequence[float] = baselines.EASE_LAMBDAS, k: int = 10
) -> dict[float, list[float]]:
    """EASE's filtered hit rate @k on every fold, for each regularisation ``lambda``."""
    found: dict[float, list[float]] = {float(lam): [] for lam in lambdas}
    for fold in folds:
        _, per_lambda = baselines.tune_ease(fold.train, fold.test, data.num_users, data.num_movies, lambdas, k)
        for lam, value in per_lambda.items():
            found[lam].append(value)
    return found


def best_lambda(found: dict[float, list[float]]) -> float:
    """The lambda with the best mean hit rate over folds (ties: the smaller lambda, as ``baselines.tune_ease``)."""
    return max(found, key=lambda lam: (np.mean(found[lam]), -lam))


def grid_configs(base: ExperimentConfig, grid: dict[str, Sequence]) -> list[ExperimentConfig]:
    """Every combination of the grid's values applied to ``base`` (validated by ``replace``)."""
    names = list(grid)
    return [
        base.replace(**dict(zip(names, values, strict=True))) for values in itertools.product(*(grid[n] for n in names))
    ]


def run_grid(
    base: ExperimentConfig,
    data: MovieLens,
    folds: Sequence[Split],
    grid: dict[str, Sequence] | None = None,
    k: int = 10,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = say,
) -> pd.DataFrame:
    """Cross-validate every config of the grid; one row per config, best mean first."""
    grid = DEFAULT_GRID if grid is None else grid
    rows = []
    for config in progress(grid_configs(base, grid), desc="configs", unit="config"):
        start = time.perf_counter()
        scores = cross_validate(config, data, folds, k, cache_dir)
        settings = {name: getattr(config, name) for name in grid}
        rows.append({**settings, "mean": float(np.mean(scores)), "std": float(np.std(scores)), "folds": scores})
        log(f"{settings}: mean {rows[-1]['mean']:.4f} ({time.perf_counter() - start:.0f} s)")
    return pd.DataFrame(rows).sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def _parse_grid(items: Sequence[str]) -> dict[str, tuple]:
    """``["epochs=10,20", "learning_rate_schedule=cosine"]`` -> typed values per config field."""
    defaults = ExperimentConfig().to_dict()
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in defaults or not values:
            raise ValueError(f"grid entries look like field=v1,v2 with a config field; got {item!r}")
        kind = type(defaults[name])
        if kind not in (int, float, str):
            raise ValueError(f"{name} cannot be tuned from the command line")
        grid[name] = tuple(kind(v) for v in values.split(","))
    return grid


def main(argv: list[str] | None = None) -> int:
    from twotower_utils.config import ConfigError
    from twotower_utils.data.movielens import DataUnavailableError
    from twotower_utils.experiments.comparison import BEST_SWITCHES
    from twotower_utils.experiments.workflow import prepare

    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", nargs="*", default=None, help="field=v1,v2 ... (default: DEFAULT_GRID)")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS)
    parser.add_argument("--fraction", type=float, default=DEFAULT_FRACTION)
    parser.add_argument("--seed", type=int, default=42, help="the report's split seed; fold i trains with seed+i")
    parser.add_argument("--output-dir", type=Path, default=Path("results/tuning"))
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    try:
        grid = DEFAULT_GRID if args.grid is None else _parse_grid(args.grid)
        base = ExperimentConfig(seed=args.seed).replace(**BEST_SWITCHES)
        grid_configs(base, grid)  # fail early on a bad value
        data, split = prepare(base, args.data_dir)
        folds = validation_folds(split.train, args.folds, args.fraction)
    except (ConfigError, DataUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    ease = cross_validate_ease(data, folds)
    ease_lambda = best_lambda(ease)
    print(f"EASE (lambda {ease_lambda:g}): mean {np.mean(ease[ease_lambda]):.4f} over {args.folds} folds")
    table = run_grid(base, data, folds, grid, cache_dir=args.output_dir / "cache")
    report: dict[str, Any] = {
        "command": sys.argv,
        "folds": args.folds,
        "fraction": args.fraction,
        "base": base.to_dict(),
        "ease": {"lambda": ease_lambda, "folds": ease[ease_lambda], "mean": float(np.mean(ease[ease_lambda]))},
        "grid": table.to_dict(orient="records"),
        "seconds": time.perf_counter() - start,
    }
    write_json_atomic(args.output_dir / "tuning.json", report)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns="folds").to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {args.output_dir}/tuning.json in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
