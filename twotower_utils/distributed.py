"""Training on several devices or machines: ``tf.distribute`` strategies for ``training.train(strategy=...)``.

Three strategies, by name (``make_strategy``):

* ``mirrored``: one machine, several devices (GPUs, or logical CPUs from ``split_cpu``).  Every device holds
  a copy of the model; each batch is split across them and the gradients are summed before every update.
* ``multi_worker``: the same on several machines (``MultiWorkerMirroredStrategy``); each machine runs the same
  program and finds its place in ``TF_CONFIG``.  CPU collectives use the RING implementation.
* ``parameter_server``: for catalogues whose embedding tables outgrow one machine.  The tables are split into
  shards (``ShardedVariable``) over the ``ps`` tasks; ``worker`` tasks run training steps that a coordinator
  (the ``chief``) sends them, each on its own share of the data, without waiting for each other.

``TF_CONFIG`` (JSON) tells a process the cluster and its own role: ``{"cluster": {"worker": ["host:port", ...]},
"task": {"type": "worker", "index": 0}}``.  ``is_chief`` says whether this process is the one that writes
results: the ``chief`` task, else worker 0, else the process that runs without ``TF_CONFIG``.

``main`` is the entry point that every machine runs (``python -m twotower_utils distributed ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from twotower_utils.config import RunConfig
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split, make_split
from twotower_utils.results import record_metrics, save_model
from twotower_utils.training import train

STRATEGIES = ("mirrored", "multi_worker", "parameter_server")
RESULTS_SECTION = "distributed"
RESULT_PREFIX = "DISTRIBUTED_RESULT "  # the line ``main`` prints with its numbers, for scripts that start workers


def split_cpu(num_devices: int) -> list[str]:
    """Split the CPU into ``num_devices`` logical devices and return their names (for ``mirrored``).

    TensorFlow fixes its devices the first time it needs them, so this must run before any TensorFlow op
    (in a fresh process)."""
    if num_devices < 1:
        raise ValueError(f"num_devices must be at least 1, got {num_devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as error:  # "Virtual devices cannot be modified after being initialized"
        raise ValueError(
            f"cannot split the CPU into {num_devices} devices: TensorFlow has already initialised its devices "
            "(call split_cpu first thing in a fresh process)"
        ) from error
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def read_tf_config(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``TF_CONFIG`` parsed, ``{}`` when it is not set; a clear error when it is not the JSON TF expects."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]!r}") from error
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task:
        raise ValueError('TF_CONFIG needs {"cluster": {job: [addresses]}, "task": {"type": job, "index": i}}')
    if task["type"] not in cluster or not 0 <= int(task.get("index", 0)) < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG's task {task} is not in its cluster {cluster}")
    return config


def is_chief(tf_config: dict[str, Any] | None = None) -> bool:
    """Whether this process writes results: the ``chief`` task; without a chief, worker 0; without
    ``TF_CONFIG``, the single process."""
    config = read_tf_config() if tf_config is None else tf_config
    if not config:
        return True
    task_type, index = config["task"]["type"], int(config["task"].get("index", 0))
    if task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in config["cluster"]


def make_strategy(
    name: str,
    devices: list[str] | None = None,
    cluster_resolver=None,
    min_shard_bytes: int = 256 << 10,
):
    """The ``tf.distribute`` strategy called ``name`` (one of ``STRATEGIES``).

    ``devices``: the ``mirrored`` strategy's devices (default: every GPU, else the CPU).  ``cluster_resolver``:
    for ``parameter_server`` (default: from ``TF_CONFIG``; ``in_process_cluster`` for a one-machine test).
    ``min_shard_bytes``: the smallest shard of a parameter-server variable; a table is split into at most one
    shard per ``ps`` task (``MinSizePartitioner``), so small variables stay whole.  ``multi_worker`` must be
    made before any other TensorFlow op of the process (it sets up the collectives)."""
    if name == "mirrored":
        cross_device_ops = None  # GPUs: TensorFlow's choice (NCCL)
        if not tf.config.list_logical_devices("GPU"):
            # CPUs: TF picks collectives, which each replica's thread may issue in its own order when a step
            # has both dense and sparse (embedding) gradients, and the step aborts ("Collective instance N
            # expected type ..."); reducing on one device has no such race
            cross_device_ops = tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)
    if name == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "parameter_server":
        resolver = cluster_resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver()
        num_ps = len(resolver.cluster_spec().as_dict().get("ps", []))
        if num_ps < 1:
            raise ValueError("parameter_server needs at least one 'ps' task in the cluster (TF_CONFIG)")
        partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=min_shard_bytes, max_shards=num_ps
        )
        return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports that are free on 127.0.0.1 now (for local clusters)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_entry_point(args: list[str], env: dict[str, str] | None = None):
    """``python -m twotower_utils distributed ARGS`` in a new process (the environment plus ``env``, e.g. its
    ``TF_CONFIG``), its output piped as text: how tests and benchmarks start the tasks of a local cluster."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-m", "twotower_utils", "distributed", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **(env or {})},
    )


def run_local_workers(count: int, command: list[str], timeout: float | None = None) -> None:
    """Run ``command`` as ``count`` ``MultiWorkerMirroredStrategy`` workers on this machine (127.0.0.1, free
    ports, ``TF_CONFIG`` task 0..count-1; worker 0 is the chief) and wait for all of them; one clear error
    naming the worker that failed or ran past ``timeout`` seconds (the others are then stopped)."""
    import subprocess

    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes = []
    for index in range(count):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(command, env={**os.environ, "TF_CONFIG": json.dumps(config)}))
    try:
        for index, process in enumerate(processes):
            code = process.wait(timeout=timeout)
            if code != 0:
                raise RuntimeError(f"local worker {index} of {count} exited with code {code}: {' '.join(command)}")
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"local workers ran past {timeout:g} s: {' '.join(command)}") from None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def in_process_cluster(num_workers: int = 2, num_ps: int = 2):
    """Start ``num_workers`` worker and ``num_ps`` ps servers in this process (TF's documented test pattern)
    and return a ``SimpleClusterResolver`` for a ``parameter_server`` coordinator here.  The servers live as
    long as the process: run this in a process of its own."""
    ports = free_ports(num_workers + num_ps)
    cluster = {
        "worker": [f"127.0.0.1:{port}" for port in ports[:num_workers]],
        "ps": [f"127.0.0.1:{port}" for port in ports[num_workers:]],
    }
    spec = tf.train.ClusterSpec(cluster)
    # all the servers share this process's thread pools: with fewer cores than workers + 1 the default pool
    # is too small for the coordinator's concurrent requests and training hangs (the TF tutorial's note)
    config = tf.compat.v1.ConfigProto()
    config.inter_op_parallelism_threads = max(os.cpu_count() or 1, num_workers + 1)
    for job, size in (("worker", num_workers), ("ps", num_ps)):
        for index in range(size):
            tf.distribute.Server(spec, job_name=job, task_index=index, config=config, protocol="grpc", start=True)
    return tf.distribute.cluster_resolver.SimpleClusterResolver(spec, rpc_layer="grpc")


def shard_shapes(variable) -> list[tuple[int, ...]]:
    """The shapes of a variable's shards over the parameter servers (one shape for a plain variable)."""
    parts = getattr(variable, "variables", None) or [variable]
    return [tuple(int(d) for d in part.shape) for part in parts]


class EpochTimes(tf.keras.callbacks.Callback):
    """Each epoch's wall seconds, in ``seconds`` (the first includes tracing the step functions)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m twotower_utils distributed",
        description="Train the two-tower on a tf.distribute strategy; every machine of the cluster runs this "
        "with its own TF_CONFIG, and only the chief writes results to --output-dir.",
    )
    parser.add_argument("--strategy", choices=("one_device", *STRATEGIES), default="multi_worker")
    parser.add_argument("--output-dir", required=True, help="where the chief records metrics.json and the model")
    parser.add_argument("--devices", type=int, default=0, help="mirrored: split the CPU into this many devices")
    parser.add_argument("--ratings", type=int, default=0, help="train on the first N training ratings (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8192, help="the global batch (split across replicas)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--min-shard-bytes", type=int, default=256 << 10, help="parameter_server: smallest shard")
    parser.add_argument("--no-save", action="store_true", help="record the metrics only, not the model weights")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: TFDS_DATA_DIR)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run this process's role: a parameter-server cluster's ``worker``/``ps`` serves until it is stopped; any
    other role trains.  Prints one ``DISTRIBUTED_RESULT {json}`` line (task, replicas, losses, seconds)."""
    args = parse_args(argv)
    tf_config = read_tf_config()
    task = tf_config.get("task", {})
    if args.strategy == "parameter_server" and task.get("type") in ("worker", "ps"):
        return _serve(tf_config)
    devices = split_cpu(args.devices) if args.devices else None
    # multi_worker must exist before any other TensorFlow op, so the strategy comes before the data
    strategy = (
        None if args.strategy == "one_device" else make_strategy(args.strategy, devices, None, args.min_shard_bytes)
    )

    config = RunConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    data = MovieLens.load(args.data_dir, download=False)  # every machine reads its own copy; none downloads
    split = make_split(data, config.split, config.seed, config.train_fraction)
    if args.ratings:
        split = Split(split.train.iloc[: args.ratings], split.test, split.name)
    timer = EpochTimes()
    result = train(config, data, split, verbose=0, curves=False, callbacks=[timer], strategy=strategy)
    chief = is_chief(tf_config)
    summary = {
        "strategy": args.strategy,
        "task": task,
        "chief": chief,
        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
        "train_ratings": len(split.train),
        "batch_size": args.batch_size,
        "loss": [float(v) for v in result.history["loss"]],
        "seconds": result.seconds,
        "epoch_seconds": timer.seconds,
    }
    # every worker saves (a synchronous strategy may need all of them for it); a non-chief into a temporary
    # folder that is removed, so only the chief's results remain
    output_dir = Path(args.output_dir) if chief else Path(tempfile.mkdtemp(prefix="twotower-worker-"))
    try:
        if not args.no_save:
            save_model(result.model, config, output_dir, extra={"distributed": summary})
        if chief:
            record_metrics(output_dir, RESULTS_SECTION, summary)
    finally:
        if not chief:
            shutil.rmtree(output_dir, ignore_errors=True)
    print(RESULT_PREFIX + json.dumps(summary), flush=True)
    return 0


def _serve(tf_config: dict[str, Any]) -> int:
    """A parameter-server cluster's worker or ps: serve the coordinator's requests until the process is stopped."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    task = tf_config["task"]
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=task["type"], task_index=int(task.get("index", 0)), protocol="grpc"
    )
    print(f"serving as {task['type']} {task.get('index', 0)} at {server.target}", flush=True)
    server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
