"""Notebook 11 runs headless in the series on a small synthetic set of ML-25M's shape (30,000 ratings) and records
what grows with the data: the batch's distinct ids, the epoch, the exact evaluation in user batches."""

import pytest

from tests.conftest import SMALL

pytestmark = pytest.mark.notebooks


def test_notebook_11_runs_headless_and_records_the_scaling_figures(series):
    tmp_path, metrics = series
    section = metrics["11_scaling_up"]
    assert section["dataset"] == "synthetic-25m" and section["ratings"] == SMALL["num_ratings"]
    assert section["users"] == round(162_541 * SMALL["num_ratings"] / 25_000_095)
    assert 0 < section["distinct_movies_per_batch"] <= section["movies"]
    assert 0 < section["distinct_users_per_batch"] <= section["users"]
    assert section["epoch_seconds"] > 0 and section["evaluation_seconds"] > 0 and section["matmul_peak_gflops"] > 0
    model, popular = section["hit_rate_filtered"], section["most_popular_hit_rate_filtered"]
    assert set(model) == set(popular) == {"1", "5", "10", "50", "100"}
    for rates in (model, popular):
        values = [rates[k] for k in ("1", "5", "10", "50", "100")]
        assert values == sorted(values) and 0 <= values[0] and values[-1] <= 1  # hit rates grow with k
    assert popular["100"] > 0  # the popularity law: the most popular movies are hit
    assert (tmp_path / "executed" / "11_scaling_up.ipynb").is_file()
