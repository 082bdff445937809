"""tf.distribute: strategy names and TF_CONFIG roles, MirroredStrategy on two logical CPUs (same losses and
gradients as one device), two MultiWorkerMirroredStrategy worker processes (in step, the chief alone writes),
a ParameterServerStrategy in-process cluster (the embedding tables sharded over two ps).

TensorFlow fixes its devices and its cluster once per process, so each strategy runs in a fresh subprocess
(``sys.executable``) with a timeout: a hang fails the test instead of hanging CI.

Tolerance: ``rtol=1e-5`` between one device and two replicas.  The replicas compute the same sums in another
order (each replica's gradient, then their sum; float32), which moves the last digits: about 1e-7 relative
over two or three epochs here.  A wrong loss (a replica scoring only its own half of the batch, a gradient
counted twice or halved) is off by percents from the first epoch.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import real_data_dir, run_script

from twotower_utils.config import ConfigError, MultitaskSpec
from twotower_utils.distributed import (
    RESULT_PREFIX,
    free_ports,
    is_chief,
    make_strategy,
    read_tf_config,
    start_entry_point,
)
from twotower_utils.training import train

RTOL = 1e-5


def tf_config(cluster: dict, task_type: str, index: int) -> dict:
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def test_the_chief_is_the_chief_task_else_worker_0_else_the_single_process():
    workers = {"worker": ["a:1", "b:2"]}
    assert is_chief({}) is True
    assert is_chief(tf_config(workers, "worker", 0)) is True
    assert is_chief(tf_config(workers, "worker", 1)) is False
    with_chief = {"chief": ["c:3"], **workers, "ps": ["d:4"]}
    assert is_chief(tf_config(with_chief, "chief", 0)) is True
    assert is_chief(tf_config(with_chief, "worker", 0)) is False
    assert is_chief(tf_config(with_chief, "ps", 0)) is False


def test_tf_config_is_read_and_checked():
    assert read_tf_config({}) == {}
    config = tf_config({"worker": ["a:1"]}, "worker", 0)
    assert read_tf_config({"TF_CONFIG": json.dumps(config)}) == config
    with pytest.raises(ValueError, match="not valid JSON"):
        read_tf_config({"TF_CONFIG": "{worker"})
    with pytest.raises(ValueError, match="not in its cluster"):
        read_tf_config({"TF_CONFIG": json.dumps(tf_config({"worker": ["a:1"]}, "worker", 1))})
    with pytest.raises(ValueError, match="needs"):
        read_tf_config({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})})


def test_strategy_names_are_checked():
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("horovod")
    only_workers = tf.distribute.cluster_resolver.SimpleClusterResolver(tf.train.ClusterSpec({"worker": ["a:1"]}))
    with pytest.raises(ValueError, match="at least one 'ps' task"):
        make_strategy("parameter_server", cluster_resolver=only_workers)


MIRRORED = """
    import json
    import numpy as np
    import twotower_utils as tt
    from twotower_utils.distributed import make_strategy, split_cpu

    devices = split_cpu(2)  # before anything initialises TensorFlow's devices
    import tensorflow as tf
    from conftest import synthetic_movielens
    from twotower_utils.data.splits import random_split
    from twotower_utils.training import build_for, train

    data = synthetic_movielens(num_users=120, num_movies=160, per_user=25)  # 3,000 ratings
    split = random_split(data, seed=3, train_fraction=0.75)
    base = tt.RunConfig(tt.RetrievalSpec(embedding_dim=8), epochs=2, batch_size=256, learning_rate=0.3, seed=7)
    configs = {
        "default": base,
        "loss switches": base.replace(remove_accidental_hits=True, logq_correction=1.0, temperature=0.5),
        "sequence tower": base.replace(user_tower="mean", history_length=5),
    }
    out = {"devices": devices, "losses": {}}
    for name, config in configs.items():
        one = train(config, data, split, verbose=0, curves=False).history["loss"].tolist()
        strategy = make_strategy("mirrored", devices)
        result = train(config, data, split, verbose=0, curves=False, strategy=strategy)
        out["losses"][name] = [one, result.history["loss"].tolist(), int(strategy.num_replicas_in_sync)]

    # the per-epoch top-k curves (TopKCurves) under the strategy
    curves = [train(base, data, split, verbose=0, strategy=s).history for s in (None, make_strategy("mirrored", devices))]
    out["curves"] = [history["val_factorized_top_k/top_10_categorical_accuracy"].tolist() for history in curves]

    # one batch's gradient: one device vs the sum of the two replicas' gradients
    batch = {"user_id": split.train["user_idx"].to_numpy()[:200], "movie_title": split.train["movie_idx"].to_numpy()[:200]}

    def gradients(model, features):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(features, training=True)
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]

    single = build_for(base, data, split.train)
    one_loss, one_grads = gradients(single, batch)
    strategy = make_strategy("mirrored", devices)
    with strategy.scope():
        model = build_for(base, data, split.train)
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
    per_replica = strategy.run(tf.function(lambda features: gradients(model, features)), args=(next(iter(dataset)),))
    loss = strategy.reduce("SUM", per_replica[0], axis=None)
    grads = [strategy.reduce("SUM", g, axis=None) for g in per_replica[1]]
    out["gradient"] = {
        "loss": [float(one_loss), float(loss)],
        "max_difference": max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(one_grads, grads)),
        "max_gradient": max(float(tf.reduce_max(tf.abs(a))) for a in one_grads),
    }
    try:
        split_cpu(3)
        out["late_split"] = "no error"
    except ValueError as error:
        out["late_split"] = str(error)
    print(json.dumps(out))
"""


def test_mirrored_on_two_logical_cpus_gives_the_one_device_losses_and_gradients():
    out = run_script(MIRRORED)
    assert out["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    for name, (one, two, replicas) in out["losses"].items():
        assert replicas == 2, name
        np.testing.assert_allclose(two, one, rtol=RTOL, err_msg=name)
    one_loss, loss = out["gradient"]["loss"]
    np.testing.assert_allclose(loss, one_loss, rtol=RTOL)
    assert out["gradient"]["max_difference"] <= 1e-5 * out["gradient"]["max_gradient"]
    assert "already initialised" in out["late_split"]
    np.testing.assert_allclose(out["curves"][1], out["curves"][0], atol=1e-6)


def test_what_cannot_be_distributed_says_so(tiny_data, tiny_split, tiny_config):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with pytest.raises(ConfigError, match="metrics_in_training"):
        train(tiny_config.replace(metrics_in_training=True), tiny_data, tiny_split, strategy=strategy)
    with pytest.raises(ConfigError, match="retrieval model only"):
        train(tiny_config.replace(model=MultitaskSpec(embedding_dim=8)), tiny_data, tiny_split, strategy=strategy)


def finish(process: subprocess.Popen, timeout: float) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("a worker did not finish in time")
    assert process.returncode == 0, stderr[-4000:]
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert len(lines) == 1, stdout[-2000:]
    return json.loads(lines[0][len(RESULT_PREFIX) :])


def test_two_multi_worker_processes_train_in_step_and_only_the_chief_writes(tmp_path):
    data_dir = real_data_dir()
    common = ["--ratings", "3000", "--epochs", "2", "--batch-size", "1024", "--data-dir", data_dir]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = [
        start_entry_point(
            ["--strategy", "multi_worker", "--output-dir", str(tmp_path / f"worker{i}"), *common],
            {"TF_CONFIG": json.dumps(tf_config(cluster, "worker", i))},
        )
        for i in range(2)
    ]
    # the one-device reference runs alongside (no TF_CONFIG: a single process is its own chief)
    reference = start_entry_point(["--strategy", "one_device", "--output-dir", str(tmp_path / "one"), *common], {})
    chief, other = (finish(process, 150) for process in processes)
    one = finish(reference, 150)
    assert chief["chief"] and not other["chief"]
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["loss"] == other["loss"]  # in step: the same updates on both workers
    np.testing.assert_allclose(chief["loss"], one["loss"], rtol=RTOL)
    assert (tmp_path / "worker0" / "metrics.json").exists() and (tmp_path / "worker0" / "model").is_dir()
    assert not (tmp_path / "worker1").exists()  # the non-chief wrote to a temporary folder, removed
    recorded = json.loads((tmp_path / "worker0" / "metrics.json").read_text())["distributed"]
    assert recorded["loss"] == chief["loss"] and recorded["train_ratings"] == 3000


PARAMETER_SERVER = """
    import json
    import numpy as np
    import twotower_utils as tt
    from twotower_utils.distributed import in_process_cluster, make_strategy, shard_shapes

    strategy = make_strategy("parameter_server", cluster_resolver=in_process_cluster(2, 2), min_shard_bytes=1024)
    import tensorflow as tf
    from conftest import synthetic_movielens
    from twotower_utils.data.splits import random_split
    from twotower_utils.evaluation.counting import topk_accuracy
    from twotower_utils.models.losses import retrieval_loss
    from twotower_utils.training import build_for, train

    data = synthetic_movielens(num_users=120, num_movies=160, per_user=25)
    split = random_split(data, seed=3, train_fraction=0.75)
    config = tt.RunConfig(tt.RetrievalSpec(embedding_dim=8), epochs=5, batch_size=128, learning_rate=0.3, seed=7)

    def full_loss(model):
        # the loss of the whole training set as one batch: a fixed yardstick (each step's loss is noisy)
        users, movies = split.train["user_idx"].to_numpy(), split.train["movie_idx"].to_numpy()
        return float(retrieval_loss(model.user_tower(users), model.movie_tower(movies), users, movies))

    before = full_loss(build_for(config, data, split.train))
    result = train(config, data, split, verbose=0, curves=False, strategy=strategy)
    model = result.model
    print(json.dumps({
        "user_shards": shard_shapes(model.user_tower.embedding.embeddings),
        "movie_shards": shard_shapes(model.movie_tower.embedding.embeddings),
        "vocabulary": [len(data.user_vocabulary) + 1, len(data.movie_vocabulary) + 1],
        "epochs": len(result.history),
        "before": before,
        "after": full_loss(model),
        "tables": [list(model.user_tower.embed_all().shape), list(model.movie_tower.embed_all().shape)],
        "top10": topk_accuracy(model, split.test, (10,))[10],
    }))
"""


def test_parameter_servers_hold_the_embedding_tables_in_shards_and_training_works():
    out = run_script(PARAMETER_SERVER)
    users, movies = out["vocabulary"]
    assert len(out["user_shards"]) == len(out["movie_shards"]) == 2
    assert sum(shape[0] for shape in out["user_shards"]) == users
    assert sum(shape[0] for shape in out["movie_shards"]) == movies
    assert all(shape[1] == 8 for shape in out["user_shards"] + out["movie_shards"])
    assert out["epochs"] == 5
    assert out["after"] < 0.95 * out["before"]
    assert out["tables"] == [[users, 8], [movies, 8]]  # embed_all reads the sharded tables back whole
    assert 0.0 <= out["top10"] <= 1.0


def test_local_workers_get_their_tf_config_and_a_failure_names_the_worker(tmp_path):
    from twotower_utils.distributed import run_local_workers

    script = (
        "import json, os, pathlib, sys; task = json.loads(os.environ['TF_CONFIG'])['task']; "
        f"pathlib.Path(r'{tmp_path}', str(task['index'])).write_text(os.environ['TF_CONFIG']); "
        "sys.exit(3 if task['index'] == 1 and len(sys.argv) > 1 else 0)"
    )
    run_local_workers(2, [sys.executable, "-c", script], timeout=60)
    configs = [json.loads((tmp_path / str(i)).read_text()) for i in range(2)]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    assert configs[0]["cluster"] == configs[1]["cluster"] and len(configs[0]["cluster"]["worker"]) == 2
    with pytest.raises(RuntimeError, match="local worker 1 of 2 exited with code 3"):
        run_local_workers(2, [sys.executable, "-c", script, "fail"], timeout=60)
    with pytest.raises(RuntimeError, match="ran past 1 s"):
        run_local_workers(1, [sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
