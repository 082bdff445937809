import numpy as np
import pytest
import tensorflow as tf

from twotower_utils.model import build_model, in_batch_scores, parameter_counts


def test_parameter_counts_are_vocabulary_plus_one_times_dim(tiny_data, tiny_config):
    model = build_model(tiny_config, tiny_data)
    assert parameter_counts(model) == {
        "user_tower": (tiny_data.num_users + 1) * 8,
        "movie_tower": (tiny_data.num_movies + 1) * 8,
    }


def test_report_parameter_counts_on_real_vocabulary(real_data):
    from twotower_utils import ExperimentConfig

    counts = parameter_counts(build_model(ExperimentConfig(embedding_dim=32), real_data))
    assert counts == {"user_tower": 30_208, "movie_tower": 53_280}


def test_towers_accept_strings_and_integer_ids(tiny_data, tiny_config):
    model = build_model(tiny_config, tiny_data)
    strings = tf.constant(list(tiny_data.movie_vocabulary[:3]) + ["unknown title"])
    integers = tf.constant([1, 2, 3, 0], dtype=tf.int64)
    np.testing.assert_array_equal(model.movie_tower(strings).numpy(), model.movie_tower(integers).numpy())


def test_same_seed_same_initial_weights(tiny_data, tiny_config):
    first = build_model(tiny_config, tiny_data).user_tower.embed_all().numpy()
    second = build_model(tiny_config, tiny_data).user_tower.embed_all().numpy()
    other = build_model(tiny_config.replace(seed=8), tiny_data).user_tower.embed_all().numpy()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_in_batch_scores_shape(tiny_data, tiny_config):
    model = build_model(tiny_config, tiny_data)
    scores = in_batch_scores(model, tf.constant([1, 2, 3], tf.int64), tf.constant([4, 5, 6], tf.int64))
    assert scores.shape == (3, 3)


def test_cosine_schedule_decays_to_zero_over_all_training_steps(tiny_config):
    from twotower_utils.model import learning_rate_for, make_optimizer

    config = tiny_config.replace(optimizer="adam", learning_rate_schedule="cosine", epochs=4, batch_size=10)
    schedule = learning_rate_for(config, num_examples=95)  # 10 steps per epoch, 40 in all
    assert float(schedule(0)) == pytest.approx(0.5)
    assert float(schedule(20)) == pytest.approx(0.25)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-7)
    assert learning_rate_for(tiny_config) == 0.5  # constant: the number itself
    assert isinstance(make_optimizer(config, 95), tf.keras.optimizers.Adam)
    with pytest.raises(ValueError, match="number of training examples"):
        make_optimizer(config)
