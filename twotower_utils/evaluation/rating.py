"""Rating accuracy: RMSE and MAE of predicted 1-5 ratings against the ratings users gave."""

from __future__ import annotations

import numpy as np
import pandas as pd


def rating_errors(predicted, actual) -> dict[str, float]:
    """Root mean squared error and mean absolute error of ``predicted`` against ``actual`` ratings."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    if predicted.shape != actual.shape:
        raise ValueError(f"{predicted.size} predictions for {actual.size} ratings")
    if predicted.size == 0:
        raise ValueError("no ratings to compare")
    error = predicted - actual
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def predict_pairs(model, users, movies, batch_size: int = 4096) -> np.ndarray:
    """``model.predict_ratings`` for integer user and movie ids, in batches: a float64 array of their shape."""
    users = np.asarray(users, dtype=np.int64)
    movies = np.asarray(movies, dtype=np.int64)
    flat_users, flat_movies = users.reshape(-1), movies.reshape(-1)
    parts = [
        np.asarray(model.predict_ratings(flat_users[i : i + batch_size], flat_movies[i : i + batch_size])).reshape(-1)
        for i in range(0, flat_users.size, batch_size)
    ]
    return (np.concatenate(parts) if parts else np.zeros(0)).astype(np.float64).reshape(users.shape)


def predict_frame(model, frame: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
    """``model.predict_ratings(user ids, movie ids)`` for every row of ``frame`` (``user_idx``/``movie_idx``)."""
    return predict_pairs(model, frame["user_idx"].to_numpy(), frame["movie_idx"].to_numpy(), batch_size)


def rating_metrics(model, frame: pd.DataFrame, batch_size: int = 4096) -> dict[str, float]:
    """RMSE and MAE of a model with ``predict_ratings`` on the ``user_rating`` column of ``frame``."""
    return rating_errors(predict_frame(model, frame, batch_size), frame["user_rating"].to_numpy())
