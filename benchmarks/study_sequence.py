"""Study: sequence towers trained SASRec's way (every position predicts the next movie) against recency-weighted EASE.

    python benchmarks/study_sequence.py [--protocols leave_one_out leave_latest] [--seeds 0 1 2] [--unseen]
        [--kinds sasrec gru] [--output results/sequence/study_sequence.json]

For each temporal protocol (``experiments.sequence``: leave-one-out, leave-latest-out 80/20 per user by time) the
validation is carved inside training exactly as notebook 09 carves it (``sequence.validation_for``: each user's
last training ratings held out).  On it, and never on test:

* recency-weighted EASE's and EASE's settings (``sequence.choose_baselines``);
* each tower (``--kinds``) is trained with ``models.sequential`` (the user's whole sequence in one causal pass,
  full-catalogue softmax cross-entropy at every position) and early-stopped on validation filtered HR@10
  (``--patience`` epochs, at most ``--max-epochs``); the best epoch's weights are kept
  (``sequence.train_next_item``);
* the tower's settings: a small grid (``--grid``: L, blocks, dropout, dimension) run on the first seed, the
  best by validation HR@10 used for every seed;
* the blend ``alpha z(tower) + (1 - alpha) z(recency-weighted EASE)`` (both scores standardised per user over
  the catalogue), alpha on a grid of 0.1 steps (``sequence.choose_alpha``).

Test: the early-stopped tower (trained on the validation's training part; ``--refit`` retrains on the whole
training part for the best epoch count) reads each user's whole training history, the baselines are fitted on
the whole training part; filtered HR@10, NDCG@10 and HR@100 (``sequence.compare_protocol``).  ``--unseen`` adds
the global time cut's users without a training rating (``sequence.compare_unseen``), each test rating scored
from the user's earlier test-period ratings, with leave-latest-out's tower settings and its validation carving
on the time cut's training part.

Prints each protocol's table (mean ± std over seeds and every seed) and writes the numbers, the choices, the
validation curves (HR@10 per epoch up to the stop) and the epoch times to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_GRID = ("L=200,blocks=2,dropout=0.2,dim=64", "L=50,blocks=2,dropout=0.5,dim=64")
GRU_GRID = ("L=200,dropout=0.2,dim=64",)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def print_table(title: str, runs: dict[str, list[dict]]) -> None:
    print(f"\n{title}")
    print(f"{'model':<78} {'HR@10':>17} {'NDCG@10':>17}  every seed (HR@10 / NDCG@10)")
    for name, values in runs.items():
        hr = np.array([r["HR@10"] for r in values])
        nd = np.array([r["NDCG@10"] for r in values])
        seeds = "  ".join(f"{h:.4f}/{n:.4f}" for h, n in zip(hr, nd, strict=True))
        print(f"{name[:78]:<78} {hr.mean():.4f} ± {hr.std():.4f} {nd.mean():.4f} ± {nd.std():.4f}  {seeds}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", nargs="+", default=["leave_one_out", "leave_latest"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", choices=("sasrec", "gru"), default=["sasrec", "gru"])
    parser.add_argument("--grid", nargs="+", default=list(DEFAULT_GRID), help="SASRec settings tried on seed 0")
    parser.add_argument("--gru-grid", nargs="+", default=list(GRU_GRID), help="GRU settings tried on seed 0")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--loss", choices=("softmax", "sampled"), default="softmax")
    parser.add_argument("--negatives", type=int, default=0, help="sampled softmax: negatives per batch")
    parser.add_argument("--targets-ahead", type=int, default=1, help="leave_latest: also try k next movies")
    parser.add_argument("--refit", action="store_true", help="retrain on the whole training part for the test")
    parser.add_argument("--unseen", action="store_true", help="also the time cut's users without training ratings")
    parser.add_argument("--output", type=Path, default=Path("results/sequence/study_sequence.json"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    from twotower_utils.experiments import sequence as sq
    from twotower_utils.experiments.workflow import load_data

    started = time.perf_counter()
    data = load_data(args.data_dir)
    training = {
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "loss": args.loss,
        "negatives": args.negatives,
        "epoch_log": log,
    }
    grids = {"sasrec": args.grid, "gru": args.gru_grid}
    report: dict = {"command": sys.argv, "arguments": sq.plain_json(vars(args) | {"output": str(args.output)})}
    for protocol in args.protocols:
        towers = {}
        for kind in args.kinds:
            grid = [sq.parse_setting(s) for s in grids[kind]]
            if protocol == "leave_latest" and args.targets_ahead > 1:
                grid += [{**g, "ahead": args.targets_ahead} for g in grid[:1]]
            towers[kind] = grid
        found = sq.compare_protocol(data, protocol, towers, args.seeds, refit=args.refit, log=log, **training)
        report[protocol] = sq.plain_json({k: v for k, v in found.items()})
        print_table(f"{protocol} (test, filtered)", found["runs"])
    if args.unseen and "leave_latest" in report:
        latest = report["leave_latest"]
        kind = args.kinds[0]
        found = sq.compare_unseen(
            data,
            {kind: [latest["towers"][kind]["setting"]]},
            args.seeds,
            latest["choices"],
            refit=args.refit,
            log=log,
            **training,
        )
        report["unseen"] = sq.plain_json(found)
        print_table("unseen users of the time cut (test, filtered)", found["runs"])
    report["seconds"] = time.perf_counter() - started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(sq.plain_json(report), indent=1))
    log(f"wrote {args.output} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
