"""Notebook 10 runs headless in the series with small parameters (2 epochs, a 20,000-candidate catalogue) and records what
it should: an export whose fresh-process reload matches the in-memory model, cold start, similar movies,
latency, and the exact-vs-ScaNN trade-off."""

import json

import nbformat
import pytest

pytestmark = pytest.mark.notebooks


def test_notebook_10_runs_headless_and_records_the_serving_checks(series):
    tmp_path, metrics = series
    section = metrics["10_serving"]
    assert (
        section["model"] == "best"
        and section["config"]["model"]["embedding_dim"] == 128
        and section["config"]["epochs"] == 2
    )
    assert (tmp_path / "export" / "twotower" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "export" / "twotower_scann" / "1" / "assets.extra" / "twotower.json").is_file()
    assert (tmp_path / "serving" / "model" / "config.json").is_file()  # kept for `make export`
    assert not section["fresh_process_imported_twotower_utils"]
    exact, scann = section["reload_exact"], section["reload_scann"]
    for name in ("serving_default", "recommend_including_seen"):
        assert exact[name]["lists_differing_beyond_ties"] == 0 and exact[name]["unknown_users_get_most_popular"], name
        assert exact[name]["max_score_difference"] < 1e-4 and exact[name]["known_users_flagged_cold"] == 0
        assert scann[name]["recall@k"] >= 0.95 and scann[name]["unknown_users_get_most_popular"], name
    assert exact["similar_movies"]["lists_differing_beyond_ties"] == 0 and exact["similar_movies"]["recall@k"] > 0.999
    assert exact["similar_movies"]["unknown_titles_flagged"]
    assert scann["similar_movies"]["recall@k"] >= 0.9 and scann["similar_movies"]["unknown_rows_empty"]
    assert len(section["example_recommendations"]) == 10
    cold = section["cold_start_example"]
    assert [row["movie_title"] for row in cold[:2]] == ["Star Wars (1977)", "Return of the Jedi (1983)"]
    assert [row["score"] for row in cold[:2]] == [462.0, 401.0]  # training counts on the report's split
    assert section["similar_example"][0]["movie_title"] != "Star Wars (1977)"
    latency = section["latency_single_query_ms"]
    assert latency["calls"] == 100 and 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert section["batched_queries_per_second"] > 0
    ann = section["ann"]
    assert ann["num_candidates"] == 20_000 and ann["queries"] == 100 and ann["dim"] == 128
    settings = ann["scann"]["settings"]
    assert len(settings) == 4 and max(s["recall@10"] for s in settings) >= 0.95
    assert (tmp_path / "figures" / "10_latency_recall.png").exists()
    executed = nbformat.read(tmp_path / "executed" / "10_serving.ipynb", as_version=4)
    assert "cold_start flags: [True, False]" in json.dumps([c.get("outputs", []) for c in executed.cells])
