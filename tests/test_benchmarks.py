"""The benchmark script runs and reports coherent figures (speed itself is not asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import real_data_dir

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_training.py"


def test_training_flops_counts_the_three_products():
    sys.path.insert(0, str(SCRIPT.parent))
    from bench_training import _training_flops

    assert _training_flops(10, 4, 2, 1) == 6 * 2 * (4**2 * 2) + 6 * (2**2 * 2)
    assert _training_flops(8, 4, 2, 3) == 3 * 2 * 6 * 4**2 * 2


def test_fast_variant_runs_and_writes_json(tmp_path):
    real_data_dir()
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--epochs", "1", "--variants", "c", "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(output.read_text())
    fast = summary["variants"]["c"]
    assert fast["training_examples"] == 80_000 and fast["fit_seconds"] > 0
    assert fast["fraction_of_peak"] > 0
    assert 0.1 < fast["final_test_topk"]["100"] < 0.5
    assert "(c) fast path + curves" in completed.stdout


def test_scale_benchmark_measures_a_tiny_size_and_writes_the_table_and_plot(tmp_path):
    output = tmp_path / "scale.json"
    script = SCRIPT.parent / "bench_scale.py"
    completed = subprocess.run(
        [sys.executable, str(script), "--sizes", "4000", "--workers", "1", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = json.loads(output.read_text())["rows"]
    assert rows[0]["ratings"] == 4000 and rows[0]["workers"] == 1 and rows[0]["epoch_s"] > 0
    assert output.with_suffix(".png").is_file()
    assert "a full 25M epoch on N machines" in completed.stdout and "not the targets' size" in completed.stdout
