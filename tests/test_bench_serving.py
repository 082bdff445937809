"""benchmarks/bench_serving.py runs on a tiny export and small catalogues and writes coherent figures
(speed itself is not asserted here: `make bench-serving` on a quiet machine measures it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twotower_utils.serving.export import export_model
from twotower_utils.training import train

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_serving.py"


@pytest.fixture(scope="module")
def tiny_export(tiny_data, tiny_split, tiny_config, tmp_path_factory):
    model = train(tiny_config, tiny_data, tiny_split, verbose=0, curves=False).model
    return export_model(model, tiny_data, tiny_split.train, tmp_path_factory.mktemp("bench") / "twotower")


def bench(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env)


def test_small_run_prints_and_writes_every_figure(tiny_export, tmp_path):
    output = tmp_path / "serving.json"
    small = ["--queries", "60", "--latency-queries", "10", "--export-repeats", "1", "--export-batch-sizes", "1", "8"]
    completed = bench("--model", tiny_export.parent, "--catalogues", "3000", "1000", *small, "--output", output)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(output.read_text())
    export = summary["export"]
    assert export["catalogue"] == 40 and export["users"] == 24 and export["index"] == "exact"
    single = export["serving_default_single_query"]
    assert single["calls"] == 24 and 0 < single["p50_ms"] <= single["p95_ms"] <= single["p99_ms"]
    assert set(export["serving_default_queries_per_second_by_batch_size"]) == {"1", "8"}
    sizes = [c["num_candidates"] for c in summary["catalogues"]]
    assert sizes == [1000, 3000]  # smallest first, each in its own process
    for catalogue in summary["catalogues"]:
        assert catalogue["queries"] == 60 and catalogue["dim"] == 8 and catalogue["peak_rss_mb"] > 0
        assert catalogue["exact_tf"]["p50_ms"] > 0 and catalogue["exact_numpy"]["queries_per_second"] > 0
        settings = catalogue["scann"]["settings"]
        assert len(settings) >= 3 and all(0 <= s["recall@10"] <= 1 for s in settings)
        assert catalogue["scann"]["options"]["num_leaves"] == round(catalogue["num_candidates"] ** 0.5)
    verdict = summary["verdict"]
    assert verdict["largest_catalogue"] == 3000 and verdict["export_p50_ms"] == single["p50_ms"]
    largest = summary["catalogues"][-1]
    best = verdict["best_setting"]
    if best is not None:  # the fastest setting reaching recall 0.95, its speed-up over the faster exact search
        assert best["recall@10"] >= 0.95 and best["p50_ms"] == min(
            s["p50_ms"] for s in largest["scann"]["settings"] if s["recall@10"] >= 0.95
        )
        assert verdict["speedup_at_recall_0.95"] == pytest.approx(largest["fastest_exact_p50_ms"] / best["p50_ms"])
    assert "ScaNN leaves" in completed.stdout and "exact, NumPy" in completed.stdout and "verdict:" in completed.stdout
    assert output.with_name("serving_latency_recall.png").stat().st_size > 0


def test_settings_and_catalogue_sizes_are_parameters(tiny_export, tmp_path):
    output = tmp_path / "b.json"
    completed = bench(
        "--model", tiny_export, "--catalogues", "500", "--queries", "20", "--latency-queries", "5",
        "--export-repeats", "1", "--settings", "1:10", "5:50", "22:100", "--no-tf-exact", "--numpy-threads", "1",
        "--output", output,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    catalogue = json.loads(output.read_text())["catalogues"][0]
    assert [(s["leaves_to_search"], s["reorder"]) for s in catalogue["scann"]["settings"]] == [
        (1, 10),
        (5, 50),
        (22, 100),
    ]
    assert "exact_tf" not in catalogue and catalogue["scann"]["settings"][-1]["recall@10"] == pytest.approx(1.0)


def test_a_missing_export_is_one_clear_error(tmp_path):
    completed = bench("--model", tmp_path / "none", "--catalogues", "100", "--output", tmp_path / "x.json")
    assert completed.returncode == 1 and "does not exist; make one with `make export`" in completed.stderr
    assert "Traceback" not in completed.stderr and not (tmp_path / "x.json").exists()
