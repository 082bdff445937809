"""A synthetic MovieLens with the shape of a real set, for timing every code path at sizes we cannot download.

Only MovieLens 100K is at hand offline; 1M, 20M and 25M are not.  ``synthetic_movielens("25m")`` makes a
``MovieLens`` object (the same class, the same columns, ``Categorical`` strings like ``MovieLens.load``) whose
sizes follow the published ones (``movielens.DATASETS``): users, movies, ratings and their scale (whole or half
stars), timestamps within the set's years and, for 100k and 1m, user demographics.  ``num_ratings`` scales a set
down (or up) by ``s``: ``s`` times the users (the ratings per user keep their distribution) and ``s ** 0.65`` times
the movies (``CATALOGUE_EXPONENT``).

How the ratings are drawn (all vectorised, ~1 s per million ratings):

* **ratings per user**: ``20 + LogNormal`` (every MovieLens user has at least 20 ratings), its median and mean
  matched to the set's (``SHAPES``), then rescaled so the total is exactly ``num_ratings``;
* **which movies**: a power law of popularity, ``p(movie of rank r) ∝ (r + 30)^-1.3`` (on MovieLens 100K's files
  the top 10% of movies take 43% of the ratings; synthetic 100k gets 42%, its top movie 0.57% against 0.58%), mixed half-and-half with the same law
  restricted to the user's *taste group* (one of ``groups``), so there is something for a model to learn;
  each user's movies are distinct (duplicates are redrawn);
* **rating**: ``3.5 + user bias + movie quality + in-group bonus + noise``, rounded to the set's scale;
* **timestamp**: each user starts at a uniform time of the set's years and rates over a log-normal span.

Peak memory: about 60 bytes per rating while drawing (25M ratings: ~1.5 GB), 30 per rating after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.sets import dataset_facts, parse_synthetic_name

MIN_RATINGS_PER_USER = 20  # GroupLens kept only users with at least 20 ratings, in every set
POPULARITY_OFFSET = 30.0
POPULARITY_EXPONENT = 1.3
# a set scaled by s keeps s x the users but s ** 0.65 x the movies: across MovieLens, 250x the ratings (100k to
# 25m) came with 35x the rated movies (250 ** 0.65 = 36), and a linear shrink would leave small sets too dense
CATALOGUE_EXPONENT = 0.65
AGE_BUCKETS = np.array([1, 18, 25, 35, 45, 50, 56], dtype=np.float32)  # MovieLens' age groups
AGE_SHARES = np.array([0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06])
NUM_OCCUPATIONS = 21
GENRE_NAMES = [  # TFDS's genre labels for MovieLens (its ``movie_genres`` ClassLabel)
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "Unknown", "War",
    "Western", "(no genres listed)",
]  # fmt: skip


@dataclass(frozen=True)
class Shape:
    """Ratings-per-user median and mean of a set (approximate, from the published rating files; 100k's are
    exact: 65 and 106)."""

    median_per_user: float
    mean_per_user: float


SHAPES = {
    "100k": Shape(65, 106.0),
    "1m": Shape(96, 165.6),
    "20m": Shape(68, 144.4),
    "25m": Shape(71, 153.8),
    "latest-small": Shape(70.5, 165.3),
}


def synthetic_movielens(
    shape: str = "25m", num_ratings: int | None = None, seed: int = 0, groups: int = 20
) -> MovieLens:
    """A synthetic ``MovieLens`` of ``shape``'s shape (a set name, or ``synthetic-<set>[-<ratings>]``) with
    ``num_ratings`` ratings (default: the set's own count).  Same seed, same data."""
    if shape.startswith("synthetic-"):
        shape, from_name = parse_synthetic_name(shape)
        num_ratings = num_ratings or from_name
    facts = dataset_facts(shape)
    num_ratings = facts.ratings if num_ratings is None else num_ratings
    if not isinstance(num_ratings, (int, np.integer)) or num_ratings < 2 * MIN_RATINGS_PER_USER:
        raise ValueError(f"num_ratings must be a whole number >= {2 * MIN_RATINGS_PER_USER}, got {num_ratings!r}")
    rng = np.random.default_rng(seed)
    scale = num_ratings / facts.ratings
    num_users = max(2, round(facts.users * scale))
    # at least 2.5x the mean ratings per user, so every user finds enough distinct movies (tiny sets)
    room = int(np.ceil(2.5 * num_ratings / num_users))
    num_movies = max(2 * MIN_RATINGS_PER_USER + 10, room, round(facts.rated_movies * scale**CATALOGUE_EXPONENT))
    counts = _ratings_per_user(rng, SHAPES[shape], num_users, num_ratings, max_per_user=num_movies // 2)
    user_group = rng.integers(0, groups, num_users)
    movie_group = rng.integers(0, groups, num_movies)
    movie_rank = rng.permutation(num_movies)  # popularity rank of each movie, unrelated to its id
    users, movies, in_group = _distinct_movies(rng, counts, user_group, movie_group, movie_rank)
    ratings = _rating_values(rng, users, movies, in_group, num_users, num_movies, facts.half_stars)
    timestamps = _timestamps(rng, users, num_users, facts.years)
    order = rng.permutation(num_ratings)  # TFDS order is not grouped by user either
    users, movies, ratings, timestamps = users[order], movies[order], ratings[order], timestamps[order]
    titles, genres = _movie_table(rng, num_movies, movie_group)
    frame = {
        "user_id": pd.Categorical.from_codes(users, categories=_sorted_index(num_users)),
        "movie_title": pd.Categorical.from_codes(movies, categories=titles),
        "movie_id": pd.Categorical.from_codes(movies, categories=_sorted_index(num_movies)),
        "user_rating": ratings,
        "timestamp": timestamps,
    }
    if facts.demographics:
        frame.update(_demographics(rng, users, num_users))
    movies_frame = pd.DataFrame(
        {
            "movie_id": pd.Categorical(_sorted_index(num_movies)),
            "movie_title": pd.Categorical(titles),
            "movie_genres": genres,
        }
    )
    return MovieLens.from_frames(pd.DataFrame(frame), movies_frame, GENRE_NAMES, name=f"synthetic-{shape}")


def _sorted_index(size: int) -> pd.Index:
    """Ids ``"1"..str(size)`` as TFDS writes them; code ``i`` is id ``i + 1``."""
    return pd.Index([str(i + 1) for i in range(size)])


def _ratings_per_user(
    rng: np.random.Generator, shape: Shape, num_users: int, num_ratings: int, max_per_user: int
) -> np.ndarray:
    """``20 + LogNormal`` counts with the shape's median and mean, rescaled to sum to ``num_ratings`` exactly."""
    low = MIN_RATINGS_PER_USER
    if num_ratings > num_users * max_per_user or num_ratings < num_users * low:
        raise ValueError(f"{num_ratings:,} ratings cannot be spread over {num_users:,} users of {low}..{max_per_user}")
    median_excess = max(shape.median_per_user - low, 1.0)
    sigma = np.sqrt(2 * np.log(max(shape.mean_per_user - low, median_excess + 1e-9) / median_excess))
    excess = rng.lognormal(np.log(median_excess), sigma, num_users)
    budget = num_ratings - low * num_users
    counts = np.full(num_users, low, dtype=np.int64)
    room = max_per_user - low
    free = np.ones(num_users, dtype=bool)
    while budget > 0:  # water-filling: users at the cap give their share to the others
        share = excess * free
        wanted = share / share.sum() * budget
        take = np.minimum(np.floor(wanted).astype(np.int64), room - (counts - low))
        if take.sum() == 0:  # the last few ratings: one each to the users with most room, largest wish first
            candidates = np.flatnonzero(counts - low < room)
            extra = candidates[np.argsort(-wanted[candidates], kind="stable")[:budget]]
            counts[extra] += 1
            budget -= len(extra)
            continue
        counts += take
        budget -= int(take.sum())
        free = counts - low < room
    return counts


def _distinct_movies(rng, counts, user_group, movie_group, movie_rank):
    """Each rating's movie: popularity power law, half of them within the user's taste group; a user's movies
    are distinct (repeated pairs are redrawn, looking only at the users that have one)."""
    num_movies = len(movie_rank)
    weights = (movie_rank + POPULARITY_OFFSET) ** -POPULARITY_EXPONENT
    overall = np.cumsum(weights) / weights.sum()
    by_group = []
    for group in range(int(user_group.max()) + 1):
        members = np.flatnonzero(movie_group == group)
        if len(members) == 0:
            members = np.arange(num_movies)
        cumulative = np.cumsum(weights[members])
        by_group.append((members, cumulative / cumulative[-1]))
    users = np.repeat(np.arange(len(counts), dtype=np.int32), counts)  # rows grouped by user
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    movies = np.empty(len(users), dtype=np.int32)
    in_group = np.empty(len(users), dtype=bool)
    todo = np.arange(len(users))  # rows to (re)draw
    check = todo  # rows among which to look for repeats: those of the users that had one
    for _ in range(100):
        in_group[todo] = rng.random(len(todo)) < 0.5
        draws = rng.random(len(todo))
        chosen = np.minimum(np.searchsorted(overall, draws), num_movies - 1)
        groups = user_group[users[todo]]
        for group, (members, cumulative) in enumerate(by_group):
            mask = in_group[todo] & (groups == group)
            picked = np.minimum(np.searchsorted(cumulative, draws[mask]), len(members) - 1)
            chosen[mask] = members[picked]
        movies[todo] = chosen
        keys = users[check].astype(np.int64) * num_movies + movies[check]
        order = np.argsort(keys, kind="stable")
        repeated = np.zeros(len(keys), dtype=bool)
        repeated[order[1:]] = keys[order[1:]] == keys[order[:-1]]
        todo = check[repeated]
        if len(todo) == 0:
            return users, movies, in_group
        affected = np.unique(users[todo])
        check = _rows_of(affected, starts, counts)
    for row in todo:  # heavy users that exhausted the popular movies: take movies they have not rated
        user = users[row]
        own = slice(starts[user], starts[user] + counts[user])
        free = np.setdiff1d(np.arange(num_movies), movies[own])
        if len(free):
            movies[row] = rng.choice(free)
            in_group[row] = movie_group[movies[row]] == user_group[user]
    return users, movies, in_group


def _rows_of(users: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The row numbers of some users when rows are grouped by user."""
    lengths = counts[users]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts[users], lengths) + offsets


def _rating_values(rng, users, movies, in_group, num_users, num_movies, half_stars: bool) -> np.ndarray:
    user_bias = rng.normal(0.0, 0.4, num_users)
    quality = rng.normal(0.0, 0.5, num_movies)
    raw = 3.5 + user_bias[users] + quality[movies] + 0.4 * in_group + rng.normal(0.0, 0.9, len(users))
    step = 0.5 if half_stars else 1.0
    return np.clip(np.round(raw / step) * step, step, 5.0).astype(np.float32)  # lowest: 0.5 or 1 star


def _timestamps(rng, users, num_users: int, years: tuple[int, int]) -> np.ndarray:
    start_of = pd.Timestamp(f"{years[0]}-01-01").timestamp()
    end_of = pd.Timestamp(f"{years[1]}-12-31").timestamp()
    start = rng.uniform(start_of, end_of, num_users)
    span = np.minimum(rng.lognormal(np.log(30 * 86_400), 1.5, num_users), end_of - start)
    return (start[users] + rng.random(len(users)) * span[users]).astype(np.int64)


def _movie_table(rng, num_movies: int, movie_group) -> tuple[pd.Index, list[list[int]]]:
    """Titles with a release year (``data.features.movie_year`` reads it) and 1-3 genres per movie, the first
    one tied to the taste group."""
    years = np.clip(np.round(2019 - rng.exponential(18.0, num_movies)), 1920, 2019).astype(int)
    titles = pd.Index([f"Synthetic movie {m + 1} ({year})" for m, year in enumerate(years)])
    num_genres = len(GENRE_NAMES)
    extra = rng.integers(0, num_genres, (num_movies, 2))
    how_many = rng.integers(0, 3, num_movies)
    genres = [sorted({int(movie_group[m] % num_genres), *extra[m, : how_many[m]].tolist()}) for m in range(num_movies)]
    return titles, genres


def _demographics(rng, users, num_users: int) -> dict:
    """The 100k/1m user columns, drawn once per user and repeated on their ratings."""
    age = rng.choice(AGE_BUCKETS, num_users, p=AGE_SHARES)
    gender = rng.random(num_users) < 0.71
    occupation = rng.integers(0, NUM_OCCUPATIONS, num_users)
    zips = pd.Index(sorted({f"{z:05d}" for z in range(0, 100_000, 97)}))
    zip_code = rng.integers(0, len(zips), num_users)
    return {
        "bucketized_user_age": age[users],
        "user_gender": gender[users],
        "user_occupation_label": occupation[users].astype(np.int64),
        "user_zip_code": pd.Categorical.from_codes(zip_code[users], categories=zips),
    }
