"""Finding the best-scoring candidates for a query vector: exact search (a matrix product and a top-k) and
approximate search with ScaNN, plus what it takes to compare them (a large synthetic catalogue, recall@k,
per-query latency percentiles).

Exact search scores every candidate: ``N x d`` multiply-adds per query, so its cost grows linearly with the
catalogue.  ScaNN (Guo et al. 2020) splits the candidates into ``num_leaves`` clusters (a k-means tree),
scores only the ``leaves_to_search`` clusters nearest the query with 4-bit anisotropic codes ("AH", about
``d / dims_per_block`` half-bytes per candidate), and rescores the best ``reorder`` of those exactly.  Fewer
leaves or a shorter reorder list is faster and misses more of the true top-k; recall@k against exact search
measures how much.

``build_scann`` makes the same index with ScaNN's two APIs: ``"numpy"`` (``scann_ops_pybind``, what the
benchmark uses) and ``"tf"`` (``scann_ops``, TensorFlow ops that a SavedModel can hold).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from twotower_utils.runtime import SCANN_INFO, filtered_stderr, resident_bytes


@dataclass(frozen=True)
class ScannOptions:
    """How a ScaNN index is built (``num_leaves``, ``dims_per_block``, ``anisotropic_threshold``) and
    searched by default (``leaves_to_search``, ``reorder``; both can be changed per query)."""

    num_leaves: int
    leaves_to_search: int
    reorder: int
    dims_per_block: int = 2
    anisotropic_threshold: float = 0.2
    training_sample_size: int = 250_000
    reorder_quantize: str = "float32"  # or "int8": a 4x smaller copy of the candidates for rescoring

    def __post_init__(self) -> None:
        for name in ("num_leaves", "leaves_to_search", "reorder", "dims_per_block", "training_sample_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ScaNN option {name} must be a whole number >= 1, got {value!r}")
        if self.leaves_to_search > self.num_leaves:
            raise ValueError(f"leaves_to_search ({self.leaves_to_search}) exceeds num_leaves ({self.num_leaves})")
        if self.reorder_quantize not in ("float32", "int8"):
            raise ValueError(f"reorder_quantize must be 'float32' or 'int8', got {self.reorder_quantize!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def default_scann_options(num_candidates: int, reorder: int = 300) -> ScannOptions:
    """ScaNN's usual starting point: about sqrt(N) leaves, a tenth of them searched (at least 12, all of
    them for tiny catalogues), 2-dimensional AH blocks, ``reorder`` candidates rescored exactly."""
    if num_candidates < 1:
        raise ValueError("a ScaNN index needs at least one candidate")
    num_leaves = max(1, min(round(math.sqrt(num_candidates)), num_candidates // 20 or 1))
    return ScannOptions(
        num_leaves=num_leaves,
        leaves_to_search=min(num_leaves, max(12, num_leaves // 10)),
        reorder=min(reorder, num_candidates),
    )


def default_settings(num_leaves: int, k: int = 10) -> list[tuple[int, int]]:
    """Four search settings ``(leaves_to_search, reorder)`` from fast to accurate: about 1%, 2%, 5% and 10%
    of the leaves, rescoring 100, 300, 1,000 and 1,000 candidates."""
    pairs = [(num_leaves // 100, 100), (num_leaves // 50, 300), (num_leaves // 20, 1000), (num_leaves // 10, 1000)]
    return list(dict.fromkeys((max(1, leaves), max(k, reorder)) for leaves, reorder in pairs))


def build_scann(candidates: np.ndarray, options: ScannOptions, k: int = 10, api: str = "numpy"):
    """A dot-product ScaNN searcher over the rows of ``candidates`` (``float32 [N, d]``).

    ``api="numpy"``: ``scann.scann_ops_pybind`` (search with NumPy arrays); ``api="tf"``:
    ``scann.scann_ops`` (TensorFlow ops; ``searcher.serialize_to_module()`` goes into a SavedModel)."""
    try:
        if api == "numpy":
            from scann.scann_ops.py import scann_ops_pybind as scann_api
        elif api == "tf":
            from scann.scann_ops.py import scann_ops as scann_api
        else:
            raise ValueError(f"api must be 'numpy' or 'tf', got {api!r}")
    except ImportError as error:  # pragma: no cover - scann is pinned in requirements.txt
        raise ImportError("ScaNN is not installed: pip install 'scann==1.4.2' (Linux x86-64 with AVX)") from error
    candidates = np.ascontiguousarray(candidates, dtype=np.float32)
    builder = scann_api.builder(candidates, k, "dot_product")
    builder = builder.tree(
        num_leaves=options.num_leaves,
        num_leaves_to_search=options.leaves_to_search,
        training_sample_size=min(options.training_sample_size, len(candidates)),
        min_partition_size=max(1, min(50, len(candidates) // (2 * options.num_leaves))),
    )
    builder = builder.score_ah(options.dims_per_block, anisotropic_quantization_threshold=options.anisotropic_threshold)
    if options.reorder_quantize == "int8":
        from scann.scann_ops.py.scann_builder import ReorderType

        builder = builder.reorder(options.reorder, quantize=ReorderType.INT8)
    else:
        builder = builder.reorder(options.reorder)
    with filtered_stderr(SCANN_INFO):  # the build's info lines; warnings and errors pass
        return builder.build()


SCORE_BUDGET = 256 << 20  # bytes of scores exact search holds at once
ALIGNMENT = 64  # bytes; TensorFlow shares a NumPy buffer only when it is aligned like its own


def aligned_empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``ALIGNMENT``-byte boundary."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + ALIGNMENT, dtype=np.uint8)
    offset = (-raw.ctypes.data) % ALIGNMENT
    return raw[offset : offset + size].view(dtype).reshape(shape)


def exact_top_k(
    candidates: np.ndarray, queries: np.ndarray, k: int, block: int = 1_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Exact dot-product top-k with NumPy: ``(indices [Q, k], scores [Q, k])``, best first.

    Candidates are scored ``block`` rows at a time (fewer when ``Q x block`` scores would pass
    ``SCORE_BUDGET`` bytes), so memory stays bounded whatever N and Q are."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = len(candidates)
    k = min(k, n)
    block = max(k, min(block, SCORE_BUDGET // (4 * len(queries))))
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_index = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, n, block):
        part_of = candidates[start : start + block]
        scores = (part_of @ queries[0])[np.newaxis] if len(queries) == 1 else queries @ part_of.T
        take = min(k, scores.shape[1])
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, axis=1)], axis=1)
        best_index = np.concatenate([best_index, part + start], axis=1)
        if best_scores.shape[1] > k:
            keep = np.argpartition(-best_scores, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(best_scores, keep, axis=1)
            best_index = np.take_along_axis(best_index, keep, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_index, order, axis=1), np.take_along_axis(best_scores, order, axis=1)


def tf_exact_search(candidates, k: int, block: int = 250_000):
    """Exact search with TensorFlow (``tf.matmul`` + ``tf.math.top_k``), what ``tfrs...BruteForce`` does.

    Returns ``(search, tensor)``: ``search(queries) -> (indices, scores)`` as NumPy arrays, and the candidate
    tensor it searches.  The tensor shares the NumPy array's memory (DLPack) where TensorFlow allows it, so a
    large catalogue is not copied."""
    import tensorflow as tf

    array = np.ascontiguousarray(candidates, dtype=np.float32)
    if array.ctypes.data % ALIGNMENT == 0:  # TensorFlow aborts the process on a misaligned buffer
        tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    else:
        tensor = tf.constant(array)
    n = int(tensor.shape[0])
    k = min(k, n)
    starts = list(range(0, n, block))

    @tf.function(input_signature=[tf.TensorSpec([None, int(tensor.shape[1])], tf.float32)])
    def search(queries):
        scores, index = [], []
        for start in starts:  # unrolled: a few blocks, each its own matmul + top-k
            part = tf.matmul(queries, tensor[start : start + block], transpose_b=True)
            top = tf.math.top_k(part, k=min(k, min(block, n - start)))
            scores.append(top.values)
            index.append(top.indices + start)
        scores, index = tf.concat(scores, axis=1), tf.concat(index, axis=1)
        top = tf.math.top_k(scores, k=k)
        return tf.gather(index, top.indices, batch_dims=1), top.values

    def run(queries):
        index, scores = search(tf.constant(np.atleast_2d(np.asarray(queries, dtype=np.float32))))
        return index.numpy(), scores.numpy()

    return run, tensor


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean share of each query's exact top-k that ``found`` (``[Q, >= k]`` candidate ids) also returns in
    its top k."""
    found, exact = np.asarray(found)[:, :k], np.asarray(exact)[:, :k]
    hits = [len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True)]
    return float(np.sum(hits) / exact.size)


def synthetic_catalogue(embeddings: np.ndarray, size: int, seed: int = 0, chunk: int = 1_000_000) -> np.ndarray:
    """``size`` candidates made from real item embeddings the way TFRS's ``efficient_serving`` tutorial does:
    the real rows first, then copies of them, each entry multiplied by uniform noise in [0, 1).  Made in
    chunks, so memory stays at the result (``size x d`` float32, aligned so TensorFlow can share it)."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if size < len(embeddings):
        raise ValueError(f"a synthetic catalogue needs at least the {len(embeddings)} real rows, got size {size}")
    rng = np.random.default_rng(seed)
    result = aligned_empty((size, embeddings.shape[1]))
    result[: len(embeddings)] = embeddings
    for start in range(len(embeddings), size, chunk):
        stop = min(size, start + chunk)
        rows = np.arange(start, stop) % len(embeddings)
        result[start:stop] = embeddings[rows] * rng.random((stop - start, embeddings.shape[1]), dtype=np.float32)
    return result


def latency_percentiles(call: Callable[[int], object], count: int, warmup: int = 5) -> dict[str, float]:
    """Call ``call(i)`` for ``i`` in ``range(count)`` (after ``warmup`` untimed calls) and return the
    per-call latency percentiles in milliseconds (p50, p95, p99, mean)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    for i in range(warmup):
        call(i % count)
    times = np.empty(count)
    for i in range(count):
        start = time.perf_counter()
        call(i)
        times[i] = time.perf_counter() - start
    times *= 1000.0
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(times.mean()),
        "calls": count,
    }


def throughput(call: Callable[[np.ndarray], object], queries: np.ndarray, batch_size: int) -> float:
    """Queries per second when ``call`` gets ``queries`` in batches of ``batch_size`` (one warm-up batch)."""
    call(queries[:batch_size])
    start = time.perf_counter()
    for begin in range(0, len(queries), batch_size):
        call(queries[begin : begin + batch_size])
    return len(queries) / (time.perf_counter() - start)


def pick_setting(rows: Sequence[dict], min_recall: float, key: str = "p50_ms") -> dict | None:
    """The fastest row (by ``key``) whose ``recall@10`` reaches ``min_recall``, or ``None``."""
    good = [r for r in rows if r["recall@10"] >= min_recall]
    return min(good, key=lambda r: r[key]) if good else None


def resident_mb() -> float:
    """This process's resident memory now, in MB (``runtime.resident_bytes``; 0 where /proc is missing)."""
    return resident_bytes() / 2**20


def compare_search(
    candidates: np.ndarray,
    queries: np.ndarray,
    options: ScannOptions,
    settings: Sequence[tuple[int, int]],
    k: int = 10,
    latency_queries: int = 200,
    batch_size: int = 256,
    tf_exact: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Exact search (NumPy, TensorFlow) against one ScaNN index searched at several ``settings``
    (``(leaves_to_search, reorder)`` pairs) on the same ``candidates`` and ``queries``.

    For each: per-query latency percentiles over ``latency_queries`` single queries, batched throughput
    (queries/s, batches of ``batch_size``; ScaNN's parallel batch search), and recall@k against exact
    search over all ``queries``; for the index its build time and the memory it added; for each setting
    its speed-up (p50) over NumPy's exact search and over the faster of the two exact searches.  One index exists
    at a time; it is freed before returning."""
    import gc

    n = len(candidates)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    single = queries[: min(latency_queries, len(queries))]
    result = {"num_candidates": n, "dim": int(candidates.shape[1]), "queries": len(queries), "k": k}
    start = time.perf_counter()
    exact, _ = exact_top_k(candidates, queries, k)
    log(f"  exact top-{k} of {len(queries)} queries (ground truth): {time.perf_counter() - start:.1f} s")
    result["exact_numpy"] = {
        **latency_percentiles(lambda i: exact_top_k(candidates, single[i], k), len(single), warmup=2),
        "queries_per_second": throughput(lambda b: exact_top_k(candidates, b, k), queries, batch_size),
    }
    log(f"  exact (NumPy): p50 {result['exact_numpy']['p50_ms']:.2f} ms")
    if tf_exact:
        search, tensor = tf_exact_search(candidates, k)
        rows = [single[i : i + 1] for i in range(len(single))]
        result["exact_tf"] = {
            **latency_percentiles(lambda i: search(rows[i]), len(single), warmup=2),
            "queries_per_second": throughput(search, queries, batch_size),
        }
        log(f"  exact (TensorFlow): p50 {result['exact_tf']['p50_ms']:.2f} ms")
        del search, tensor
        gc.collect()
    before = resident_mb()
    start = time.perf_counter()
    searcher = build_scann(candidates, options, k)
    result["scann"] = {
        "options": options.to_dict(),
        "build_seconds": time.perf_counter() - start,
        "added_memory_mb": resident_mb() - before,
        "settings": [],
    }
    log(
        f"  ScaNN index ({options.num_leaves} leaves): built in {result['scann']['build_seconds']:.1f} s, "
        f"+{result['scann']['added_memory_mb']:.0f} MB"
    )
    exact_p50 = result["exact_numpy"]["p50_ms"]
    fastest = min(result[name]["p50_ms"] for name in ("exact_numpy", "exact_tf") if name in result)
    result["fastest_exact_p50_ms"] = fastest
    for leaves, reorder in settings:
        leaves, reorder = min(int(leaves), options.num_leaves), max(int(reorder), k)
        row = _measure_setting(searcher, queries, single, exact, leaves, reorder, k, batch_size)
        row["speedup_vs_exact_numpy"] = exact_p50 / row["p50_ms"]
        row["speedup_vs_fastest_exact"] = fastest / row["p50_ms"]
        result["scann"]["settings"].append(row)
        log(
            f"  ScaNN leaves {leaves:>5} reorder {reorder:>5}: recall@{k} {row[f'recall@{k}']:.3f}, "
            f"p50 {row['p50_ms']:.3f} ms ({row['speedup_vs_fastest_exact']:.0f}x the faster exact)"
        )
    del searcher
    gc.collect()
    return result


def _measure_setting(searcher, queries, single, exact, leaves: int, reorder: int, k: int, batch_size: int) -> dict:
    """Recall, single-query latency and batched throughput of one ScaNN search setting."""
    knobs = {"final_num_neighbors": k, "leaves_to_search": leaves, "pre_reorder_num_neighbors": reorder}
    found, _ = searcher.search_batched(queries, **knobs)
    return {
        "leaves_to_search": leaves,
        "reorder": reorder,
        f"recall@{k}": recall_at_k(found, exact, k),
        **latency_percentiles(lambda i: searcher.search(single[i], **knobs), len(single)),
        "queries_per_second": throughput(lambda b: searcher.search_batched_parallel(b, **knobs), queries, batch_size),
    }
