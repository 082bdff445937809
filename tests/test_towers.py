"""The one tower class: bare embedding table (the report's) or with side features, layers, normalisation."""

import numpy as np
import tensorflow as tf

from twotower_utils.data.features import movie_feature_table
from twotower_utils.models.towers import Tower
from twotower_utils.training import build_for


def test_towers_accept_strings_and_integer_ids(tiny_data, tiny_config):
    model = build_for(tiny_config, tiny_data)
    strings = tf.constant(list(tiny_data.movie_vocabulary[:3]) + ["unknown title"])
    integers = tf.constant([1, 2, 3, 0], dtype=tf.int64)
    np.testing.assert_array_equal(model.movie_tower(strings).numpy(), model.movie_tower(integers).numpy())


def test_side_features_layers_and_normalisation_keep_the_tower_interface(tiny_data):
    side = movie_feature_table(tiny_data, ("genres", "year"))
    tower = Tower(tiny_data.movie_vocabulary, 8, side, layers=(16,), normalize=True, name="movie_tower")
    by_id = tower(tf.constant([1, 2], dtype=tf.int64))
    by_title = tower(tf.constant(tiny_data.movie_vocabulary[:2]))
    np.testing.assert_allclose(by_id.numpy(), by_title.numpy(), rtol=1e-6)
    table = tower.embed_all().numpy()
    assert table.shape == (tiny_data.num_movies + 1, 8)
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), 1.0, rtol=1e-5)
