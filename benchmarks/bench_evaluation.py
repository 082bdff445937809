"""Benchmark: exact full-catalogue evaluation at MovieLens 25M's size, in user batches, bounded memory.

    python benchmarks/bench_evaluation.py [--users 162541] [--movies 59047] [--train 20000000]
                                          [--test 5000000] [--user-batches 512 1024 2048] [--output FILE]

Random towers-like embeddings (``--users`` x 32 and ``--movies`` x 32, float32) and random interactions as
plain frames of ``user_idx`` / ``movie_idx`` (users drawn with log-normal activity, movies with power-law
popularity, Zipf exponent 1), then ``metrics.evaluate`` of a ``TowerScorer`` (``--source popularity``: the
most-popular baseline's ``PopularityScorer``, which needs no ``[users x movies]`` matrix either): unfiltered and filtered hit
rates @1/5/10/50/100 of every test rating, per-user recall/precision/NDCG/MAP @1/5/10, the exact MRR,
coverage and popularity of the top-10 lists.  It prints the seconds of each user batch size and the peak
RSS (a sampler thread every 50 ms, and ``getrusage``'s peak of the whole process, data included).

Budgets on this 2-core machine: at most 120 s and 8 GB of peak RSS.  The figures are wall-clock:
run it on a quiet machine.  The data are not MovieLens; only their sizes and skew are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pandas as pd

from twotower_utils.runtime import peak_rss_bytes, resident_bytes

TARGET_SECONDS, TARGET_RSS_GB = 120.0, 8.0
KS = (1, 5, 10, 50, 100)


class PeakSampler:
    """The largest RSS seen while the ``with`` block runs (sampled every ``interval`` seconds)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak = interval, resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, resident_bytes())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def random_interactions(rng, size: int, user_weights: np.ndarray, movie_weights: np.ndarray) -> pd.DataFrame:
    """``size`` (user_idx, movie_idx) pairs, ids from 1, drawn independently with the given weights."""

    def draw(weights: np.ndarray) -> np.ndarray:
        cumulative = np.cumsum(weights / weights.sum())
        return (np.searchsorted(cumulative, rng.random(size), side="right") + 1).clip(max=len(weights))

    return pd.DataFrame(
        {"user_idx": draw(user_weights).astype(np.int32), "movie_idx": draw(movie_weights).astype(np.int32)}
    )


def make_data(num_users: int, num_movies: int, num_train: int, num_test: int, dim: int, seed: int):
    """Random tables and frames of the requested shape (see the module docstring)."""
    rng = np.random.default_rng(seed)
    user_weights = rng.lognormal(0.0, 1.0, num_users)
    movie_weights = 1.0 / np.arange(1, num_movies + 1)  # Zipf: the i-th most popular movie has weight 1 / i
    movie_weights = movie_weights[rng.permutation(num_movies)]
    train = random_interactions(rng, num_train, user_weights, movie_weights)
    test = random_interactions(rng, num_test, user_weights, movie_weights)
    users = (rng.standard_normal((num_users + 1, dim)) / np.sqrt(dim)).astype(np.float32)
    # popular movies get larger norms, as trained towers give them
    norms = (1.0 + np.log1p(movie_weights * num_movies))[:, None]
    movies = rng.standard_normal((num_movies + 1, dim)).astype(np.float32)
    movies[1:] *= (norms / np.sqrt(dim)).astype(np.float32)
    return users, movies, train, test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=162_541)
    parser.add_argument("--movies", type=int, default=59_047)
    parser.add_argument("--train", type=int, default=20_000_000)
    parser.add_argument("--test", type=int, default=5_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--user-batches", type=int, nargs="+", default=[1024])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--source", choices=["towers", "popularity"], default="towers", help="random towers or most-popular"
    )
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from twotower_utils.evaluation.baselines import PopularityScorer
    from twotower_utils.evaluation.counting import TowerScorer
    from twotower_utils.evaluation.metrics import evaluate

    start = time.perf_counter()
    users, movies, train, test = make_data(args.users, args.movies, args.train, args.test, args.dim, args.seed)
    if args.source == "towers":
        scorer = TowerScorer.from_tables(users, movies)
    else:
        scorer = PopularityScorer(train, args.users, args.movies)
    print(
        f"{args.source}: {args.users:,} users x {args.movies:,} movies, {len(train):,} train / {len(test):,} test "
        f"interactions, built in {time.perf_counter() - start:.1f} s, RSS {resident_bytes() / 1e9:.2f} GB",
        flush=True,
    )
    runs = []
    for user_batch in args.user_batches:
        with PeakSampler() as sampler:
            start = time.perf_counter()
            result = evaluate(scorer, train, test, args.users, args.movies, KS, 10, user_batch)
            seconds = time.perf_counter() - start
        runs.append({"user_batch": user_batch, "seconds": seconds, "peak_rss_gb": sampler.peak / 1e9})
        print(
            f"user_batch {user_batch:5d}: {seconds:6.1f} s, peak RSS {sampler.peak / 1e9:.2f} GB; "
            f"HR@10 {result['hit_rate'][10]:.4f}, filtered HR@10 {result['hit_rate_filtered'][10]:.4f}, "
            f"NDCG@10 {result['ranking']['ndcg@10']:.4f}, MRR {result['ranking']['mrr']:.5f}",
            flush=True,
        )
    process_peak = peak_rss_bytes() / 1e9
    best = min(runs, key=lambda run: run["seconds"])
    met = best["seconds"] <= TARGET_SECONDS and process_peak <= TARGET_RSS_GB
    print(
        f"best: user_batch {best['user_batch']} in {best['seconds']:.1f} s (target {TARGET_SECONDS:.0f} s); "
        f"peak RSS of the whole process {process_peak:.2f} GB (target {TARGET_RSS_GB:.0f} GB): "
        f"{'targets met' if met else 'targets NOT met'}"
    )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "shape": vars(args) | {"output": str(args.output)},
            "runs": runs,
            "process_peak_rss_gb": process_peak,
        }
        args.output.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
