"""Stronger rating models on MovieLens 100K, everything chosen on validation, scored on test.

A command line over ``twotower_utils.experiments.rating_study`` (its docstring says what is chosen where): for
each split (``u1``: GroupLens's canonical u1.base/u1.test; ``random``: the project's seed split, seed 42, 80/20)
and each seed, every model and their blend; test RMSE/MAE per model, mean and standard deviation over the seeds,
with fit times.  ``--refit`` trains the members again on the whole training part before the test.

    python benchmarks/study_rating_models.py --splits u1 --refit --output rating_study.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import make_split
from twotower_utils.experiments import rating_study
from twotower_utils.results import write_json_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", nargs="+", default=["u1", "random"], choices=["u1", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--validation", type=float, default=rating_study.VALIDATION, help="held-out training share")
    names = list(rating_study.MODEL_NAMES)
    parser.add_argument("--models", nargs="+", default=names, choices=names)
    parser.add_argument("--tf-models", nargs="*", default=[], help="preset rating model names, or 'multitask'")
    parser.add_argument("--refit", action="store_true", help="retrain the members on the whole training part")
    parser.add_argument("--effort", default="full", choices=list(rating_study.EFFORT), help="sweeps and epochs")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    for variable in ("TFDS_DATA_DIR", "TWOTOWER_ML100K_DIR"):
        if variable not in os.environ:
            print(f"note: ${variable} is not set", file=sys.stderr)
    data = MovieLens.load(download=False)
    results = {"command": " ".join(["python", *sys.argv]), "splits": {}}
    for name in args.splits:
        split = make_split(data, "u1") if name == "u1" else make_split(data, "random", 42, 0.8)
        found = rating_study.run_split(
            data,
            split,
            args.models,
            args.seeds,
            validation=args.validation,
            effort=args.effort,
            refit=args.refit,
            tf_models=args.tf_models,
        )
        results["splits"][name] = found
        rating_study.print_table(name, found["summary"])
        if args.output:
            write_json_atomic(Path(args.output), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
