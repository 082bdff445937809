import json

import numpy as np
import pytest

from twotower_utils.config import MultitaskSpec, RetrainError, RunConfig
from twotower_utils.experiments.workflow import load_or_train, load_saved_run
from twotower_utils.results import read_metrics, record_metrics, save_figure


def test_record_metrics_merges_sections(tmp_path):
    record_metrics(tmp_path, "a", {"x": np.float32(1.5), "k": {1: 0.2}})
    record_metrics(tmp_path, "b", {"y": float("nan")})
    metrics = read_metrics(tmp_path)
    assert metrics == {"a": {"x": 1.5, "k": {"1": 0.2}}, "b": {"y": None}}
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert not list(tmp_path.glob("*.tmp"))


def test_save_figure_writes_png(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    path = save_figure(fig, tmp_path, "line")
    assert path.read_bytes()[:4] == b"\x89PNG" and not list(path.parent.glob(".*"))


def test_load_or_train_reuses_a_model_of_the_same_config(tmp_path, tiny_data, tiny_split, tiny_config):
    first, loaded_first = load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)
    second, loaded_second = load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)
    assert (loaded_first, loaded_second) == (False, True)
    np.testing.assert_array_equal(first.model.user_tower.embed_all(), second.model.user_tower.embed_all())
    assert second.history.equals(first.history)
    _, retrained = load_or_train(tiny_config.replace(epochs=1), tiny_data, tiny_split, tmp_path, verbose=0)
    assert retrained is False


def test_load_or_train_reloads_a_multitask_model_with_its_head(tmp_path, tiny_data, tiny_split, tiny_config):
    from twotower_utils.evaluation.rating import rating_metrics

    config = tiny_config.replace(model=MultitaskSpec(embedding_dim=8, rating_layers=(4,)), epochs=1)
    first, _ = load_or_train(config, tiny_data, tiny_split, tmp_path, verbose=0)
    again, loaded = load_or_train(config, tiny_data, tiny_split, tmp_path, verbose=0)
    assert loaded
    assert rating_metrics(again.model, tiny_split.test) == rating_metrics(first.model, tiny_split.test)


# the layout of config.json before RunConfig: one flat mapping of every model's settings
OLD_FLAT_CONFIG = {"embedding_dim": 8, "epochs": 3, "learning_rate": 0.5, "ranking_head": "none", "rating_task": False}


def test_a_saved_model_reads_back_as_its_run(tmp_path, tiny_data, tiny_split, tiny_config):
    assert load_saved_run(tmp_path) is None
    result, _ = load_or_train(tiny_config.replace(epochs=1), tiny_data, tiny_split, tmp_path, verbose=0)
    config, saved = load_saved_run(tmp_path)
    assert config == tiny_config.replace(epochs=1) and "history" in saved


def test_a_model_saved_in_the_old_flat_layout_must_be_retrained(tmp_path, tiny_data, tiny_split, tiny_config, capsys):
    load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)
    path = tmp_path / "model" / "config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "config": OLD_FLAT_CONFIG}))
    message = f"the model in {tmp_path / 'model'} was saved by an earlier version of twotower"
    with pytest.raises(RetrainError, match="retrain it") as raised:
        load_saved_run(tmp_path)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    from twotower_utils.experiments.release import saved_model

    with pytest.raises(RetrainError, match="earlier version of twotower"):  # make export --from: it stops there
        saved_model(tmp_path)
    # load_or_train keeps a cache: it says so in that one line and trains the model again
    capsys.readouterr()
    assert load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)[1] is False
    said = capsys.readouterr()
    assert message in said.out + said.err
    assert load_saved_run(tmp_path)[0] == tiny_config  # replaced by the model trained now
    with pytest.raises(RetrainError, match="earlier version"):
        RunConfig.from_dict(OLD_FLAT_CONFIG)


def _write_sections(output_dir: str, prefix: str, count: int) -> None:
    for index in range(count):
        record_metrics(output_dir, f"{prefix}{index}", {"value": index})


def test_parallel_writers_lose_no_section(tmp_path):
    """Two processes updating one metrics.json at once (say make run-notebooks and make sweep)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_sections, args=(str(tmp_path), prefix, 40)) for prefix in "ab"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    assert read_metrics(tmp_path) == {f"{p}{i}": {"value": i} for p in "ab" for i in range(40)}


def test_without_the_lock_parallel_writers_do_lose_sections(tmp_path, monkeypatch):
    """The test above can fail: the same two writers drop sections when the lock is a no-op."""
    import contextlib
    import threading

    import twotower_utils.results as results

    monkeypatch.setattr(results, "file_lock", lambda path: contextlib.nullcontext())
    both_read = threading.Barrier(2)
    real_read = results.read_json

    def slow_read(path, default=None):
        content = real_read(path, default)
        both_read.wait(5)  # each writer reads before either writes: a lost update
        return content

    monkeypatch.setattr(results, "read_json", slow_read)
    threads = [threading.Thread(target=record_metrics, args=(tmp_path, name, {"v": 1})) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(real_read(tmp_path / "metrics.json", {})) == 1


def test_unreadable_metrics_are_moved_aside_and_rebuilt(tmp_path):
    import pytest

    from twotower_utils.results import UnreadableFileWarning

    (tmp_path / "metrics.json").write_text('{"01_data": {"ratings": 100')  # truncated
    with pytest.warns(UnreadableFileWarning, match="moved it aside"):
        assert read_metrics(tmp_path) == {}
    aside = list(tmp_path.glob("metrics.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"01_data"')
    record_metrics(tmp_path, "b", {"y": 2})
    assert read_metrics(tmp_path) == {"b": {"y": 2}}
    (tmp_path / "metrics.json").write_text("[1, 2]")  # valid JSON, not a dict of sections
    with pytest.warns(UnreadableFileWarning):
        record_metrics(tmp_path, "c", {"z": 3})
    assert read_metrics(tmp_path) == {"c": {"z": 3}}


def test_an_unreadable_saved_config_means_retrain(tmp_path, tiny_data, tiny_split, tiny_config):
    import pytest

    from twotower_utils.results import UnreadableFileWarning

    load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)
    (tmp_path / "model" / "config.json").write_bytes(b"\xff\xfe not json")
    with pytest.warns(UnreadableFileWarning):
        _, loaded = load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)
    assert loaded is False
    assert load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)[1]
