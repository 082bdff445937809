"""The pieces the notebooks write out in sight give the package's numbers.

Each notebook's cells tagged ``in-sight`` run here exactly as they stand in the notebook, on the tiny synthetic
data, next to the package at the same seed: 02's Keras towers (``StringLookup`` + ``Embedding``) against
``build_for``'s towers, 03's ``tfrs.Model`` with its own ``compute_loss`` against ``TwoTowerModel`` trained by
``training.train``, 04's NumPy count against ``topk_accuracy``, 06's EASE in NumPy against
``baselines.ease_scores``, 11's two-device training step against the one-device step (in a fresh process).  The
multitask, ranking and sequence notebooks' pieces are tested beside their smoke tests (tests/test_notebook_NN.py).
Every notebook closes with a summary built from the run and a few exercises.
"""

import math
import re

import nbformat
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tests.conftest import NOTEBOOKS, run_script
from twotower_utils.data.pipeline import interactions_dataset
from twotower_utils.evaluation.counting import topk_accuracy
from twotower_utils.models.two_tower import parameter_counts
from twotower_utils.training import build_for, train

TAG = "in-sight"
EVERY_NOTEBOOK = [path.name[:2] for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]


def notebook(prefix: str) -> nbformat.NotebookNode:
    (path,) = NOTEBOOKS.glob(f"{prefix}_*.ipynb")
    return nbformat.read(path, as_version=4)


def run_in_sight(prefix: str, **names) -> dict:
    """Exec the notebook's ``in-sight`` cells, in order, with the names its earlier cells would have made."""
    cells = [c.source for c in notebook(prefix).cells if TAG in c.metadata.get("tags", [])]
    assert cells, f"notebook {prefix} has no cell tagged {TAG!r}"
    namespace = {"tf": tf, "tfrs": tfrs, "np": np, "pd": pd, "interactions_dataset": interactions_dataset, **names}
    for i, source in enumerate(cells):
        exec(compile(source, f"<notebook {prefix}, in-sight cell {i}>", "exec"), namespace)
    return namespace


def table(tower) -> np.ndarray:
    """The embedding table of a Keras ``Sequential`` tower (its last layer) or of the package's ``Tower``."""
    layer = tower.embedding if hasattr(tower, "embedding") else tower.layers[-1]
    return layer.embeddings.numpy()


def test_02_keras_towers_start_as_the_packages_at_the_same_seed(tiny_data, tiny_config):
    cell = run_in_sight("02", data=tiny_data, config=tiny_config)
    model = build_for(tiny_config, tiny_data)
    user_tower, movie_tower = cell["user_tower"], cell["movie_tower"]
    assert [user_tower.count_params(), movie_tower.count_params()] == list(parameter_counts(model).values())
    assert user_tower.count_params() == (tiny_data.num_users + 1) * tiny_config.model.embedding_dim
    np.testing.assert_array_equal(table(user_tower), table(model.user_tower))
    np.testing.assert_array_equal(table(movie_tower), table(model.movie_tower))
    package_scores = tf.matmul(
        model.user_tower(cell["few_users"]), model.movie_tower(cell["few_movies"]), transpose_b=True
    )
    assert cell["scores_in_sight"].shape == (3, 4)
    np.testing.assert_array_equal(cell["scores_in_sight"].numpy(), package_scores.numpy())


def test_02_the_match_comes_from_the_seed(tiny_data, tiny_config):
    """Another seed gives other starting tables: the equality above is no accident of initialisation."""
    cell = run_in_sight("02", data=tiny_data, config=tiny_config.replace(seed=tiny_config.seed + 1))
    model = build_for(tiny_config, tiny_data)
    assert not np.array_equal(table(cell["user_tower"]), table(model.user_tower))


def test_03_basic_retrieval_trains_as_the_package(tiny_data, tiny_split, tiny_config):
    cell = run_in_sight("03", data=tiny_data, split=tiny_split, config=tiny_config)
    package_losses = []
    logger = cell["loss_logger"](package_losses)
    package = train(tiny_config.replace(epochs=1), tiny_data, tiny_split, verbose=0, curves=False, callbacks=[logger])
    assert len(cell["basic_losses"]) == math.ceil(len(tiny_split.train) / tiny_config.batch_size) > 1
    assert cell["basic_losses"] == pytest.approx(package_losses, rel=1e-5)
    basic = cell["basic"]
    np.testing.assert_allclose(table(basic.user_tower), table(package.model.user_tower), atol=1e-5)
    np.testing.assert_allclose(table(basic.movie_tower), table(package.model.movie_tower), atol=1e-5)


def test_03_compute_loss_is_the_tasks_on_one_batch(tiny_data, tiny_split, tiny_config):
    """Before any training: the written-out model's loss on a batch is the package's distinct-id loss."""
    cell = run_in_sight("03", data=tiny_data, split=tiny_split, config=tiny_config)
    tf.keras.utils.set_random_seed(tiny_config.seed)
    basic = cell["BasicRetrieval"](tiny_data.user_vocabulary, tiny_data.movie_vocabulary, 8)
    model = build_for(tiny_config, tiny_data)
    strings = next(iter(interactions_dataset(tiny_split.train, 32, seed=1, strings=True)))
    ids = next(iter(interactions_dataset(tiny_split.train, 32, seed=1)))
    assert float(basic.compute_loss(strings)) == pytest.approx(float(model.compute_loss(ids, training=True)), rel=1e-5)


def test_04_written_out_count_is_topk_accuracy(tiny_data, tiny_split, tiny_config):
    model = train(tiny_config, tiny_data, tiny_split, verbose=0, curves=False).model
    cell = run_in_sight("04", model=model, split=tiny_split, config=tiny_config)
    rows = cell["rows"]
    assert len(rows) == min(tiny_config.eval_batch_size, len(tiny_split.test))
    expected = topk_accuracy(model, rows, tiny_config.ks, tiny_config.eval_batch_size)
    assert cell["hits_in_sight"] == pytest.approx(expected, abs=1e-9)
    assert 0 < cell["hits_in_sight"][10] <= 1


def test_06_written_out_ease_is_the_packages(tiny_data, tiny_split):
    from twotower_utils.evaluation.baselines import ease_scores

    lam = 50.0
    package = ease_scores(tiny_split.train, tiny_data.num_users, tiny_data.num_movies, lam)
    base = {"ease_lambda": lam, "scores": {f"EASE (lambda {lam:g})": package}}
    cell = run_in_sight("06", data=tiny_data, split=tiny_split, base=base)
    assert cell["ease_in_sight"].shape == package.shape
    # the package adds a 1e-9 popularity tie-break
    np.testing.assert_allclose(cell["ease_in_sight"], package, atol=1e-8)
    assert cell["ease_difference"] < 1e-8 and np.abs(cell["ease_in_sight"]).max() > 1e-3
    assert np.all(np.diag(cell["B"]) == 0)


@pytest.mark.parametrize("prefix", EVERY_NOTEBOOK)
def test_every_notebook_closes_with_a_summary_and_exercises(prefix):
    cells = notebook(prefix).cells
    summary, exercises = cells[-2], cells[-1]
    assert summary.cell_type == "code" and "what_we_learned(" in summary.source
    assert exercises.cell_type == "markdown" and exercises.source.startswith("## Exercises")
    items = re.findall(r"^\d+\. ", exercises.source, flags=re.MULTILINE)
    assert 2 <= len(items) <= 3 and exercises.source.count("*Hint:*") == len(items)
    assert "record_metrics(" in cells[-3].source  # the run's numbers are recorded before they are summarised


NOTEBOOK_11_STEP = """
    import json
    from twotower_utils import distributed

    devices = distributed.split_cpu(2)  # before anything initialises TensorFlow's devices
    import nbformat
    import numpy as np
    import tensorflow as tf
    from conftest import synthetic_movielens
    import twotower_utils as tt
    from twotower_utils.data.pipeline import interactions_dataset
    from twotower_utils.data.splits import random_split
    from twotower_utils.training import build_for, train

    (path,) = __import__("pathlib").Path("notebooks").glob("11_*.ipynb")
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if "in-sight" in c.metadata.get("tags", [])]
    data = synthetic_movielens(num_users=120, num_movies=160, per_user=25)  # 3,000 ratings
    names = dict(
        np=np, tf=tf, distributed=distributed, devices=devices, interactions_dataset=interactions_dataset,
        random_split=random_split, build_for=build_for, train=train, seed=7, load_data=lambda dataset: data,
        config=tt.RunConfig(tt.RetrievalSpec(embedding_dim=8), batch_size=256, learning_rate=0.3, seed=7),
    )
    for source in cells:
        exec(source, names)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(names["one_device"].get_weights(), build_for(
        names["step_config"], data, names["step_split"].train).get_weights()))
    print(json.dumps({
        "cells": len(cells), "replicas": names["strategy"].num_replicas_in_sync, "losses": names["step_losses"],
        "one_device_losses": names["one_losses"], "difference": names["weight_difference"], "moved": moved,
        "steps": -(-len(names["step_split"].train) // 256),
    }))
"""


def test_11_written_out_two_device_step_is_the_packages_fit():
    """Two logical CPUs need a fresh process (TensorFlow fixes its devices once), so this runs in one."""
    out = run_script(NOTEBOOK_11_STEP, timeout=300)
    assert out["cells"] == 2 and out["replicas"] == 2
    assert len(out["losses"]) == out["steps"] > 1
    assert out["moved"] > 0.1 and out["difference"] < 1e-5  # training moved the tables, the same way on both
    np.testing.assert_allclose(out["losses"], out["one_device_losses"], rtol=1e-5)


@pytest.mark.parametrize("prefix", EVERY_NOTEBOOK)
def test_no_measured_number_is_typed_into_a_notebooks_prose(prefix):
    """Results are printed by the run (a summary cell, a print): prose with a four-decimal figure or a
    ``± std`` was typed from one run and goes stale.  Published numbers say they are reported."""
    typed = re.compile(r"(?<![\d.$])\d\.\d{4,}|±\s*\d")
    for cell in notebook(prefix).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                assert not typed.search(line) or "reported" in line, line
