"""Benchmark: seconds per epoch on one device, MirroredStrategy over 2 logical CPUs, and 2 local
MultiWorkerMirroredStrategy workers, on the same data (MovieLens 100K's training split, the report's recipe).

    python benchmarks/bench_distributed.py [--epochs 3] [--ratings 0] [--batch-size 8192]

Each setup runs ``python -m twotower_utils distributed`` in processes of its own (the two workers on
127.0.0.1 with their TF_CONFIG) and reports what the chief printed: the first epoch (tracing included) and the
mean of the others.  On one machine the replicas share its cores, so this measures the cost of the
distribution machinery, not a speed-up: that needs devices or machines of their own.  Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twotower_utils.distributed import RESULT_PREFIX, free_ports, start_entry_point  # noqa: E402


def run(setups: list[tuple[list[str], dict[str, str]]], timeout: float) -> list[dict]:
    """Start every (arguments, extra environment) process at once; their printed results, in order."""
    processes = [start_entry_point(args, env) for args, env in setups]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=timeout)
        if process.returncode != 0:
            raise SystemExit(f"a run failed:\n{stderr[-3000:]}")
        line = next(line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX))
        results.append(json.loads(line[len(RESULT_PREFIX) :]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ratings", type=int, default=0, help="first N training ratings (0: all 80,000)")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    output = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    common = ["--epochs", str(args.epochs), "--ratings", str(args.ratings), "--batch-size", str(args.batch_size)]
    common += ["--no-save"]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        (
            ["--strategy", "multi_worker", "--output-dir", str(output / "mwms"), *common],
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    rows = [
        (
            "1 device",
            run([(["--strategy", "one_device", "--output-dir", str(output / "one"), *common], {})], args.timeout),
        ),
        (
            "mirrored, 2 logical CPUs",
            run(
                [(["--strategy", "mirrored", "--devices", "2", "--output-dir", str(output / "m"), *common], {})],
                args.timeout,
            ),
        ),
        ("multi-worker, 2 local processes", run(workers, args.timeout)),
    ]
    first = rows[0][1][0]
    print(
        f"{first['train_ratings']:,} training ratings, batch {first['batch_size']}, {args.epochs} epochs, {os.cpu_count()} cores"
    )
    print(f"{'setup':<34}{'replicas':>9}{'1st epoch s':>13}{'later epochs s':>16}{'last loss':>12}")
    for name, results in rows:
        chief = next(result for result in results if result["chief"])
        later = chief["epoch_seconds"][1:] or chief["epoch_seconds"]
        print(
            f"{name:<34}{chief['replicas']:>9}{chief['epoch_seconds'][0]:>13.2f}"
            f"{sum(later) / len(later):>16.2f}{chief['loss'][-1]:>12.1f}"
        )


if __name__ == "__main__":
    main()
