import json

import numpy as np

from twotower_utils.experiments.workflow import load_or_train
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

    config = tiny_config.replace(rating_task=True, rating_layers=(4,), epochs=1)
    first, _ = load_or_train(config, tiny_data, tiny_split, tmp_path, verbose=0)
    again, loaded = load_or_train(config, tiny_data, tiny_split, tmp_path, verbose=0)
    assert loaded
    assert rating_metrics(again.model, tiny_split.test) == rating_metrics(first.model, tiny_split.test)


def test_load_or_train_reuses_a_model_saved_before_the_multitask_fields(tmp_path, tiny_data, tiny_split, tiny_config):
    import json

    load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)
    path = tmp_path / "model" / "config.json"
    saved = json.loads(path.read_text())
    from twotower_utils.experiments.tuning import LATER_FIELDS

    for name in LATER_FIELDS:
        del saved["config"][name]  # as written before issue 10
    path.write_text(json.dumps(saved))
    assert load_or_train(tiny_config, tiny_data, tiny_split, tmp_path, verbose=0)[1]
