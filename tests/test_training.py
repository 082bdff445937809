import pandas as pd

from twotower_utils.evaluation.counting import metric_name, topk_accuracy
from twotower_utils.training import train


def test_history_has_loss_and_train_test_topk_per_epoch(tiny_data, tiny_split, tiny_config):
    result = train(tiny_config, tiny_data, tiny_split, verbose=0)
    history = result.history
    assert history["epoch"].tolist() == [1, 2, 3]
    for k in tiny_config.ks:
        assert metric_name(k) in history and metric_name(k, "val_") in history
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    # the curves are the end-of-epoch accuracy of the model as trained
    assert result.final(10) == topk_accuracy(result.model, tiny_split.test, (10,))[10]
    assert result.seconds > 0


def test_same_seed_same_numbers(tiny_data, tiny_split, tiny_config):
    first = train(tiny_config, tiny_data, tiny_split, verbose=0).history
    second = train(tiny_config, tiny_data, tiny_split, verbose=0).history
    pd.testing.assert_frame_equal(first, second)


def test_metrics_inside_training_give_tfrs_history(tiny_data, tiny_split, tiny_config):
    config = tiny_config.replace(metrics_in_training=True, epochs=1)
    history = train(config, tiny_data, tiny_split, verbose=0).history
    assert metric_name(10) in history and metric_name(10, "val_") in history
