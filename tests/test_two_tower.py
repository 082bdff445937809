"""The one two-tower model: the report's recipe with every switch off, and each switch of the loss."""

import numpy as np
import pytest
import tensorflow as tf

import twotower_utils as tt
from twotower_utils.evaluation.counting import filtered_topk_accuracy
from twotower_utils.evaluation.metrics import model_scores
from twotower_utils.models.two_tower import TwoTowerModel, in_batch_scores, parameter_counts
from twotower_utils.training import build_for, train


def test_the_reports_recipe_is_the_model_with_every_switch_off(tiny_data, tiny_config):
    model = build_for(tiny_config, tiny_data)
    assert isinstance(model, TwoTowerModel) and model.probability is None and not model.catalogue_negatives
    for tower in (model.user_tower, model.movie_tower):
        assert tower.side is None and not tower.hidden and tower.output_layer is None and not tower.normalize
        assert [w.name.split("/")[-2] for w in tower.trainable_weights] == ["embedding"]


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"logq_correction": 1.2},
        {"logq_correction": 0.5, "remove_accidental_hits": True, "temperature": 0.3},
    ],
)
def test_the_lean_training_loss_is_the_tfrs_tasks_loss(tiny_data, tiny_split, tiny_config, switches):
    """Training steps use the distinct-id loss; evaluation runs the TFRS task: same number for every switch."""
    model = build_for(tiny_config.replace(**switches), tiny_data, tiny_split.train)
    batch = {
        "user_id": tf.constant(tiny_split.train["user_idx"].to_numpy()[:48]),
        "movie_title": tf.constant(tiny_split.train["movie_idx"].to_numpy()[:48]),
    }
    lean = float(model.compute_loss(batch, training=True))
    assert lean == pytest.approx(float(model.compute_loss(batch, training=False)), rel=1e-5)


def test_logq_needs_sampling_probabilities(tiny_data, tiny_config):
    towers = tiny_config.model.build_towers(tiny_data)
    with pytest.raises(ValueError, match="sampling probabilities"):
        TwoTowerModel(*towers, task=None, logq_correction=1.0)


def test_parameter_counts_are_vocabulary_plus_one_times_dim(tiny_data, tiny_config):
    model = build_for(tiny_config, tiny_data)
    assert parameter_counts(model) == {
        "user_tower": (tiny_data.num_users + 1) * 8,
        "movie_tower": (tiny_data.num_movies + 1) * 8,
    }


def test_report_parameter_counts_on_real_vocabulary(real_data):
    counts = parameter_counts(build_for(tt.RunConfig(tt.RetrievalSpec(embedding_dim=32)), real_data))
    assert counts == {"user_tower": 30_208, "movie_tower": 53_280}


def test_same_seed_same_initial_weights(tiny_data, tiny_config):
    first = build_for(tiny_config, tiny_data).user_tower.embed_all().numpy()
    second = build_for(tiny_config, tiny_data).user_tower.embed_all().numpy()
    other = build_for(tiny_config.replace(seed=8), tiny_data).user_tower.embed_all().numpy()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_in_batch_scores_shape(tiny_data, tiny_config):
    model = build_for(tiny_config, tiny_data)
    scores = in_batch_scores(model, tf.constant([1, 2, 3], tf.int64), tf.constant([4, 5, 6], tf.int64))
    assert scores.shape == (3, 3)


def test_cosine_schedule_decays_to_zero_over_all_training_steps(tiny_config):
    from twotower_utils.training import learning_rate_for, make_optimizer

    config = tiny_config.replace(optimizer="adam", learning_rate_schedule="cosine", epochs=4, batch_size=10)
    schedule = learning_rate_for(config, num_examples=95)  # 10 steps per epoch, 40 in all
    assert float(schedule(0)) == pytest.approx(0.5)
    assert float(schedule(20)) == pytest.approx(0.25)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-7)
    assert learning_rate_for(tiny_config) == 0.5  # constant: the number itself
    assert isinstance(make_optimizer(config, 95), tf.keras.optimizers.Adam)
    with pytest.raises(ValueError, match="number of training examples"):
        make_optimizer(config)


@pytest.mark.parametrize(
    "switches",
    [
        {"logq_correction": 1.0, "remove_accidental_hits": True},
        {"normalize_embeddings": True, "temperature": 0.1, "l2_regularization": 0.01, "optimizer": "adam"},
        {"movie_features": ("genres", "year"), "tower_layers": (16,)},
        {"negatives": "catalogue", "learning_rate": 0.05, "optimizer": "adam"},
    ],
)
def test_switched_models_train_and_evaluate(tiny_data, tiny_split, tiny_config, switches):
    config = tiny_config.replace(**switches)
    result = train(config, tiny_data, tiny_split, verbose=0, curves=False)
    assert isinstance(result.model, TwoTowerModel)
    assert np.isfinite(result.history["loss"]).all()
    fast = filtered_topk_accuracy(result.model, tiny_split.train, tiny_split.test, [5])[5]
    from_scores = filtered_topk_accuracy(model_scores(result.model), tiny_split.train, tiny_split.test, [5])[5]
    # the same numbers from the score matrix; degenerate tiny towers score some movies exactly alike,
    # and float32 rounding breaks such ties differently in NumPy's and TensorFlow's matrix products
    assert abs(from_scores - fast) <= 0.1


def test_l2_regularisation_adds_a_loss(tiny_data, tiny_split, tiny_config):
    config = tiny_config.replace(l2_regularization=1.0, epochs=1)
    history = train(config, tiny_data, tiny_split, verbose=0, curves=False).history
    assert history["regularization_loss"].iloc[-1] > 0


def test_logq_correction_lifts_popular_movies(tiny_data, tiny_split):
    """The correction adds log(1/p) to popular in-batch negatives' logits... and so their positives learn
    larger scores relative to an uncorrected model: the loss differs on the same batch."""
    config = tt.RunConfig(tt.RetrievalSpec(embedding_dim=4), epochs=1, batch_size=64, seed=1)
    plain = build_for(config, tiny_data)
    corrected = build_for(config.replace(logq_correction=1.0), tiny_data, tiny_split.train)
    batch = {
        "user_id": tf.constant(tiny_split.train["user_idx"].to_numpy()[:64]),
        "movie_title": tf.constant(tiny_split.train["movie_idx"].to_numpy()[:64]),
    }
    corrected.user_tower.embedding.set_weights(plain.user_tower.embedding.get_weights())
    corrected.movie_tower.embedding.set_weights(plain.movie_tower.embedding.get_weights())
    assert float(plain.compute_loss(batch, training=True)) != pytest.approx(
        float(corrected.compute_loss(batch, training=True))
    )
