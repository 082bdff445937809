"""Scaling up (notebook 11, ``make bench-scale``): what one epoch and one evaluation cost as the data
grows, measured on synthetic MovieLens of a real set's shape (``data.synthetic``).

Where the time of a training step goes.  The report's loss is the in-batch softmax, computed on the batch's
*distinct* users ``U`` and movies ``M`` (``models.losses.retrieval_loss``): a forward ``[U, d] @ [d, M]`` product
and two backward products of the same size, ``6 U M d`` FLOPs, plus a log-sum-exp over ``U x M`` scores.  On
MovieLens 100K a batch of 8,192 ratings holds ~900 users, so the distinct-id loss does ~10x less work than the
``8192 x 8192`` one; on ML-25M's shape (162,541 users) nearly every rating of a batch has its own user, so it
saves only the repeated movies.  ``batch_shape`` measures ``U`` and ``M`` on the real training frame,
``matmul_peak`` this machine's GFLOP/s on that very shape, and ``measure_size`` puts an epoch next to both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.config import RunConfig
from twotower_utils.data.sets import DATASETS, dataset_facts
from twotower_utils.data.splits import random_split
from twotower_utils.data.synthetic import synthetic_movielens
from twotower_utils.evaluation.metrics import evaluate
from twotower_utils.runtime import peak_rss_bytes
from twotower_utils.training import train


def sets_table(embedding_dim: int = 32) -> pd.DataFrame:
    """The MovieLens sets side by side: their published sizes, each as a multiple of 100K's, and what the
    report's two towers and Adagrad's accumulators (one float per parameter) take in memory at ``embedding_dim``
    (per the published movie counts: 100K's 1,682 movies carry 1,664 distinct titles, the report's vocabulary)."""
    base = DATASETS["100k"]
    rows = []
    for facts in DATASETS.values():
        parameters = (facts.users + 1 + facts.rated_movies + 1) * embedding_dim
        rows.append(
            {
                "set": facts.name,
                "ratings": facts.ratings,
                "users": facts.users,
                "movies": facts.rated_movies,
                "ratings x 100k": facts.ratings / base.ratings,
                "users x 100k": facts.users / base.users,
                "movies x 100k": facts.rated_movies / base.rated_movies,
                "density %": 100 * facts.ratings / (facts.users * facts.rated_movies),
                "tower parameters": parameters,
                "tables + Adagrad MB": 2 * 4 * parameters / 1e6,
                "dense scores GB": 4 * (facts.users + 1) * (facts.rated_movies + 1) / 1e9,
                "demographics": facts.demographics,
            }
        )
    return pd.DataFrame(rows).set_index("set")


def frame_memory(frame: pd.DataFrame) -> pd.DataFrame:
    """Bytes of each column of a ratings frame, in all and per rating (``Categorical`` strings: the codes per row
    plus the distinct strings once)."""
    usage = frame.memory_usage(deep=True, index=False)
    table = pd.DataFrame({"dtype": frame.dtypes.astype(str), "MB": usage / 1e6, "bytes per rating": usage / len(frame)})
    table.loc["all"] = ["", usage.sum() / 1e6, usage.sum() / len(frame)]
    return table


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GiB (``runtime.peak_rss_bytes``)."""
    return peak_rss_bytes() / 1024**3


def batch_shape(train: pd.DataFrame, batch_size: int, seed: int = 0, batches: int = 50) -> dict[str, float]:
    """Mean distinct users ``U`` and movies ``M`` of a shuffled training batch (what the loss multiplies)."""
    rng = np.random.default_rng(seed)
    users, movies = train["user_idx"].to_numpy(), train["movie_idx"].to_numpy()
    size = min(batch_size, len(train))
    shapes = []
    for _ in range(batches):
        rows = rng.choice(len(train), size, replace=False) if size == len(train) else rng.integers(0, len(train), size)
        shapes.append((len(np.unique(users[rows])), len(np.unique(movies[rows]))))
    distinct_users, distinct_movies = np.mean(shapes, axis=0)
    return {"distinct_users": float(distinct_users), "distinct_movies": float(distinct_movies)}


def step_gflop(distinct_users: float, distinct_movies: float, dim: int) -> float:
    """Matrix-product GFLOP of one step of the distinct-id loss: forward scores and two backward products."""
    return 6 * distinct_users * distinct_movies * dim / 1e9


def matmul_peak(rows: int, columns: int, dim: int, repeats: int = 10) -> dict[str, float]:
    """This machine's GFLOP/s for ``[rows, dim] @ [dim, columns]`` (the loss's product) and for a square
    2048 product (the best case for the CPU's vector units)."""
    result = {}
    for name, (m, n, k) in {"loss_shape": (rows, columns, dim), "square_2048": (2048, 2048, 2048)}.items():
        a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
        product = tf.function(tf.autograph.experimental.do_not_convert(lambda a, b: tf.reduce_sum(tf.matmul(a, b))))
        product(a, b).numpy()
        start = time.perf_counter()
        for _ in range(repeats):
            product(a, b).numpy()
        result[f"{name}_gflops"] = 2 * m * n * k * repeats / (time.perf_counter() - start) / 1e9
    return result


def measure_size(
    num_ratings: int,
    shape: str = "25m",
    config: RunConfig | None = None,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    user_batch: int = 1024,
    strategy=None,
    evaluate_test: bool = True,
) -> dict:
    """Make ``synthetic-<shape>-<num_ratings>``, split it 80/20, train one epoch (on ``strategy`` if given) and
    evaluate the test ratings exactly against the whole catalogue (unless ``evaluate_test`` is off: a worker that
    is not the chief); every figure (seconds, examples/s, batch shape, FLOPs, peak RSS)."""
    config = (config or RunConfig()).replace(epochs=1, dataset=f"synthetic-{shape}-{num_ratings}")
    dim = config.model.embedding_dim
    figures: dict = {"ratings": num_ratings, "embedding_dim": dim}
    start = time.perf_counter()
    data = synthetic_movielens(shape, num_ratings, seed=0)
    figures |= {"load_s": time.perf_counter() - start, "users": data.num_users, "movies": data.num_movies}
    start = time.perf_counter()
    split = random_split(data, seed=config.seed)
    figures |= {"split_s": time.perf_counter() - start, "train": len(split.train), "test": len(split.test)}
    batch = batch_shape(split.train, config.batch_size)
    steps = math.ceil(len(split.train) / config.batch_size)
    flop = step_gflop(batch["distinct_users"], batch["distinct_movies"], dim)
    peak = matmul_peak(round(batch["distinct_users"]), round(batch["distinct_movies"]), dim)
    figures |= batch | peak | {"steps": steps, "gflop_per_step": flop}
    result = train(config, data, split, verbose=0, curves=False, strategy=strategy)
    figures |= {"epoch_s": result.seconds, "examples_per_s": len(split.train) / result.seconds}
    figures["matmul_share_of_peak"] = flop * steps / result.seconds / peak["loss_shape_gflops"]
    figures["epoch_at_matmul_peak_s"] = flop * steps / peak["loss_shape_gflops"]
    start = time.perf_counter()
    metrics = evaluate(
        result.model, split.train, split.test, data.num_users, data.num_movies, ks, user_batch=user_batch
    )
    figures["evaluation_s"] = time.perf_counter() - start
    figures |= {f"hit_rate_filtered@{k}": metrics["hit_rate_filtered"][k] for k in ks}
    figures["peak_rss_gb"] = peak_rss_gb()
    return figures


def extrapolate(figures: dict, machines: Sequence[int] = (1, 2, 4, 8, 16), gbit_per_s: float = 10.0) -> pd.DataFrame:
    """A full-size epoch on N machines like this one, data-parallel (``MultiWorkerMirroredStrategy``): the
    measured epoch (scaled to the set's full size) split N ways, plus each step's gradient exchange.  The
    embedding gradients are sparse: a step touches ~``U + M`` rows of ``d`` floats per replica, all-gathered
    over a ring (each machine sends and receives ``(N - 1)`` replicas' rows), at ``gbit_per_s``."""
    facts = dataset_facts("25m")
    scale = facts.ratings / figures["ratings"]
    epoch = figures["epoch_s"] * scale
    steps = figures["steps"] * scale
    row_bytes = (figures["distinct_users"] + figures["distinct_movies"]) * figures["embedding_dim"] * 4
    rows = []
    for n in machines:
        exchange = steps * (n - 1) * row_bytes / n / (gbit_per_s * 1e9 / 8) if n > 1 else 0.0
        rows.append({"machines": n, "compute_s": epoch / n, "exchange_s": exchange, "epoch_s": epoch / n + exchange})
    return pd.DataFrame(rows)
