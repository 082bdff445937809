"""The presets: the tuning commands' choices written once with their provenance, read back as runs."""

import datetime
import json
import shutil

import pytest

from twotower_utils import presets
from twotower_utils.config import MultitaskSpec, RatingSpec, RetrievalSpec, RunConfig, SequenceTower
from twotower_utils.experiments import tuning


@pytest.fixture()
def copied(tmp_path):
    """A copy of the committed presets, to change or overwrite."""
    folder = tmp_path / "presets"
    folder.mkdir()
    for study in presets.STUDIES:
        shutil.copy(presets.path(study), folder)
    return folder


def test_a_tuning_run_writes_presets_that_read_back_as_the_best_two_tower(
    tiny_data, tiny_split, copied, tmp_path, monkeypatch, capsys
):
    committed = presets.path("two_tower").read_bytes()
    monkeypatch.setattr(tuning, "prepare", lambda config, data_dir=None: (tiny_data, tiny_split))
    argv = ["--grid", "epochs=1", "embedding_dim=8,16", "--folds", "2", "--fraction", "0.2"]
    argv += ["--output-dir", str(tmp_path / "out"), "--presets-dir", str(copied)]
    assert tuning.main(argv) == 0
    assert "wrote " + str(copied / "two_tower.json") in capsys.readouterr().out
    assert presets.path("two_tower").read_bytes() == committed  # the package's own file is untouched

    written = presets.read("two_tower", copied)
    assert set(written) == set(presets.KEYS)  # a run's file has no transcription note
    assert written["study"] == "two_tower" and written["folds"] == 2
    assert written["command"] == "python -m twotower_utils tune " + " ".join(argv)
    assert written["date"] == datetime.date.today().isoformat()
    table = written["validation"]["grid"]
    best = max(table, key=lambda row: row["mean"])
    assert written["validation"]["best"]["mean"] == best["mean"] and len(written["validation"]["best"]["folds"]) == 2
    switches = written["chosen"]["switches"]
    assert switches["epochs"] == 1 and switches["embedding_dim"] == best["embedding_dim"]
    assert written["chosen"]["ease_lambda"] == written["validation"]["ease"]["lambda"]

    config = presets.best_two_tower(directory=copied)
    assert (config.epochs, config.model.embedding_dim) == (1, best["embedding_dim"])
    # the other switches are carried over from the presets the run started from
    assert config.model.logq_correction == presets.best_two_tower().model.logq_correction
    with presets.using(copied):
        assert presets.best_two_tower() == config and presets.ease_lambda() == written["chosen"]["ease_lambda"]
    assert presets.best_two_tower() != config  # outside the block: the package's presets again
    text = (copied / "two_tower.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("study", presets.STUDIES)
def test_every_committed_presets_file_reads_with_its_provenance(study):
    content = presets.read(study)
    assert set(presets.KEYS) <= set(content) <= set(presets.KEYS + presets.OPTIONAL_KEYS)
    assert content["study"] == study and content["folds"] >= 1 and content["chosen"] and content["validation"]
    datetime.date.fromisoformat(content["date"])
    assert content["command"].startswith("python -m twotower_utils ")
    text = presets.path(study).read_text()
    assert text == json.dumps(content, indent=2, sort_keys=True) + "\n"  # as write() writes it


def test_the_committed_presets_build_every_named_run():
    best = presets.best_two_tower()
    assert isinstance(best.model, RetrievalSpec) and best.family == "retrieval"
    assert best == RunConfig().replace(**presets.best_switches())
    assert presets.best_two_tower(epochs=2).epochs == 2 and presets.ease_lambda() > 0

    models = presets.rating_models()
    assert list(models)[0] == "MF (biases + dot product)" and len(models) == 6  # the table's order
    for name, config in models.items():
        assert isinstance(config.model, RatingSpec), name
        assert (config.optimizer, config.learning_rate_schedule) == (presets.rating_shared()["optimizer"], "cosine")
        assert presets.rating_model(name, seed=3) == config.replace(seed=3)
    assert set(presets.rating_baselines()) == {"global mean", "user + movie biases", "biased MF (ALS)"}
    stages = presets.two_stage()
    assert set(stages) == {"blend", "learned", "pipeline"} and isinstance(stages["learned"]["layers"], tuple)

    joint = presets.multitask_model()
    assert (
        isinstance(joint.model, MultitaskSpec) and joint.model.rating_weight == presets.joint_weights()["rating_weight"]
    )
    assert presets.rating_only_switches()

    for protocol in presets.PROTOCOLS:
        tower = presets.sequence_model(protocol)
        assert isinstance(tower.model.user_tower, SequenceTower)
        assert set(presets.sequence_baselines(protocol)) == {"ease_lambda", "recency"}
    assert presets.sequence_model("leave_one_out", history_length=10).model.history_length == 10
    assert isinstance(presets.chosen_embedding_dim(), int)


def test_the_committed_presets_hold_the_settings_they_were_transcribed_from():
    """The numbers of every experiment stay where they were: these are the values the code held before."""
    assert presets.best_switches() == {
        "logq_correction": 1.2,
        "optimizer": "adam",
        "learning_rate": 0.01,
        "batch_size": 2048,
        "l2_regularization": 0.06,
        "embedding_dim": 128,
        "learning_rate_schedule": "cosine",
        "epochs": 20,
    }
    svdpp = presets.rating_model("MF + implicit feedback (SVD++)").model
    assert (svdpp.head, svdpp.implicit_feedback, svdpp.l2_regularization, svdpp.bias_l2) == ("mf", True, 0.2, 0.01)
    dcn = presets.rating_model("DCN head + features").model
    assert (dcn.head, dcn.ranking_l2, dcn.embedding_dim, dcn.user_features) == (
        "dcn",
        1000.0,
        64,
        ("age", "gender", "occupation", "zip"),
    )
    assert presets.rating_baselines()["biased MF (ALS)"] == {"factors": 120, "lam": 0.1}
    assert presets.two_stage() == {"blend": {"N": 50, "w": 0.1}, "learned": {"N": 25, "layers": ()}, "pipeline": "(c)"}
    assert presets.multitask_head() == {"rating_layers": (), "rating_l2": 2.0}
    assert presets.joint_weights() == {"retrieval_weight": 1.0, "rating_weight": 0.3}
    assert presets.rating_only_switches() == {"l2_regularization": 0.06}
    latest = presets.sequence_model("leave_latest")
    assert latest.model.user_tower == SequenceTower(kind="sasrec", history_length=25, use_user_id=True)
    assert (latest.epochs, latest.learning_rate, latest.batch_size, latest.model.negatives) == (
        4,
        0.002,
        1024,
        "catalogue",
    )
    assert presets.sequence_model("leave_one_out").model.user_tower == SequenceTower(kind="gru", history_length=100)
    assert presets.chosen_embedding_dim() == 16


def _one_line_error(call, *words):
    with pytest.raises(presets.PresetError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


def test_a_preset_with_an_unknown_field_is_one_clear_error(copied):
    file = copied / "two_tower.json"
    content = json.loads(file.read_text())
    content["chosen"]["switches"]["embeding_dim"] = 64
    file.write_text(json.dumps(content))
    _one_line_error(lambda: presets.best_two_tower(directory=copied), str(file), "embeding_dim", "not a setting")

    file = copied / "ranking.json"
    content = json.loads(file.read_text())
    content["chosen"]["rating_models"][1]["model"]["tower_layers"] = [64]  # a two-tower field on a rating model
    file.write_text(json.dumps(content))
    _one_line_error(lambda: presets.rating_models(copied), "MLP head", "tower_layers", "RetrievalSpec")

    file = copied / "sequence.json"
    content = json.loads(file.read_text())
    content["chosen"]["leave_latest"]["user_tower"]["heads"] = 2
    file.write_text(json.dumps(content))
    _one_line_error(lambda: presets.sequence_model("leave_latest", directory=copied), "chosen.leave_latest", "heads")

    file = copied / "dimension.json"
    content = json.loads(file.read_text())
    content["chosen_by"] = "hand"  # not a field of a presets file
    file.write_text(json.dumps(content))
    _one_line_error(lambda: presets.read("dimension", copied), "unknown field(s) chosen_by")


def test_a_missing_or_broken_presets_file_is_one_clear_error(copied, tmp_path):
    _one_line_error(lambda: presets.read("multitask", tmp_path / "nowhere"), "missing", "make multitask-tune")
    (copied / "multitask.json").write_text('{"study": "multitask",')
    _one_line_error(lambda: presets.multitask_model(directory=copied), "not valid JSON")
    (copied / "multitask.json").write_text(json.dumps({"study": "ranking"}))
    _one_line_error(lambda: presets.read("multitask", copied), "malformed", "missing")
    _one_line_error(lambda: presets.read("rating"), "unknown presets study")
    with pytest.raises(presets.PresetError, match="folds must be"):
        presets.write("dimension", {"embedding_dim": 8}, command="x", folds=0, validation={}, directory=tmp_path)
