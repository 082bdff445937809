"""Benchmark: serving latency of the exported model, and exact vs approximate (ScaNN) search at scale.

    python benchmarks/bench_serving.py [--model results/export/twotower] [--catalogues 1000000 10000000]
                                       [--streaming-ids 1000000] [--output results/bench/serving.json]
    python benchmarks/bench_serving.py --streaming-only       # the command-line row alone (about a minute)

Part 1, the export (``make export``) on MovieLens 100K's 1,664-movie catalogue, loaded with
``tf.saved_model.load`` and called through its ``serving_default`` signature as TF Serving would:
single-query latency p50/p95/p99 (every user once, in turn) and batched throughput (queries/s) at a few
batch sizes; ``similar_movies`` single-query latency.

Part 2, one catalogue size at a time, each in its own process (so each one's memory is freed and its peak
is its own): a synthetic catalogue made from the export's movie vectors the way TFRS's
``efficient_serving`` tutorial does (copies with every entry multiplied by uniform noise in [0, 1)), the
export's user vectors as queries; exact search with NumPy and with TensorFlow, then one ScaNN index
(about sqrt(N) leaves, 2-d AH codes, exact reordering) searched at several settings: build time, added
memory, single-query latency p50/p95, batched throughput and recall@10 against exact search
(``twotower_utils.serving.index.compare_search``).  A latency-vs-recall plot goes next to the JSON.

Part 3 (``--streaming-ids N``; ``make bench-serving`` asks for 1,000,000; ``--streaming-only`` runs it alone):
N ids (the export's users over and over, one in ten an id it does not know) through the command line,
``python -m twotower_utils recommend --users-file ids.txt --format csv``, in a child process whose output
this process reads and counts as a consumer would: wall time end to end (TensorFlow's import included),
users per second, the child's peak RSS and CPU time, and the start-up alone (the same command for one
user).  Targets: peak RSS <= 1.5 GB and >= 20,000 users/s end to end for the exact export on 2 cores.

Memory: N x d float32 candidates (10M x 128 = 5 GB) plus the index's own copy for reordering (another
5 GB; ``--reorder-quantize int8`` makes it 1.3 GB); nothing else of that size is alive at once.
Timings are wall-clock on this machine; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGET_SPEEDUP, TARGET_RECALL, TARGET_P50_MS = 50.0, 0.95, 1.0
TARGET_STREAM_USERS_PER_SECOND, TARGET_STREAM_PEAK_MB = 20_000, 1536
ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mb() -> float:
    from twotower_utils.runtime import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def export_latency(model_dir: Path, batch_sizes: list[int], repeats: int) -> tuple:
    """Part 1.  Returns the figures and the export's (movie, user) vectors without their OOV rows."""
    import numpy as np
    import tensorflow as tf

    from twotower_utils.serving.export import load_export
    from twotower_utils.serving.index import latency_percentiles

    start = time.perf_counter()
    loaded = load_export(model_dir)
    load_seconds = time.perf_counter() - start
    model = loaded.model
    serve, similar = model.signatures["serving_default"], model.signatures["similar_movies"]
    users = [tf.constant([u]) for u in _user_ids(model)]
    titles = [tf.constant([t]) for t in loaded.titles()[:200]]
    k = tf.constant(10)
    single = latency_percentiles(lambda i: serve(user_id=users[i % len(users)], k=k), repeats * len(users))
    batched = {}
    everyone = tf.constant([u.numpy()[0] for u in users])
    for size in batch_sizes:
        batches = [everyone[i : i + size] for i in range(0, len(users), size)]
        serve(user_id=batches[0], k=k)
        start = time.perf_counter()
        count = 0
        while time.perf_counter() - start < 1.0 or count < 3 * len(users):
            for batch in batches:
                serve(user_id=batch, k=k)
            count += len(users)
        batched[str(size)] = count / (time.perf_counter() - start)
    figures = {
        "path": str(loaded.path),
        "index": loaded.metadata.get("index"),
        "catalogue": loaded.num_movies,
        "users": len(users),
        "load_seconds": load_seconds,
        "serving_default_single_query": single,
        "serving_default_queries_per_second_by_batch_size": batched,
        "similar_movies_single_query": latency_percentiles(lambda i: similar(title=titles[i], k=k), len(titles)),
    }
    movies = model.movie_embeddings.numpy()[1:]
    user_vectors = model.user_embeddings.numpy()[1:]
    return figures, np.ascontiguousarray(movies), np.ascontiguousarray(user_vectors)


def _user_ids(model) -> list[str]:
    """Every user id the export knows."""
    return [u.decode() for u in model.user_ids.numpy()[1:]]


def one_catalogue(args) -> dict:
    """Part 2 for one size (run in a child process)."""
    import numpy as np

    from twotower_utils.serving.index import (
        ScannOptions,
        compare_search,
        default_scann_options,
        default_settings,
        synthetic_catalogue,
    )

    vectors = np.load(args.vectors)
    movies, users = vectors["movies"], vectors["users"]
    queries = users[np.random.default_rng(args.seed).permutation(len(users))]
    queries = np.resize(queries, (args.queries, users.shape[1]))  # cycles through the users if more are asked
    start = time.perf_counter()
    candidates = synthetic_catalogue(movies, args.child, seed=args.seed)
    made = time.perf_counter() - start
    base = default_scann_options(args.child)
    options = ScannOptions(
        num_leaves=args.num_leaves or base.num_leaves,
        leaves_to_search=1,
        reorder=100,
        reorder_quantize=args.reorder_quantize,
    )
    settings = [tuple(int(x) for x in s.split(":")) for s in args.settings] or default_settings(options.num_leaves)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731  (stdout carries the JSON)
    log(f"catalogue of {args.child:,} candidates made in {made:.1f} s")
    result = compare_search(
        candidates,
        queries,
        options,
        settings,
        latency_queries=args.latency_queries,
        batch_size=args.batch_size,
        tf_exact=not args.no_tf_exact,
        log=log,
    )
    result["catalogue_seconds"] = made
    result["candidates_mb"] = candidates.nbytes / 2**20
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _child(size: int, vectors: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", str(size), "--vectors", str(vectors)]
    for name in ("queries", "latency_queries", "batch_size", "seed", "num_leaves", "reorder_quantize"):
        value = getattr(args, name)
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    if args.settings:
        command += ["--settings", *args.settings]
    if args.no_tf_exact:
        command.append("--no-tf-exact")
    env = dict(os.environ)
    if args.numpy_threads:  # OpenBLAS's threads spin; on a busy machine one thread can be 40x faster per query
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.numpy_threads)
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True, check=False, env=env)
    if completed.returncode != 0:
        hint = " (killed: out of memory?)" if completed.returncode in (-9, 137) else ""
        raise SystemExit(f"catalogue {size:,} failed with status {completed.returncode}{hint}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def streaming(model_dir: Path, count: int, batch_size: int | None, seed: int, k: int = 10) -> dict:
    """Part 3: ``count`` ids through ``python -m twotower_utils recommend`` in a child process."""
    import numpy as np

    from twotower_utils.serving.export import load_export

    known = np.asarray(_user_ids(load_export(model_dir).model), dtype=object)
    rng = np.random.default_rng(seed)
    ids = known[rng.integers(0, len(known), count)]
    unknown = np.arange(count) % 10 == 9
    ids[unknown] = [f"{10_000_000 + i}" for i in range(int(unknown.sum()))]  # whole numbers it does not know
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ids.txt"
        path.write_text("\n".join(ids.tolist()) + "\n")
        del ids
        base = [sys.executable, "-m", "twotower_utils", "recommend", "--model", str(model_dir), "--format", "csv"]
        base += ["--k", str(k)] + ([] if batch_size is None else ["--batch-size", str(batch_size)])
        startup = _cli_run([*base, "--user", str(known[0])])
        result = _cli_run([*base, "--users-file", str(path)])
    rows_expected = 1 + k * count
    return {
        "ids": count,
        "unknown_ids": int(unknown.sum()),
        "format": "csv",
        "k": k,
        "batch_size": batch_size,
        "seconds": result["seconds"],
        "users_per_second": count / result["seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
        "cpu_seconds": result["cpu_seconds"],
        "output_mb": result["bytes"] / 2**20,
        "rows_complete": result["lines"] == rows_expected,
        "startup_seconds": startup["seconds"],
        "startup_peak_rss_mb": startup["peak_rss_mb"],
        "users_per_second_after_startup": count / max(result["seconds"] - startup["seconds"], 1e-9),
    }


def _cli_run(command: list[str]) -> dict:
    """Run the command line with its output read (and counted) here; its wall time, peak RSS and CPU time
    from the kernel's accounting of that one child (``wait4``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    size = lines = 0
    for chunk in iter(lambda: os.read(child.stdout.fileno(), 1 << 20), b""):
        size += len(chunk)
        lines += chunk.count(b"\n")
    errors = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"the command line failed with status {child.returncode}: {errors.strip()[-2000:]}")
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "bytes": size,
        "lines": lines,
    }


def verdict(export: dict, catalogues: list[dict], stream: dict | None = None) -> dict:
    """The two serving bars, measured: the fastest ScaNN setting with recall@10 >= 0.95 on the largest
    catalogue and its speed-up over the faster exact search (NumPy or TensorFlow); the export's single-query
    p50."""
    from twotower_utils.serving.index import pick_setting

    result = {"export_p50_ms": export["serving_default_single_query"]["p50_ms"] if export else None}
    result["export_p50_target_met"] = None if not export else result["export_p50_ms"] <= TARGET_P50_MS
    if stream:
        result["streaming_users_per_second"] = stream["users_per_second"]
        result["streaming_peak_rss_mb"] = stream["peak_rss_mb"]
        result["streaming_target_met"] = (
            stream["users_per_second"] >= TARGET_STREAM_USERS_PER_SECOND
            and stream["peak_rss_mb"] <= TARGET_STREAM_PEAK_MB
            and stream["rows_complete"]
        )
    if catalogues:
        largest = max(catalogues, key=lambda c: c["num_candidates"])
        best = pick_setting(largest["scann"]["settings"], TARGET_RECALL)
        result.update(
            {
                "largest_catalogue": largest["num_candidates"],
                "best_setting": best,
                "speedup_at_recall_0.95": None if best is None else best["speedup_vs_fastest_exact"],
                "speedup_target_met": None if best is None else best["speedup_vs_fastest_exact"] >= TARGET_SPEEDUP,
            }
        )
    return result


def print_stream(stream: dict) -> None:
    print(
        f"\ncommand line, {stream['ids']:,} ids from a file ({stream['unknown_ids']:,} unknown), --format csv, "
        f"k {stream['k']}, batches of {stream['batch_size'] or 'the default size'}:"
    )
    print(
        f"  {stream['seconds']:.1f} s end to end, {stream['users_per_second']:,.0f} users/s "
        f"(start-up {stream['startup_seconds']:.1f} s; {stream['users_per_second_after_startup']:,.0f} users/s after it), "
        f"peak RSS {stream['peak_rss_mb']:,.0f} MB, CPU {stream['cpu_seconds']:.1f} s, "
        f"{stream['output_mb']:,.0f} MB of CSV{'' if stream['rows_complete'] else ' (ROWS MISSING)'}"
    )


def print_table(export: dict, catalogues: list[dict]) -> None:
    if export:
        s = export["serving_default_single_query"]
        print(
            f"\nexport ({export['index']} index, {export['catalogue']:,} movies), serving_default, one user per call:"
        )
        print(f"  p50 {s['p50_ms']:.3f} ms  p95 {s['p95_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms  ({s['calls']} calls)")
        rates = ", ".join(
            f"batch {b}: {q:,.0f}/s" for b, q in export["serving_default_queries_per_second_by_batch_size"].items()
        )
        print(f"  throughput  {rates}")
        print(f"  similar_movies p50 {export['similar_movies_single_query']['p50_ms']:.3f} ms")
    for c in catalogues:
        print(f"\n{c['num_candidates']:,} candidates x {c['dim']} (peak memory {c['peak_rss_mb']:,.0f} MB):")
        print(f"  {'method':<34} {'recall@10':>9} {'p50 ms':>9} {'p95 ms':>9} {'queries/s':>10} {'speed-up':>8}")
        exact = c["fastest_exact_p50_ms"]  # speed-ups are over the faster of the two exact searches
        for name in ("exact_numpy", "exact_tf"):
            if name in c:
                r = c[name]
                label = "exact, NumPy" if name == "exact_numpy" else "exact, TensorFlow"
                print(
                    f"  {label:<34} {1.0:>9.3f} {r['p50_ms']:>9.3f} {r['p95_ms']:>9.3f} "
                    f"{r['queries_per_second']:>10,.0f} {exact / r['p50_ms']:>7.1f}x"
                )
        scann = c["scann"]
        print(
            f"  ScaNN: {scann['options']['num_leaves']} leaves, built in {scann['build_seconds']:.1f} s, "
            f"+{scann['added_memory_mb']:,.0f} MB"
        )
        for r in scann["settings"]:
            label = f"ScaNN leaves {r['leaves_to_search']}, reorder {r['reorder']}"
            print(
                f"  {label:<34} {r['recall@10']:>9.3f} {r['p50_ms']:>9.3f} {r['p95_ms']:>9.3f} "
                f"{r['queries_per_second']:>10,.0f} {r['speedup_vs_fastest_exact']:>7.1f}x"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("results/export/twotower"), help="an export (make export)")
    parser.add_argument("--catalogues", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and throughput")
    parser.add_argument("--latency-queries", type=int, default=200, help="single queries timed per method")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--export-batch-sizes", type=int, nargs="*", default=[1, 32, 256])
    parser.add_argument("--export-repeats", type=int, default=2, help="single-query passes over every user")
    parser.add_argument("--settings", nargs="*", default=[], help="ScaNN leaves:reorder pairs (default: 4 of them)")
    parser.add_argument("--num-leaves", type=int, help="ScaNN leaves (default: about sqrt(N))")
    parser.add_argument("--reorder-quantize", choices=("float32", "int8"), default="float32")
    parser.add_argument("--no-tf-exact", action="store_true", help="skip exact search with TensorFlow")
    parser.add_argument(
        "--numpy-threads", type=int, help="BLAS threads of the catalogue processes (default: the library's choice)"
    )
    parser.add_argument(
        "--streaming-ids",
        type=int,
        help="ids through the command line (default: none; 1,000,000 with --streaming-only)",
    )
    parser.add_argument("--streaming-only", action="store_true", help="run only the command-line row")
    parser.add_argument("--streaming-batch-size", type=int, help="the command line's --batch-size (default: its own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("results/bench/serving.json"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.catalogues) or args.queries < 1 or args.latency_queries < 1 or args.batch_size < 1:
        parser.error("catalogue sizes, --queries, --latency-queries and --batch-size must be at least 1")
    stream_ids = args.streaming_ids if args.streaming_ids is not None else 1_000_000 * args.streaming_only
    if stream_ids < 0 or (args.streaming_only and stream_ids < 1):
        parser.error("--streaming-ids must be at least 1 with --streaming-only (0 or more otherwise)")
    if args.child:
        print(json.dumps(one_catalogue(args)))
        return 0

    from twotower_utils.serving.export import ExportError

    started = time.perf_counter()
    export, catalogues, stream = None, [], None
    try:
        if not args.streaming_only:
            print(f"part 1: the export in {args.model} ...", flush=True)
            export, movies, users = export_latency(args.model, args.export_batch_sizes, args.export_repeats)
            with tempfile.TemporaryDirectory() as folder:
                vectors = Path(folder) / "vectors.npz"
                import numpy as np

                np.savez(vectors, movies=movies, users=users)
                from twotower_utils.runtime import progress, say

                for size in progress(sorted(args.catalogues), desc="catalogues", unit="catalogue"):
                    if size < len(movies):
                        parser.error(f"a catalogue needs at least the export's {len(movies)} movies, got {size}")
                    say(f"part 2: {size:,} candidates ...")
                    catalogues.append(_child(size, vectors, args))
        if stream_ids:
            print(f"part 3: {stream_ids:,} ids through the command line ...", flush=True)
            stream = streaming(args.model, stream_ids, args.streaming_batch_size, args.seed)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = {
        "export": export,
        "catalogues": catalogues,
        "streaming": stream,
        "verdict": verdict(export, catalogues, stream),
        "parameters": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("child", "vectors")
        },
        "cpu_count": os.cpu_count(),
        "seconds": time.perf_counter() - started,
    }
    print_table(export, catalogues)
    if stream:
        print_stream(stream)
    print(f"\nverdict: {json.dumps(summary['verdict'], default=str)}")
    from twotower_utils.results import write_json_atomic

    write_json_atomic(args.output, summary)
    if catalogues:
        import matplotlib

        matplotlib.use("Agg")
        from twotower_utils.notebook.plots import plot_latency_recall

        figure = args.output.with_name(args.output.stem + "_latency_recall.png")
        temporary = figure.with_name(f".{figure.stem}.tmp.png")
        plot_latency_recall(catalogues).savefig(temporary, dpi=110, bbox_inches="tight")
        os.replace(temporary, figure)
        print(f"figure: {figure}")
    print(f"written: {args.output} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
