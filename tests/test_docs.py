"""The results page (``make docs``) rendered from a small recorded run in tests/fixtures/docs."""

import os
import shutil
from pathlib import Path

import pytest

from twotower_utils.notebook import docs

FIXTURE = Path(__file__).parent / "fixtures" / "docs"
WRITTEN = 1_767_323_106  # 2026-01-02 03:05:06 UTC: every fixture file's mtime, for the dates from files


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A copy of the fixture with fixed file times; the test runs in its folder (paths as make passes them)."""
    shutil.copytree(FIXTURE, tmp_path / "fixture")
    for path in (tmp_path / "fixture").rglob("*"):
        os.utime(path, (WRITTEN, WRITTEN))
    monkeypatch.chdir(tmp_path / "fixture")
    return tmp_path / "fixture"


def _render(output: str = "out/results.md") -> str:
    assert docs.main(["--results", "results", "--notebooks", "notebooks", "--output", output]) == 0
    return Path(output).read_text()


def test_each_notebook_section_names_its_command_and_date_and_tables(recorded):
    lines = _render().splitlines()
    assert lines[0] == "# Results"
    assert "## 01 · First steps" in lines  # the notebook's own title, numbered once
    assert (
        "Recorded by `python -m twotower_utils run --only 01 -p epochs=2 -p 'sweep_dims=8 16'` on 2026-01-02 03:05 UTC,"
        " in 66.8 s (executed copy: `results/executed/01_first.ipynb`; section `01_first` of `results/metrics.json`)."
    ) in lines
    assert "/somewhere" not in "\n".join(lines)  # the runner's output_dir is not a parameter anyone passes
    # scalars: one format per kind of number
    for line in ("| `ratings` | 100000 |", "| `share` | 0.4251 |", "| `tiny` | 4.74e-09 |", "| `missing` | – |"):
        assert line in lines
    # top-k by k in numeric order, records as rows (cells escaped), a dict of dicts as a matrix
    assert lines[lines.index("### `test_topk`") + 2 : lines.index("### `test_topk`") + 5] == [
        "| 1 | 5 | 10 | 100 |",
        "| --- | --- | --- | --- |",
        "| 0.0018 | 0.0127 | 0.0262 | 0.2500 |",
    ]
    assert "| 2 | 0.5000 | A \\| B &lt;c&gt; |" in lines
    assert "| dim 8 | 0.1000 | 12.0000 |" in lines and lines.index("| dim 8 | 0.1000 | 12.0000 |") < lines.index(
        "| dim 16 | 0.2000 | 13.5000 |"
    )
    assert "| `loss` | 3.0000, 2.5000 |" in lines


def test_missing_sources_say_how_to_run_them(recorded):
    text = _render()
    assert "## 02 · Second notebook\n\nNot run yet: `python -m twotower_utils run --only 02`" in text
    assert "Not run yet: `make bench-serving` (writes `results/bench/serving.json`)." in text
    assert "Not run yet: `make tune` (writes `results/tuning/tuning.json`)." in text
    assert (
        "Recorded by `make bench` on 2026-01-02 03:05 UTC (`results/bench/training.json`); "
        "its command line: `python benchmarks/bench_training.py --epochs 3`."
    ) in text
    assert "### `distributed`" in text  # a section of no notebook is still shown
    shutil.rmtree("results")
    assert "Not run yet: `make run-notebooks` (writes `results/metrics.json`)." in _render("out/empty.md")


def test_rerunning_on_the_same_results_writes_the_same_bytes(recorded, capsys):
    first = _render()
    stamp = Path("out/results.md").stat().st_mtime_ns
    assert _render() == first
    assert Path("out/results.md").stat().st_mtime_ns == stamp  # not even rewritten: no change for git or make
    assert "unchanged: out/results.md" in capsys.readouterr().out
    assert docs.render_results(Path("results"), Path("notebooks")) == first


def test_generated_blocks_in_hand_written_pages(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- table:start -->\nold\n<!-- table:end -->\nafter\n")
    assert docs.fill_page_blocks(page, {"table": "| a |\n|---|"})
    assert page.read_text() == "intro\n<!-- table:start -->\n| a |\n|---|\n<!-- table:end -->\nafter\n"
    assert not docs.fill_page_blocks(page, {"table": "| a |\n|---|"})  # unchanged: not rewritten
    with pytest.raises(ValueError, match="missing:start"):
        docs.fill_block("no markers here", "missing", "x")


def test_headline_table_keeps_the_recorded_order():
    from twotower_utils.experiments.headline import markdown

    found = {
        "rows": [
            {
                "model": "b first",
                "filtered HR@10": {"mean": 0.5, "std": 0.01},
                "filtered HR@100": {"mean": 0.9, "std": 0},
            },
            {
                "model": "a second",
                "filtered HR@10": {"mean": 0.1, "std": 0},
                "filtered HR@100": {"mean": 0.2, "std": 0},
            },
        ]
    }
    lines = markdown(found).splitlines()
    assert lines[2] == "| b first | 0.5000 ± 0.0100 | 0.9000 |"
    assert lines[3] == "| a second | 0.1000 | 0.2000 |"


def test_a_study_run_is_named_by_its_switch():
    from twotower_utils.notebook.docs import run_command
    from twotower_utils.notebook.runner import STUDY

    declared = ["seed", "seeds", "side_roads", "validation_folds", "best_epochs"]
    study = {name: STUDY[name] for name in ("seeds", "side_roads", "validation_folds")}
    assert run_command("06", {**study, "best_epochs": 5}, declared) == (
        "python -m twotower_utils run --study --only 06 -p best_epochs=5"
    )
    assert run_command("06", {"seeds": STUDY["seeds"]}, declared) == (
        f"python -m twotower_utils run --only 06 -p seeds={STUDY['seeds']}"  # the other study values were not given
    )
    assert run_command("01", {}, ["seed"]) == "python -m twotower_utils run --only 01"


def test_the_rating_study_table_puts_u1_beside_the_seed_split(tmp_path):
    import json

    assert docs.rating_study_table(tmp_path) is None  # until both splits were run
    (tmp_path / "studies").mkdir()
    rows = {
        "u1": {
            "blend": {"rmse": 0.88612, "rmse_std": 0.001, "mae": 0.69},
            "ALS": {"rmse": 0.9248, "rmse_std": 0.0, "mae": 0.731, "fit_seconds": 9.0, "refit_seconds": 10.4},
        },
        "random": {"ALS": {"rmse": 0.9091, "rmse_std": 0.0003, "mae": 0.719}},
    }
    for split, summary in rows.items():
        found = {"splits": {split: {"summary": summary}}}
        (tmp_path / "studies" / f"rating_models_{split}.json").write_text(json.dumps(found))
    table = docs.rating_study_table(tmp_path).splitlines()
    assert table[0].startswith("| model | u1 RMSE")
    assert "| blend | 0.8861 ± 0.0010 | 0.6900 | – | – | – |" in table
    assert "| ALS | 0.9248 ± 0.0000 | 0.7310 | 0.9091 ± 0.0003 | 0.7190 | 19 |" in table  # fit and refit


def test_the_reranker_study_table_shows_every_split_and_seed(tmp_path):
    import json

    assert docs.reranker_study_table(tmp_path) is None
    (tmp_path / "ranking").mkdir()
    runs = {
        "stage one": [{"HR@10 filtered": 0.17, "NDCG@10": 0.45}, {"HR@10 filtered": 0.19, "NDCG@10": 0.47}],
        "LightGBM": [{"HR@10 filtered": 0.2, "NDCG@10": 0.5}, {"HR@10 filtered": 0.2, "NDCG@10": 0.5}],
    }
    found = {
        "command": ["benchmarks/study_reranker.py", "--folds", "3"],
        "splits": {"42": {"runs": runs}, "7": {"runs": {"stage one": runs["stage one"]}}},
        "importances": [{"feature": "EASE score", "gain share": 0.5}],
    }
    (tmp_path / "ranking" / "study_reranker.json").write_text(json.dumps(found))
    lines = docs.reranker_study_table(tmp_path).splitlines()
    assert lines[0] == (
        "| pipeline | split 42: HR@10 | NDCG@10 | every seed (HR@10) | split 7: HR@10 | NDCG@10 | every seed (HR@10) |"
    )
    assert (
        "| stage one | 0.1800 ± 0.0100 | 0.4600 | 0.1700 0.1900 | 0.1800 ± 0.0100 | 0.4600 | 0.1700 0.1900 |" in lines
    )
    assert "| LightGBM | 0.2000 ± 0.0000 | 0.5000 | 0.2000 0.2000 | – | – | – |" in lines
    assert lines[-1] == "LightGBM's largest shares of the total gain: EASE score 0.50."
