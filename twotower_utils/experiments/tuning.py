"""Tune on validation, never on test: k-fold cross-validation of two-tower configs and of EASE.

One 10% validation part is a noisy judge.  On MovieLens 100K the filtered hit rate @10 of one config
moves by about ±0.003 from one validation part (and model seed) to another, as much as most switches
change it.  So each config here is trained and scored on ``folds`` disjoint validation parts of the
training split (fold ``i`` trains with model seed ``config.seed + i``) and judged by the mean; EASE goes
through the same folds.  The test split is never touched.

``python -m twotower_utils tune --output-dir results/tuning`` (or ``make tune``) cross-validates the
grid ``DEFAULT_GRID`` around the best two-tower (``presets.best_two_tower``; every combination), caching one
JSON per (config, fold) so a rerun only trains what is missing, and prints a table best-first.  The config
with the best mean becomes the best two-tower: its switches, EASE's lambda, the command, the folds and the
validation scores are written to the presets (``twotower_utils/presets/two_tower.json``).
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

from twotower_utils import presets
from twotower_utils.config import ConfigError, RetrievalSpec, RunConfig
from twotower_utils.data.movielens import DataUnavailableError, MovieLens
from twotower_utils.data.splits import Split, validation_split
from twotower_utils.evaluation import baselines
from twotower_utils.evaluation.counting import filtered_topk_accuracy
from twotower_utils.experiments.sweep import data_fingerprint, settings_key
from twotower_utils.experiments.workflow import prepare, written_by_this_version
from twotower_utils.results import read_json, write_json_atomic
from twotower_utils.runtime import progress, say
from twotower_utils.training import train

PROG = "python -m twotower_utils tune"
DEFAULT_FOLDS = 5
DEFAULT_FRACTION = 0.1
CACHE_VERSION = 2  # 2: keys from RunConfig (a run and one model spec)
METRIC = "HR@10 filtered"
# Axes of `make tune`, crossed with each other around the best two-tower (presets.best_two_tower).
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


def fold_hit_rate(config: RunConfig, data: MovieLens, fold: Split, k: int = 10) -> float:
    """Train ``config`` on the fold's training part; filtered hit rate @k on its validation part."""
    model = train(config, data, fold, verbose=0, curves=False).model
    return float(filtered_topk_accuracy(model, fold.train, fold.test, [k], config.eval_batch_size)[k])


def _fold_key(config: RunConfig, data: MovieLens, fold: Split, k: int | str) -> str:
    key = [CACHE_VERSION, settings_key(config), k, data_fingerprint(data, fold)]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cross_validate(
    config: RunConfig,
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
    config: RunConfig,
    data: MovieLens,
    folds: Sequence[Split],
    measure: Callable[[Any, Split], dict[str, float]],
    name: str,
    cache_dir: str | Path | None = None,
) -> list[dict[str, float]]:
    """Like ``cross_validate``, for models judged by several numbers: ``measure(model, fold)`` on every fold
    (model seed ``config.seed + fold``).  ``name`` names the measure in the cache key: change it whenever
    ``measure`` changes what it returns."""

    def compute(fold_config: RunConfig, fold: Split) -> dict[str, float]:
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
            if field in cached and written_by_this_version(
                cached, f"the cached fold {path.name}", say, "computing it again"
            ):
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


def grid_configs(base: RunConfig, grid: dict[str, Sequence]) -> list[RunConfig]:
    """Every combination of the grid's values applied to ``base`` (validated by ``replace``)."""
    names = list(grid)
    return [
        base.replace(**dict(zip(names, values, strict=True))) for values in itertools.product(*(grid[n] for n in names))
    ]


def run_grid(
    base: RunConfig,
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
        settings = {name: setting(config, name) for name in grid}
        rows.append({**settings, "mean": float(np.mean(scores)), "std": float(np.std(scores)), "folds": scores})
        log(f"{settings}: mean {rows[-1]['mean']:.4f} ({time.perf_counter() - start:.0f} s)")
    return pd.DataFrame(rows).sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def setting(config: RunConfig, name: str) -> Any:
    """A setting of the run or of its model, by name (``"epochs"``, ``"embedding_dim"``)."""
    return getattr(config.model, name) if name in config.model.field_names() else getattr(config, name)


def _parse_grid(items: Sequence[str]) -> dict[str, tuple]:
    """``["epochs=10,20", "learning_rate_schedule=cosine"]`` -> typed values per field of the run or of the
    two-tower (``RetrievalSpec``)."""
    run = {k: v for k, v in RunConfig().to_dict().items() if k not in ("format", "model")}
    defaults = {**run, **{n: getattr(RetrievalSpec(), n) for n in RetrievalSpec.field_names()}}
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in defaults or not values:
            raise ValueError(
                f"grid entries look like field=v1,v2 with a field of the run or the two-tower; got {item!r}"
            )
        kind = type(defaults[name])
        if kind not in (int, float, str):
            raise ValueError(f"{name} cannot be tuned from the command line")
        grid[name] = tuple(kind(v) for v in values.split(","))
    return grid


def choose(table: pd.DataFrame, grid: dict[str, Sequence], ease: dict[float, list[float]]) -> dict[str, Any]:
    """The presets ``run_grid``'s table chooses: the best two-tower's switches with the best row's settings
    (the best mean over folds; ``run_grid`` sorts it first), and EASE's lambda (``best_lambda``)."""
    best = table.iloc[0]
    switches = {**presets.best_switches(), **{name: _plain(best[name]) for name in grid}}
    return {"switches": switches, "ease_lambda": best_lambda(ease)}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", nargs="*", default=None, help="field=v1,v2 ... (default: DEFAULT_GRID)")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS)
    parser.add_argument("--fraction", type=float, default=DEFAULT_FRACTION)
    parser.add_argument(
        "--seed", type=int, default=RunConfig.seed, help="the report's split seed; fold i trains with seed+i"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("results/tuning"))
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
        grid = DEFAULT_GRID if args.grid is None else _parse_grid(args.grid)
        base = presets.best_two_tower(seed=args.seed)
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
    ease_found = {"lambda": ease_lambda, "folds": ease[ease_lambda], "mean": float(np.mean(ease[ease_lambda]))}
    report: dict[str, Any] = {
        "command": sys.argv,
        "folds": args.folds,
        "fraction": args.fraction,
        "base": base.to_dict(),
        "ease": ease_found,
        "grid": table.to_dict(orient="records"),
        "seconds": time.perf_counter() - start,
    }
    write_json_atomic(args.output_dir / "tuning.json", report)
    chosen = choose(table, grid, ease)
    best = table.iloc[0]
    written = presets.write(
        "two_tower",
        chosen,
        command=presets.command_line(PROG, argv),
        folds=args.folds,
        validation={
            "metric": METRIC,
            "best": {"mean": float(best["mean"]), "std": float(best["std"]), "folds": list(best["folds"])},
            "ease": ease_found,
            "grid": table.to_dict(orient="records"),
        },
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns="folds").to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"chosen: {chosen['switches']}, EASE lambda {chosen['ease_lambda']:g}; wrote {written}")
    print(f"wrote {args.output_dir}/tuning.json in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
