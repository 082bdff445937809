"""The interactive panel, driven without a browser: set a control, click Train, look at what it drew."""

import pytest

from twotower_utils.evaluation.counting import metric_name
from twotower_utils.notebook.widgets import (
    DimensionPanel,
    comparison_table,
    parameter_count,
    train_and_summarise,
    widgets_can_render,
)


@pytest.fixture()
def quick(tiny_config):
    return tiny_config.replace(epochs=2)


def test_one_try_calls_back_every_epoch_and_returns_the_sweep_record(tiny_data, tiny_split, quick):
    seen = []
    record, model = train_and_summarise(quick, tiny_data, tiny_split, on_epoch=lambda e, logs: seen.append((e, logs)))
    assert [epoch for epoch, _ in seen] == [1, 2]
    for _, logs in seen:
        assert "loss" in logs and metric_name(10) in logs and metric_name(10, "val_") in logs
    assert (
        record["embedding_dim"] == quick.model.embedding_dim and "val_topk" not in record
    )  # no validation model per click
    towers = model.user_tower.count_params() + model.movie_tower.count_params()
    assert record["parameters"]["total"] == parameter_count(tiny_data, quick.model.embedding_dim) == towers
    table = comparison_table([record, record])
    assert table.index.tolist() == [1, 2] and table["dim"].tolist() == [quick.model.embedding_dim] * 2


def _images(output):
    return [item for item in output.outputs if "image/png" in item.get("data", {})]


def test_slider_and_button_retrain_and_redraw_without_a_new_kernel(tiny_data, tiny_split, quick):
    panel = DimensionPanel(tiny_data, tiny_split, quick, dims=(4, 8), interactive=True)
    assert panel.dimension.options == (4, 8) and panel.dimension.value == 8
    panel.dimension.value = 4
    panel.button.click()
    assert [r["embedding_dim"] for r in panel.records] == [4]
    assert len(_images(panel.live)) == 1 and panel.redraws == quick.epochs + 1  # curves every epoch + comparison
    assert "done in" in panel.status.value and f"{parameter_count(tiny_data, 4):,} parameters" in panel.status.value
    assert len(_images(panel.comparison)) == 1
    assert any("text/html" in item["data"] for item in panel.comparison.outputs)
    assert not panel.button.disabled

    panel.auto.value = True  # now a change of a control retrains by itself
    panel.dimension.value = 8
    panel.epochs.value = 1
    assert [(r["embedding_dim"], r["config"]["epochs"]) for r in panel.records] == [(4, 2), (8, 2), (8, 1)]
    table = panel.table()
    assert table["dim"].tolist() == [4, 8, 8] and len(_images(panel.live)) == 1  # redrawn, not appended
    assert panel.model is not None and panel.model.user_tower.embedding.output_dim == 8


def test_headless_panel_trains_the_parameter_values_inline(tiny_data, tiny_split, quick, capsys):
    panel = DimensionPanel(tiny_data, tiny_split, quick, interactive=False)
    record = panel.train()
    assert record["embedding_dim"] == quick.model.embedding_dim and len(panel.records) == 1
    assert panel.live.outputs == () and panel.redraws == 2  # final curves and comparison only, shown inline


def test_no_widgets_outside_a_live_front_end():
    assert widgets_can_render(False) is False
    assert widgets_can_render(True) is False  # pytest: no kernel, no browser
