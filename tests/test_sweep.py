"""The dimension sweep on tiny synthetic data: validation carving, caching, summaries, outputs, CLI."""

import json
import subprocess

import pandas as pd
import pytest

from twotower_utils.config import ConfigError
from twotower_utils.data.splits import validation_split
from twotower_utils.experiments import sweep


@pytest.fixture()
def quick(tiny_config):
    return tiny_config.replace(epochs=1)


def test_validation_split_is_carved_from_training_only(tiny_split):
    carved = validation_split(tiny_split.train, 0.2, seed=5)
    assert len(carved.test) == round(len(tiny_split.train) * 0.2)
    assert len(carved.train) + len(carved.test) == len(tiny_split.train)
    together = pd.concat([carved.train, carved.test]).sort_values(["user_idx", "movie_idx", "timestamp"])
    expected = tiny_split.train.sort_values(["user_idx", "movie_idx", "timestamp"])
    pd.testing.assert_frame_equal(together.reset_index(drop=True), expected.reset_index(drop=True))
    again = validation_split(tiny_split.train, 0.2, seed=5)
    pd.testing.assert_frame_equal(carved.test, again.test)
    with pytest.raises(ValueError, match="strictly between"):
        validation_split(tiny_split.train, 1.0)


def test_run_one_records_both_protocols_gap_and_validation(tiny_data, tiny_split, quick):
    validation = validation_split(tiny_split.train, 0.2, quick.seed)
    record, result = sweep.run_one(quick, tiny_data, tiny_split, validation)
    json.dumps(record)  # plain JSON
    dim = quick.model.embedding_dim
    assert record["parameters"]["total"] == (tiny_data.num_users + 1 + tiny_data.num_movies + 1) * dim
    for field in ("train_topk", "test_topk", "test_topk_filtered", "gap_topk", "val_topk", "val_topk_filtered"):
        assert set(record[field]) == {str(k) for k in quick.ks}, field
    for k in quick.ks:
        k = str(k)
        assert record["gap_topk"][k] == pytest.approx(record["train_topk"][k] - record["test_topk"][k])
        assert record["test_topk_filtered"][k] >= record["test_topk"][k]  # excluding seen movies can only help
    assert record["history"]["epoch"] == [1]
    assert 0 < record["train_seconds"] <= record["wall_seconds"]


def test_sweep_caches_runs_and_reruns_only_what_is_missing(tiny_data, tiny_split, quick, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    messages = []
    first = sweep.run_sweep(quick, tiny_data, tiny_split, [4, 8], [7], cache, 0.2, log=messages.append)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and all(name.endswith(".json") for name in files)  # no temporary files left
    assert files[0].startswith("dim0004-seed7-") and files[1].startswith("dim0008-seed7-")
    assert "0 reused from the cache, 2 computed" in messages[-1]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(sweep, "run_one", no_training)
        messages.clear()
        second = sweep.run_sweep(quick, tiny_data, tiny_split, [4, 8], [7], cache, 0.2, log=messages.append)
    pd.testing.assert_frame_equal(first, second)
    assert sum("cached" in m for m in messages) == 2 and "2 reused from the cache, 0 computed" in messages[-1]
    assert sweep.cached_dimensions(quick, tiny_data, tiny_split, cache, [7], 0.2) == [4, 8]

    messages.clear()
    third = sweep.run_sweep(quick, tiny_data, tiny_split, [4, 8, 2], [7], cache, 0.2, log=messages.append)
    assert "2 reused from the cache, 1 computed" in messages[-1]
    assert third["embedding_dim"].tolist() == [4, 8, 2]

    # another recipe is another config hash: nothing is reused
    messages.clear()
    sweep.run_sweep(quick.replace(learning_rate=0.3), tiny_data, tiny_split, [4], [7], cache, 0.2, log=messages.append)
    assert "0 reused from the cache, 1 computed" in messages[-1]
    assert sweep.cached_dimensions(quick.replace(learning_rate=0.3), tiny_data, tiny_split, cache, [7], 0.2) == [4]


def test_config_hash_ignores_dimension_and_seed_only(tiny_data, tiny_split, quick):
    fingerprint = sweep.data_fingerprint(tiny_data, tiny_split)
    digest = sweep.config_hash(quick, fingerprint, 0.1)
    assert sweep.config_hash(quick.replace(embedding_dim=64, seed=1), fingerprint, 0.1) == digest
    assert sweep.config_hash(quick.replace(epochs=2), fingerprint, 0.1) != digest
    assert sweep.config_hash(quick, fingerprint, 0.2) != digest
    assert sweep.config_hash(quick.replace(jit_compile=True), fingerprint, 0.1) != digest  # a switch turned on
    assert sweep.config_hash(quick.replace(temperature=0.5), fingerprint, 0.1) != digest  # a model switch
    # switches left at their defaults stay out of the key, so a new default-off switch keeps old caches valid
    key = sweep.cache_key(quick, fingerprint, 0.1)["config"]
    assert set(key) == {*sweep.RECIPE_FIELDS, "model"} and key["model"] == {"family": "retrieval"}
    assert sweep.config_hash(quick, "another-data", 0.1) != digest


def test_a_run_cached_with_the_old_flat_config_is_trained_again(tiny_data, tiny_split, quick, tmp_path):
    cache = tmp_path / "cache"
    sweep.run_sweep(quick, tiny_data, tiny_split, [4], [7], cache, 0.2, log=lambda m: None)
    path = next(cache.iterdir())
    record = json.loads(path.read_text())
    record["config"] = {"embedding_dim": 4, "epochs": 1, "rating_task": False}  # as an earlier version wrote it
    path.write_text(json.dumps(record))
    messages = []
    sweep.run_sweep(quick, tiny_data, tiny_split, [4], [7], cache, 0.2, log=messages.append)
    old = [m for m in messages if "earlier version of twotower" in m]
    assert len(old) == 1 and "training it again" in old[0] and "0 reused from the cache, 1 computed" in messages[-1]


def _fake_summary():
    rows = []
    for dim, val, test in ((8, 0.10, 0.30), (32, 0.20, 0.10), (128, 0.15, 0.50)):
        for seed, noise in ((1, 0.0), (2, 0.02)):
            rows.append(
                {
                    "embedding_dim": dim,
                    "seed": seed,
                    "parameters": 10 * dim,
                    "train_seconds": 1.0,
                    "wall_seconds": 2.0,
                    "val_filtered_top_10": val + noise,
                    "val_top_10": val,
                    "test_top_10": test,
                    "test_filtered_top_10": test,
                    "train_top_10": 0.5,
                    "gap_top_10": 0.5 - test,
                }
            )
    return pd.DataFrame(rows)


def test_best_dimension_is_chosen_on_validation_never_test():
    summary = _fake_summary()
    best = sweep.best_dimension(summary)
    assert best["embedding_dim"] == 32 and best["value"] == pytest.approx(0.21)
    with pytest.raises(ValueError, match="validation"):
        sweep.best_dimension(summary, "test_top_10")
    table = sweep.by_dimension(summary)
    assert table["seeds"].tolist() == [2, 2, 2] and "val_filtered_top_10_std" in table
    assert "| 32 |" in sweep.format_table(summary)


def test_write_outputs_writes_tables_json_and_figures(tmp_path):
    report = sweep.write_outputs(_fake_summary(), tmp_path, {"command": ["x"]})
    assert report["best_on_validation"]["embedding_dim"] == 32
    assert json.loads((tmp_path / "summary.json").read_text())["best_on_validation"]["embedding_dim"] == 32
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 6
    assert len(pd.read_csv(tmp_path / "summary_by_dimension.csv")) == 3
    assert {f"{name}.png" for name in sweep.SWEEP_PLOTS} <= {p.name for p in (tmp_path / "figures").iterdir()}


def test_command_line_reuses_the_cache_on_a_second_call(tiny_data, tiny_split, tmp_path, monkeypatch, capsys):
    from twotower_utils import presets

    monkeypatch.setattr(sweep, "prepare", lambda config, data_dir=None: (tiny_data, tiny_split))
    argv = ["--dims", "4", "8", "--seeds", "7", "--epochs", "1", "--batch-size", "32", "--output-dir", str(tmp_path)]
    argv += ["--presets-dir", str(tmp_path / "presets")]
    assert sweep.main(argv) == 0
    first = capsys.readouterr().out
    assert "0 reused from the cache, 2 computed" in first and "best dimension on validation" in first
    written = presets.read("dimension", tmp_path / "presets")  # the choice, with where it came from
    assert written["command"].startswith("python -m twotower_utils sweep --dims 4 8") and written["folds"] == 1
    chosen = presets.chosen_embedding_dim(tmp_path / "presets")
    assert chosen in (4, 8) and written["validation"]["value"] == max(written["validation"]["by_dimension"].values())
    assert sweep.main(argv) == 0
    second = capsys.readouterr().out
    assert "2 reused from the cache, 0 computed" in second
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "figures" / "sweep_topk_vs_dimension.png").exists()
    assert sweep.main(["--dims", "0", "--output-dir", str(tmp_path)]) == 1
    assert "embedding_dim must be" in capsys.readouterr().err


def test_make_sweep_passes_dims_seeds_and_epochs():
    command = subprocess.run(
        ["make", "-n", "sweep", "DIMS=8 32 128", "SEEDS=42 43", "EPOCHS=3"], capture_output=True, text=True, check=True
    ).stdout
    assert "-m twotower_utils sweep --dims 8 32 128" in command
    assert "--seeds 42 43" in command and "--epochs 3" in command and "--output-dir results/sweep" in command


def test_validation_folds_of_one_seed_are_disjoint(tiny_split):
    train = tiny_split.train
    first, second = (validation_split(train, 0.25, seed=5, fold=f) for f in (0, 1))
    pd.testing.assert_frame_equal(first.test, validation_split(train, 0.25, seed=5).test)  # fold 0: the default
    key = ["user_idx", "movie_idx", "timestamp"]
    assert first.test.merge(second.test, on=key).empty
    assert len(second.train) + len(second.test) == len(train)
    with pytest.raises(ValueError, match="fold must be a whole number from 0 to 3"):
        validation_split(train, 0.25, seed=5, fold=4)


def test_dimensions_from_notebook_and_command_line_forms():
    assert sweep.parse_dims("8 32 128") == [8, 32, 128]
    assert sweep.parse_dims("8,32") == [8, 32] and sweep.parse_dims(64) == [64] and sweep.parse_dims([8, 16]) == [8, 16]
    with pytest.raises(ConfigError, match="whole numbers"):
        sweep.parse_dims("8 abc")
    with pytest.raises(ConfigError, match="embedding_dim"):
        sweep.parse_dims("8 -4")


def test_the_sweeps_verdict_names_the_validation_choice_and_the_reports_dimension():
    text = sweep.describe_sweep(_fake_summary(), validation_rows=8000, epochs=10)
    assert "**$d = 32$** with 0.2100" in text and "**the best of the sweep**" in text
    assert "8,000 held-out training ratings" in text and "parameters grow from 80 to 1,280" in text
    other = sweep.describe_sweep(_fake_summary(), validation_rows=8000, epochs=10, reference_dim=128)
    assert "the report's 128 is **not** the best: 32 scores 1.31× its validation top-10" in other
