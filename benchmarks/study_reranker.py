"""Study: re-ranking stage one's candidates with every training signal, a linear and a gradient-boosted ranker.

    python benchmarks/study_reranker.py [--split-seeds 42 7] [--seeds 42 43 44] [--folds 1]
        [--output results/ranking/study_reranker.json]

A command line over ``twotower_utils.experiments.every_signal`` (its docstring says what is fitted and chosen
where), for each random 80/20 split (``--split-seeds``) and model seed (``--seeds``); stage one is the best
two-tower (``presets.best_two_tower``), trained here.  Prints the table (mean ± std and every seed, per split),
LightGBM's feature importances (gain) and each stage's training and scoring seconds; writes everything to
``--output``.  The rating prediction is biased MF by ALS (the presets' settings; seconds, where the TensorFlow
SVD++ of notebook 08 takes a minute); no sequence tower's score is used (a random split has no sequence protocol).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


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
    from twotower_utils.evaluation.metrics import model_scores
    from twotower_utils.experiments import every_signal, tuning
    from twotower_utils.results import write_json_atomic
    from twotower_utils.training import train

    data = load_movielens("100k", args.data_dir)
    clock = every_signal.Clock()
    epochs = {} if args.epochs is None else {"epochs": args.epochs}

    def stage_one(part, seed):
        config = presets.best_two_tower(seed=seed, **epochs)
        model = clock.time("stage one (train)", lambda: train(config, data, part, verbose=0, curves=False).model)
        return clock.time("stage one (score the catalogue)", model_scores, model)

    report = {"command": sys.argv, "gbdt_features": args.gbdt_features, "grid": list(every_signal.GRID), "splits": {}}
    importances = []
    start_all = time.perf_counter()
    for split_seed in args.split_seeds:
        split = random_split(data, split_seed)
        folds = tuning.validation_folds(split.train, args.folds)
        found = every_signal.run_split(
            data, split, folds, args.seeds, stage_one, gbdt_features=args.gbdt_features, clock=clock, log=log
        )
        report["splits"][str(split_seed)] = every_signal.plain(found)
        importances.append(found["importances"])
        print(f"\nrandom 80/20 split, split seed {split_seed} (filtered HR@10 / NDCG@10, list protocol)")
        with pd.option_context("display.width", 250, "display.max_colwidth", 60):
            print(every_signal.results_table(found["runs"]).to_string(float_format=lambda v: f"{v:.4f}"))
    mean_gain = pd.concat(importances).groupby(level=0).mean().sort_values("gain share", ascending=False)
    print("\nLightGBM feature importances (share of the total gain, mean over splits and seeds)")
    print(mean_gain.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\ncost per stage (seconds)")
    print(clock.table().to_string(float_format=lambda v: f"{v:.2f}"))
    report["importances"] = mean_gain.reset_index().to_dict(orient="records")
    report["cost"] = clock.table().to_dict(orient="index")
    report["seconds"] = time.perf_counter() - start_all
    write_json_atomic(args.output, report)
    print(f"\nwrote {args.output} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
