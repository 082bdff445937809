"""``python -m twotower_utils export`` (make export): the best two-tower trained once and reused, or any
model a notebook saved, exported; missing inputs are one clear message."""

import json

from tests.conftest import real_data_dir
from twotower_utils import presets
from twotower_utils.config import RunConfig
from twotower_utils.experiments.release import main, saved_model
from twotower_utils.experiments.workflow import prepare, save_training
from twotower_utils.serving.cli import recommend_main
from twotower_utils.serving.export import load_export
from twotower_utils.training import train


def test_the_best_two_tower_is_notebook_06s_on_the_reports_split():
    config = presets.best_two_tower()
    assert config == RunConfig().replace(**presets.best_switches())
    assert (config.split, config.seed, config.train_fraction) == ("random", 42, 0.8)
    assert presets.best_two_tower(seed=3, epochs=1).epochs == 1


def test_export_trains_the_best_model_once_then_reuses_it(tmp_path, capsys):
    data_dir = real_data_dir()
    args = ["--output-dir", str(tmp_path), "--epochs", "1", "--data-dir", data_dir]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "  trained" in first and f"{tmp_path}/export/twotower/1" in first
    assert main(args) == 0
    assert "  loaded" in capsys.readouterr().out and (tmp_path / "export" / "twotower" / "2").is_dir()
    metadata = load_export(tmp_path / "export" / "twotower").metadata
    assert metadata["num_movies"] == 1664 and metadata["num_users"] == 943 and metadata["user_id_pattern"] == "[0-9]+"
    assert metadata["seen_pairs"] == 79_820 and metadata["config"]["model"]["embedding_dim"] == 128
    code = recommend_main(["--model", str(tmp_path / "export" / "twotower"), "--user", "42", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and len(rows[0]["items"]) == 10 and not rows[0]["cold_start"]


def test_export_from_a_saved_model_with_a_scann_index(tmp_path, capsys):
    data_dir = real_data_dir()
    config = RunConfig(epochs=1)
    data, split = prepare(config, data_dir)
    save_training(train(config, data, split, verbose=0, curves=False), config, tmp_path)
    target = tmp_path / "scann"
    assert main(["--from", str(tmp_path), "--index", "scann", "--export-dir", str(target), "--data-dir", data_dir]) == 0
    assert "exporting the model saved in" in capsys.readouterr().out
    loaded = load_export(target)
    assert loaded.metadata["index"] == "scann" and loaded.metadata["config"] == config.to_dict()
    assert loaded.recommend(["42"], k=5)["movie_titles"].shape == (1, 5)


def test_a_folder_without_a_saved_model_is_one_clear_error(tmp_path, capsys):
    assert main(["--from", str(tmp_path / "nothing"), "--export-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no saved model in") and "make run-notebooks" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_model_saved_with_the_old_flat_config_is_one_retrain_line(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"config": {"embedding_dim": 32, "rating_task": False}}))
    assert main(["--from", str(tmp_path), "--export-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: the model in") and "earlier version of twotower" in error
    assert error.count("\n") == 1 and not (tmp_path / "out").exists()
    assert saved_model.__doc__ and "RetrainError" in saved_model.__doc__


def test_a_best_model_trained_elsewhere_is_kept_and_loaded_not_trained_again(tmp_path):
    from twotower_utils.experiments.release import best_model, keep_for_serving

    data_dir = real_data_dir()
    config = presets.best_two_tower(epochs=1)
    data, split = prepare(config, data_dir)
    result = train(config, data, split, verbose=0, curves=False)
    assert not keep_for_serving(result, config.replace(embedding_dim=16), tmp_path)  # not best_model's run
    assert not (tmp_path / "serving").exists()
    assert keep_for_serving(result, config, tmp_path)
    model, served, _, _, loaded = best_model(tmp_path, data_dir, epochs=1)
    assert loaded and served == config
    for kept, found in zip(result.model.get_weights(), model.get_weights(), strict=True):
        assert (kept == found).all()
