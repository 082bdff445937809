"""RMSE and MAE of predicted ratings."""

import numpy as np
import pandas as pd
import pytest

from twotower_utils.evaluation.rating import predict_frame, rating_errors, rating_metrics


def test_rating_errors_by_hand():
    errors = rating_errors([3.0, 4.0, 5.0, 1.0], [4.0, 4.0, 3.0, 1.0])  # errors -1, 0, 2, 0
    assert errors["rmse"] == pytest.approx(np.sqrt(5 / 4))
    assert errors["mae"] == pytest.approx(3 / 4)
    assert rating_errors([2.5], [2.5]) == {"rmse": 0.0, "mae": 0.0}


def test_rating_errors_refuse_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="2 predictions for 3 ratings"):
        rating_errors([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="no ratings"):
        rating_errors([], [])


class _SumModel:
    """Predicts user id + movie id / 10, and records its batch sizes."""

    def __init__(self):
        self.batches = []

    def predict_ratings(self, users, movies):
        self.batches.append(len(users))
        return np.asarray(users) + np.asarray(movies) / 10


def test_rating_metrics_predict_every_row_in_batches():
    frame = pd.DataFrame({"user_idx": [1, 2, 3, 1, 2], "movie_idx": [10, 20, 30, 40, 50]})
    model = _SumModel()
    np.testing.assert_allclose(predict_frame(model, frame, batch_size=2), [2, 4, 6, 5, 7])
    assert model.batches == [2, 2, 1]
    frame["user_rating"] = [2.0, 4.0, 6.0, 5.0, 8.0]
    assert rating_metrics(model, frame, batch_size=3) == {"rmse": pytest.approx(np.sqrt(1 / 5)), "mae": 0.2}
