"""The README's headline table: the report's two-tower, the best two-tower, EASE and most-popular on the report's
random 80/20 split, filtered HR@10 and HR@100, mean ± std over model seeds (``make headline``, a few minutes).

Every setting comes from the presets (``presets.best_two_tower``, ``presets.ease_lambda``: chosen on validation
folds of the training part by ``make tune``); nothing is chosen here.  Writes ``<output-dir>/headline.json``;
``make docs`` puts its table into the README.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from twotower_utils import presets
from twotower_utils.config import ConfigError, RunConfig
from twotower_utils.data.movielens import DataUnavailableError
from twotower_utils.evaluation import baselines
from twotower_utils.experiments.comparison import measure_scores, measure_two_tower, summarise
from twotower_utils.experiments.workflow import prepare
from twotower_utils.results import write_json_atomic
from twotower_utils.runtime import say

PROG = "python -m twotower_utils headline"
FILE = "headline.json"
COLUMNS = {"filtered HR@10": ("hit_rate_filtered", 10), "filtered HR@100": ("hit_rate_filtered", 100)}
KS = (10, 100)


def columns(result: dict) -> dict[str, float]:
    return {name: result[key][k] for name, (key, k) in COLUMNS.items()}


def headline(seeds=(42, 43, 44), data_dir: str | None = None) -> dict:
    """Train and evaluate the four rows; the JSON ``make docs`` renders (rows in the table's order)."""
    report = RunConfig()
    best = presets.best_two_tower()
    data, split = prepare(report, data_dir)
    lam = presets.ease_lambda()
    rows = {}
    started = time.perf_counter()
    rows["most popular"] = [
        measure_scores(baselines.popularity_scores(split.train, data.num_users, data.num_movies), data, split, KS)
    ]
    say("most popular: done")
    for name, config in (("the report's two-tower", report), ("the best two-tower", best)):
        rows[name] = measure_two_tower(config, data, split, seeds, KS)
        say(f"{name}: {len(seeds)} seeds done")
    rows[f"EASE (λ = {lam:g})"] = [
        measure_scores(baselines.ease_scores(split.train, data.num_users, data.num_movies, lam), data, split, KS)
    ]
    return {
        "command": PROG,
        "split": "random 80/20, split seed 42",
        "model_seeds": list(seeds),
        "settings": {"the report's two-tower": report.describe(), "the best two-tower": best.describe()},
        "rows": [{"model": name, **summarise(runs, columns)} for name, runs in rows.items()],  # the table's order
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(found: dict) -> str:
    """The table: one row per model, ``mean ± std`` over the model seeds (one number for a deterministic row)."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for summary in found["rows"]:
        name = summary["model"]
        cells = [
            f"{summary[c]['mean']:.4f} ± {summary[c]['std']:.4f}" if summary[c]["std"] else f"{summary[c]['mean']:.4f}"
            for c in COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="model seeds (default 42 43 44)")
    parser.add_argument("--output-dir", type=Path, default=Path("results"))
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    try:
        found = headline(tuple(args.seeds), args.data_dir)
    except (DataUnavailableError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_json_atomic(args.output_dir / FILE, found)
    print(markdown(found))
    print(f"wrote {args.output_dir / FILE} ({found['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
