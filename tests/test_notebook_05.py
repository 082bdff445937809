"""Notebook 05 runs headless (papermill) with small parameters and records the sweep and the embeddings."""

import json

import nbformat
import pytest

pytestmark = pytest.mark.notebooks


def test_notebook_05_runs_headless_and_records_what_it_found(series):
    tmp_path, metrics = series
    section = metrics["05_embedding_dimension"]
    assert [row["embedding_dim"] for row in section["sweep"]] == [8, 16]
    assert section["best_on_validation"]["embedding_dim"] in (8, 16)
    assert section["best_on_validation"]["metric"].startswith("val")
    assert section["first_try"]["parameters"]["total"] == (943 + 1 + 1664 + 1) * 32
    assert set(section["genre_agreement_top10"]) == {"d=8", "d=32"}
    assert section["neighbours"]["Star Wars (1977)"]["d=32"]
    figures = {p.name for p in (tmp_path / "figures").glob("05_*.png")}
    assert {
        "05_topk_vs_dimension.png",
        "05_parameters_vs_dimension.png",
        "05_gap_vs_dimension.png",
        "05_time_vs_dimension.png",
        "05_embedding_projection.png",
    } <= figures
    assert len(list((tmp_path / "sweep" / "cache").glob("dim*.json"))) == 2
    assert (tmp_path / "projector" / "d32" / "metadata.tsv").exists()
    executed = nbformat.read(tmp_path / "executed" / "05_embedding_dimension.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "Chosen on validation" in text and "training movies excluded" in text
    assert "0 reused from the cache, 2 computed" in text
