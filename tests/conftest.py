"""Shared fixtures: tiny synthetic MovieLens-like data (no TFDS) and the real data when present."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np
import pandas as pd
import pytest

import twotower_utils as tt
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import random_split

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def run_script(code: str, timeout: float = 120, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh Python (from the repository root, the package and these tests importable); its last
    stdout line is JSON, returned parsed.  For what TensorFlow fixes once per process (devices, the cluster)."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}", **(env or {})},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def synthetic_movielens(num_users: int = 24, num_movies: int = 40, per_user: int = 12, seed: int = 0) -> MovieLens:
    """Users prefer movies of their own 'taste group', so a model can learn something."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        group = user % 4
        liked = [m for m in range(num_movies) if m % 4 == group]
        picks = rng.choice(liked, size=min(per_user, len(liked)), replace=False)
        for t, movie in enumerate(picks):
            rows.append(
                {
                    "user_id": f"u{user:02d}",
                    "movie_title": f"Movie {movie:02d} (1990)",
                    "user_rating": float(rng.integers(1, 6)),
                    "timestamp": int(1000 * user + t),
                }
            )
    ratings = pd.DataFrame(rows)
    movies = pd.DataFrame(
        {
            "movie_title": [f"Movie {m:02d} (1990)" for m in range(num_movies)],
            "movie_id": [str(m) for m in range(num_movies)],
            "movie_genres": [[m % 3] for m in range(num_movies)],
        }
    )
    return MovieLens.from_frames(ratings, movies, ["Action", "Comedy", "Drama"])


def pairs_frame(pairs) -> pd.DataFrame:
    """Interactions as integer ids: ``[(user_idx, movie_idx), ...]``."""
    return pd.DataFrame({"user_idx": [u for u, _ in pairs], "movie_idx": [m for _, m in pairs]})


# A hand-made score matrix: 2 users, 5 movies; ids start at 1 (row/column 0 is out-of-vocabulary)
HAND_SCORES = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 5, 4, 3, 2, 1],  # user 1 ranks movies 1 > 2 > 3 > 4 > 5
        [0, 1, 1, 1, 0, 0],  # user 2: a three-way tie between movies 1, 2, 3
    ],
    dtype=float,
)
HAND_TRAIN = pairs_frame([(1, 1), (2, 4)])
HAND_TEST = pairs_frame([(1, 3), (1, 5), (2, 3)])


@pytest.fixture(scope="session")
def tiny_data() -> MovieLens:
    return synthetic_movielens()


@pytest.fixture(scope="session")
def tiny_split(tiny_data):
    return random_split(tiny_data, seed=3, train_fraction=0.75)


@pytest.fixture(scope="session")
def tiny_config() -> tt.RunConfig:
    return tt.RunConfig(
        tt.RetrievalSpec(embedding_dim=8),
        epochs=3,
        batch_size=32,
        eval_batch_size=17,
        learning_rate=0.5,
        seed=7,
        ks=(1, 3, 5, 10),
    )


def real_data_dir() -> str:
    """TFDS_DATA_DIR holding MovieLens, or skip (fail under CI, where it must be there)."""
    folder = os.environ.get("TFDS_DATA_DIR")
    if folder and os.path.isdir(os.path.join(folder, "movielens", "100k-ratings")):
        return folder
    if os.environ.get("CI"):
        pytest.fail("CI must set TFDS_DATA_DIR to a folder holding movielens/100k-ratings")
    pytest.skip("MovieLens 100K not found: set TFDS_DATA_DIR")


@pytest.fixture(scope="session")
def real_data():
    from twotower_utils.experiments.workflow import load_data

    return load_data(real_data_dir(), download=False)


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# Small parameters for the smoke run of the whole series; the runner passes each to the notebooks that have it.
SMALL = {
    "epochs": 2,  # the report's model (notebooks 03-05)
    "embedding_dim": 32,
    "sweep_dims": "8 16",  # notebook 05
    "compare_dims": 8,
    "seeds": 1,  # notebook 06
    "walk_epochs": 2,
    "best_epochs": 2,  # notebooks 06, 07, 10
    "validation_folds": 2,
    "model_epochs": 2,  # notebook 08
    "u1_effort": "smoke",
    "signal_candidates": "25,50",
    "ann_candidates": 20000,  # notebook 10
    "ann_queries": 100,
    "latency_calls": 100,
    "rating_weights": 1,  # notebook 07: fewer joint points
    "joint_rating_weight": 1,
    "stop_gradient_point": True,  # its retrieval must equal retrieval-only's exactly
    "sequence_epochs": 2,  # notebook 09: short histories, one point of the quality-vs-L curve, one EASE lambda
    "history_length": 10,
    "history_lengths": "10",
    "recency_lambdas": "200",
    "num_ratings": 30_000,  # notebook 11: a small synthetic set of ML-25M's shape
}


@pytest.fixture(scope="session")
def series(tmp_path_factory):
    """The whole series, in order, once, with ``SMALL`` parameters: (output folder, metrics.json).
    Every notebook's smoke test reads its section from here, so CI runs each notebook once."""
    from twotower_utils.notebook.runner import main

    real_data_dir()
    out = tmp_path_factory.mktemp("series")
    parameters = [item for name, value in SMALL.items() for item in ("-p", f"{name}={value}")]
    assert main(["--notebooks", str(NOTEBOOKS), "--output-dir", str(out), *parameters]) == 0
    keep_smoke_run(out)
    return out, json.loads((out / "metrics.json").read_text())


SMOKE_RESULTS = NOTEBOOKS.parent / "results" / "smoke"


def keep_smoke_run(out: Path) -> None:
    """The smoke run's executed notebooks, figures and metrics.json in results/smoke (replaced whole):
    ``make book EXECUTED=results/smoke/executed`` builds the book from them (CI does)."""
    import shutil

    shutil.rmtree(SMOKE_RESULTS, ignore_errors=True)
    for name in ("executed", "figures"):
        shutil.copytree(out / name, SMOKE_RESULTS / name)
    shutil.copy2(out / "metrics.json", SMOKE_RESULTS / "metrics.json")
