"""Benchmark: how the report's recipe scales with the data, on synthetic MovieLens of ML-25M's shape.

    python benchmarks/bench_scale.py [--sizes 1000000,10000000,25000000] [--workers 1,2]
                                     [--output results/bench/scale.json]

Each size (ratings) runs in a fresh process, so its peak RSS is its own: it makes ``synthetic-25m-<size>``
(``data.synthetic``), splits it 80/20 at random, trains one epoch of the report's recipe (32-d, Adagrad 0.1,
batch 8192) and evaluates the test ratings exactly against the whole catalogue, filtered and unfiltered, in user
batches (``experiments.scaling.measure_size``).  With 2 workers the same runs as 2 local
``MultiWorkerMirroredStrategy`` processes on 127.0.0.1 (``distributed``), the figures of the chief.

Prints a table, writes every figure to JSON and a plot of time against size next to it, then the extrapolation
of a full 25M epoch to N machines (``experiments.scaling.extrapolate``).  Timings are wall-clock seconds on this
machine; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGETS = {"epoch_s": 60.0, "evaluation_s": 120.0, "peak_rss_gb": 8.0}  # the budgets at 25M ratings on 2 cores


def run_one(size: int, workers: int, output: Path) -> dict:
    """One size in a child process (single process, or ``workers`` local workers); its figures."""
    if workers == 1:
        command = [sys.executable, __file__, "--one", str(size), "--output", str(output)]
        subprocess.run(command, check=True)
    else:
        from twotower_utils.distributed import run_local_workers

        run_local_workers(
            workers,
            [sys.executable, __file__, "--one", str(size), "--output", str(output), "--strategy", "multi_worker"],
        )
    return json.loads(output.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000,25000000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--output", default="results/bench/scale.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: measure one size
    parser.add_argument("--strategy", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    output = Path(args.output)
    if args.one:
        from twotower_utils.experiments.scaling import measure_size

        strategy = None
        if args.strategy != "none":
            from twotower_utils.distributed import is_chief, make_strategy

            strategy = make_strategy(args.strategy)
            if not is_chief():
                measure_size(args.one, strategy=strategy, evaluate_test=False)
                return
        figures = measure_size(args.one, strategy=strategy)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(figures, indent=2))
        return
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for size in [int(s) for s in args.sizes.split(",")]:
            part = output.with_name(f"{output.stem}.{size}.{workers}w.json")
            print(f"{size:,} ratings, {workers} worker(s) ...", flush=True)
            rows.append(run_one(size, workers, part) | {"workers": workers})
    report(rows, output)


def report(rows: list[dict], output: Path) -> None:
    import pandas as pd

    from twotower_utils.experiments.scaling import extrapolate
    from twotower_utils.notebook.plots import plot_scaling

    table = pd.DataFrame(rows)
    columns = ["ratings", "workers", "users", "movies", "load_s", "epoch_s", "examples_per_s", "gflop_per_step",
               "loss_shape_gflops", "matmul_share_of_peak", "evaluation_s", "peak_rss_gb"]  # fmt: skip
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:,.3g}"))
    full = table[(table["workers"] == 1)].sort_values("ratings").iloc[-1].to_dict()
    size = int(full["ratings"])
    print(
        f"\ntargets at 25M ratings, measured at {size:,}" + ("" if size >= 25_000_000 else " (not the targets' size)")
    )
    for key, target in TARGETS.items():
        verdict = ("met" if full[key] <= target else "not met") if size >= 25_000_000 else "n/a"
        print(f"  {key}: {full[key]:.1f} (target <= {target:g}) {verdict}")
    print(f"  one epoch at the measured matmul peak would take {full['epoch_at_matmul_peak_s']:.0f} s")
    print("\na full 25M epoch on N machines like this one (data-parallel, 10 Gbit/s):")
    print(extrapolate(full).to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"rows": rows, "targets": TARGETS}, indent=2))
    figure = plot_scaling(table)
    figure.savefig(output.with_suffix(".png"), dpi=120, bbox_inches="tight")
    print(f"\nwrote {output} and {output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
