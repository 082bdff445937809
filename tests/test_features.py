"""Side-feature tables and the movies' sampling probabilities (logQ)."""

import numpy as np
import pandas as pd
import pytest

from twotower_utils.data.features import movie_feature_table, movie_sampling_probability, movie_year, user_feature_table
from twotower_utils.data.movielens import MovieLens


def test_sampling_probability_is_training_frequency(tiny_data, tiny_split):
    p = movie_sampling_probability(tiny_data, tiny_split.train)
    assert p.shape == (tiny_data.num_movies + 1,)
    assert p[1:].sum() == pytest.approx(1.0, rel=1e-5)
    counts = np.bincount(tiny_split.train["movie_idx"], minlength=tiny_data.num_movies + 1)
    most = counts[1:].argmax() + 1
    assert p[most] == pytest.approx(counts[most] / counts[1:].sum(), rel=1e-5)


def test_feature_tables():
    assert movie_year("Heat (1995)") == 1995 and movie_year("Ulysses (Ulisse) (1954)") == 1954
    assert movie_year("Untitled") is None
    ratings = pd.DataFrame(
        {
            "user_id": ["a", "b", "a"],
            "movie_title": ["X (1950)", "Y (1995)", "Y (1995)"],
            "bucketized_user_age": [25.0, 45.0, 25.0],
            "user_gender": [True, False, True],
            "user_occupation_label": [3, 0, 3],
            "user_zip_code": ["90210", "T8H1N", "90210"],
        }
    )
    movies = pd.DataFrame({"movie_title": ["X (1950)", "Y (1995)"], "movie_genres": [[0, 2], [1]]})
    data = MovieLens.from_frames(ratings, movies, ["A", "B", "C"])
    users = user_feature_table(data, ("age", "gender", "occupation", "zip"))
    assert users.shape == (3, 2 + 1 + 4 + 11)
    assert not users[0].any()  # the out-of-vocabulary row
    assert users[1, :2].tolist() == [1, 0] and users[1, 2] == 1 and users[1, 3 + 3] == 1 and users[1, 7 + 9] == 1
    assert users[2, 7 + 10] == 1  # a zip code that does not start with a digit
    films = movie_feature_table(data, ("genres", "year"))
    assert films.shape == (3, 3 + 8)
    assert films[1, :3].tolist() == [1, 0, 1] and films[1, 3 + 3] == 1  # the 1950s
    assert films[2, :3].tolist() == [0, 1, 0] and films[2, 3 + 7] == 1  # the 1990s
