"""Summaries of MovieLens for the data-exploration notebook."""

from __future__ import annotations

import pandas as pd

from twotower_utils.data.movielens import MovieLens


def dataset_summary(data: MovieLens) -> dict[str, float | int | str]:
    """Size, sparsity and time span of the ratings."""
    ratings = data.ratings
    num_users = ratings["user_id"].nunique()
    num_titles = ratings["movie_title"].nunique()
    start = pd.to_datetime(ratings["timestamp"].min(), unit="s")
    end = pd.to_datetime(ratings["timestamp"].max(), unit="s")
    return {
        "ratings": len(ratings),
        "users": num_users,
        "movies": len(data.movies),
        "unique_titles": data.num_movies,
        "rated_titles": num_titles,
        "density": len(ratings) / (num_users * num_titles),
        "sparsity": 1 - len(ratings) / (num_users * num_titles),
        "first_rating": start.strftime("%Y-%m-%d"),
        "last_rating": end.strftime("%Y-%m-%d"),
        "days": int((end - start).days),
        "mean_rating": float(ratings["user_rating"].mean()),
    }


def ratings_per(data: MovieLens, column: str) -> pd.Series:
    """How many ratings each user (``user_id``) or movie (``movie_title``) has, most first."""
    return data.ratings[column].value_counts()


def count_summary(counts: pd.Series) -> dict[str, float]:
    """Min / median / mean / max of a count series."""
    return {
        "min": int(counts.min()),
        "median": float(counts.median()),
        "mean": float(counts.mean()),
        "max": int(counts.max()),
    }


def head_share(counts: pd.Series, fraction: float = 0.1) -> float:
    """Share of all ratings that the top ``fraction`` of items (or users) receive."""
    ordered = counts.sort_values(ascending=False)
    top = max(1, int(round(len(ordered) * fraction)))
    return float(ordered.iloc[:top].sum() / ordered.sum())


def genre_counts(data: MovieLens) -> pd.Series:
    """Movies per genre in the catalogue (a movie can have several genres)."""
    exploded = data.movies["movie_genres"].explode().dropna().astype(int)
    names = data.genre_names or [str(i) for i in range(exploded.max() + 1)]
    return exploded.map(lambda i: names[i]).value_counts()


def duplicate_titles(data: MovieLens) -> pd.DataFrame:
    """Titles shared by more than one movie id (why 1,682 movies give 1,664 title embeddings)."""
    counts = data.movies.groupby("movie_title")["movie_id"].apply(list)
    return counts[counts.map(len) > 1].reset_index(name="movie_ids")
