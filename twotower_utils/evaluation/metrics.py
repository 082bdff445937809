"""Honest top-k metrics from one source of scores, shared by the two-tower and the baselines.

Everything goes through the counting core (``counting.rank_users``), a batch of users at a time with the top
of each row kept, so memory is bounded by ``user_batch x num_movies`` (``evaluate`` states the formula): the
same code ranks MovieLens 100K's 943 x 1,682 and 25M's 162,541 x 59,047.

A *score matrix* is ``[num_users + 1, num_movies + 1]``, indexed by integer ids like
``counting.seen_matrix`` (row 0 and column 0, the out-of-vocabulary slots, are never
ranked).  The two-tower's is ``user_tower.embed_all() @ movie_tower.embed_all().T``
(``model_scores``); a baseline builds its own (``baselines.py``).

Two families of numbers:

* **per-interaction hit rate @k** — ``FactorizedTopK``'s definition: a test interaction is a
  hit when fewer than k catalogue movies score strictly above its movie (ties count as hits).
  *Unfiltered* ranks against the whole catalogue; *filtered* leaves out the user's training
  movies (TFRS issue #113), and counts exactly what a filtered top-k list can show: a test movie
  the user already rated in training is a miss at every k, and stays in the denominator
  (``counting``'s docstring; ``counting.seen_test_rows`` finds them).  Both come from the one
  counting core, ``counting.rank_users``, which takes a score matrix, a model's towers or any
  ``counting.Scorer`` alike.
* **per-user ranking metrics** on each test user's filtered top-k list (ties broken by the
  lower movie id): Recall@k (hits / the user's test movies), Precision@k (hits / k),
  NDCG@k (binary gains, ideal DCG over min(k, test movies)), MAP@k (average precision
  normalised by min(k, test movies)) and MRR (1 / rank of the first test movie in the whole
  filtered ranking), averaged over users with at least one test movie; plus the catalogue
  coverage and the popularity bias of the top-10 lists.  A test movie the user saw in training
  is never a gain, and still counts among the user's test movies (the denominators).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from twotower_utils.evaluation.counting import (
    MatrixScorer,
    RankedUsers,
    SeenMovies,
    as_seen,
    hit_rates_from_counts,
    rank_users,
    scorer_for,
)


def model_scores(model, history_frame: pd.DataFrame | None = None) -> np.ndarray:
    """The two-tower's score matrix: every user embedding against every movie embedding (a sequence user
    tower's user embeddings read each user's last ratings of ``history_frame``, the model's ``query_table``)."""
    users = model.query_table(history_frame).numpy()
    movies = model.movie_tower.embed_all().numpy()
    return users @ movies.T


def top_k_lists(scores, k: int, exclude=None, users=None, user_batch: int = 1024, with_scores: bool = False):
    """``[len(users), k]`` movie ids of each user's (filtered) top-k list (every row when ``users`` is None):
    best first, excluded movies last, ties: the lower movie id first.  ``scores`` is a score matrix or any
    source of ``counting.scorer_for``; ``exclude`` a ``SeenMovies`` or a boolean matrix.  Users are scored
    ``user_batch`` at a time and only the top k of a row is kept: ``3 user_batch num_movies`` scores of
    memory, plus ``8 k`` bytes a user for the lists.  ``with_scores`` also returns the listed scores (-inf for
    an excluded movie) as a second array."""
    scorer = scorer_for(scores)
    users = np.arange(scorer.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    distinct, where = np.unique(users, return_inverse=True)
    ranked = rank_users(scorer, distinct, exclude=exclude, list_length=k, user_batch=user_batch)
    where = where.reshape(users.shape)
    return (ranked.top[where], ranked.top_scores[where]) if with_scores else ranked.top[where]


def _ranking_from_lists(
    ranked: RankedUsers, test: pd.DataFrame, ks: Sequence[int], seen: SeenMovies | None, shape: tuple[int, int]
) -> dict[str, float]:
    """Per-user Recall/Precision/NDCG/MAP @k from the users' top lists and the MRR from their first-hit ranks
    (``rank_users``): a gain is a listed movie that is one of the user's test movies and not excluded."""
    relevant = SeenMovies.from_frame(test, shape[0] - 1, shape[1] - 1)
    users = ranked.users[:, np.newaxis]
    gains = relevant.contains(users, ranked.top)
    if seen is not None:  # excluded movies were ranked last; they must never count
        gains &= ~seen.contains(users, ranked.top)
    num_relevant = relevant.counts(ranked.users)
    positions = np.arange(1, gains.shape[1] + 1)
    result: dict[str, float] = {}
    for k in ks:
        top = gains[:, :k].astype(np.float64)
        hits = top.sum(axis=1)
        ideal_count = np.minimum(num_relevant, k)
        discounts = 1.0 / np.log2(positions[:k] + 1)
        dcg = (top * discounts).sum(axis=1)
        idcg = np.array([discounts[:n].sum() for n in range(k + 1)])[ideal_count]  # one sum per count
        precision_at = np.cumsum(top, axis=1) / positions[:k]
        average_precision = (precision_at * top).sum(axis=1) / ideal_count
        result[f"recall@{k}"] = float(np.mean(hits / num_relevant))
        result[f"precision@{k}"] = float(np.mean(hits / k))
        result[f"ndcg@{k}"] = float(np.mean(dcg / idcg))
        result[f"map@{k}"] = float(np.mean(average_precision))
    first = np.where(ranked.first_rank > 0, ranked.first_rank, np.inf)
    result["mrr"] = float(np.mean(1.0 / first))
    return result


def ranking_metrics(
    scores, test: pd.DataFrame, ks: Sequence[int], exclude=None, user_batch: int = 1024
) -> dict[str, float]:
    """Per-user Recall@k, Precision@k, NDCG@k, MAP@k for each k, and MRR, averaged over test users
    (``scores``: a score matrix or a ``scorer_for`` source; ``exclude``: a ``SeenMovies`` or boolean matrix)."""
    scorer = scorer_for(scores)
    seen = as_seen(exclude, scorer.shape)
    users = np.unique(test["user_idx"].to_numpy(np.int64))
    ranked = rank_users(scorer, users, test, seen, 1, max(ks), user_batch, first_ranks=True)
    return _ranking_from_lists(ranked, test, ks, seen, scorer.shape)


def coverage(lists: np.ndarray, num_movies: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    return float(len(np.unique(lists)) / num_movies)


def popularity_bias(lists: np.ndarray, train: pd.DataFrame, num_movies: int, head_share: float = 0.1) -> dict:
    """How popular the recommended movies are: mean training interactions of a recommended
    movie (vs. the catalogue's mean), and the share of list slots taken by the most popular
    ``head_share`` of the catalogue."""
    counts = np.bincount(train["movie_idx"].to_numpy(), minlength=num_movies + 1)[1:]
    head = np.argsort(-counts, kind="stable")[: max(1, int(round(head_share * num_movies)))] + 1
    return {
        "mean_training_interactions_of_recommended": float(counts[lists - 1].mean()),
        "mean_training_interactions_of_catalogue": float(counts.mean()),
        "share_of_slots_from_top_10pct_movies": float(np.isin(lists, head).mean()),
    }


EVALUATION_USER_BATCH = 1024  # users scored at a time by ``evaluate``; chosen by benchmarks/bench_evaluation.py


def evaluate(
    source,
    train: pd.DataFrame,
    test: pd.DataFrame,
    num_users: int,
    num_movies: int,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    list_k: int = 10,
    user_batch: int = EVALUATION_USER_BATCH,
) -> dict:
    """Every metric of this module for one source of scores and one split, in bounded memory.

    ``source`` is a two-tower model (a sequence tower reads ``train`` as the histories), a ``Scorer``
    (``TowerScorer``, ``MatrixScorer``, ``baselines.PopularityScorer``) or a score matrix.  The test
    interactions are grouped by user and each batch of ``user_batch`` test users is scored once
    (``counting.rank_users``): the seen movies are masked, the top ``max(max(ks), list_k) + 1`` of each row
    kept, and a test interaction is a hit @k when fewer than k of them beat it (exact: ties count as hits, the
    true movie never against itself); filtered, one whose movie the user saw in training is a miss at every k,
    as no filtered list shows it.  The MRR is exact too (the first hit's rank over the whole ranking).

    Peak memory, step by step (n train and t test interactions, T test users, B = ``user_batch``, W = M
    rounded up to ``exact_top_k``'s chunks, s = 4 bytes a score for a model, 8 for a float64 matrix):

    1. ``SeenMovies`` of ``train``: ``~24 n`` bytes while its keys are sorted, ``4 n + 8 U`` kept
       (MovieLens 25M: 0.5 GB for a moment, 80 MB kept);
    2. grouping the test interactions by user and looking up which were seen: ``~40 t`` bytes
       (5M: 0.2 GB), plus ``8 n`` for the seen keys' binary search;
    3. each batch: the raw and the masked rows, ``2 B W s``, which TensorFlow's allocator keeps with the
       chunked ``top_k``'s gathers and the MRR pass: about ``5 B W s`` measured (1.2 GB at B = 1024 for 25M,
       float32); the rest is ``O(B (max(ks) + chunk))``;
    4. the results: ``8 t`` bytes per count array, ``8 list_k T`` for the lists.

    ``benchmarks/bench_evaluation.py`` measures it at 25M's size: B = 1024 peaks at 3.1 GB of RSS (the data
    and TensorFlow's own 1 GB included) in about 100 s on 2 shared cores.
    """
    scorer = scorer_for(source, train)
    if scorer.shape != (num_users + 1, num_movies + 1):
        raise ValueError(f"the scores are {scorer.shape}, the data has {num_users} users and {num_movies} movies")
    seen = SeenMovies.from_frame(train, num_users, num_movies)
    users = np.unique(test["user_idx"].to_numpy(np.int64))
    ranking_ks = [k for k in ks if k <= list_k] or [list_k]
    ranked = rank_users(scorer, users, test, seen, max(ks), list_k, user_batch, unfiltered=True, first_ranks=True)
    lists = ranked.top[:, :list_k]
    return {
        "hit_rate": hit_rates_from_counts(ranked.beating_unfiltered, ks),
        "hit_rate_filtered": hit_rates_from_counts(ranked.beating, ks),
        "ranking": _ranking_from_lists(ranked, test, ranking_ks, seen, scorer.shape),
        f"coverage@{list_k}": coverage(lists, num_movies),
        f"popularity@{list_k}": popularity_bias(lists, train, num_movies),
    }


def evaluate_scores(
    scores: np.ndarray,
    train: pd.DataFrame,
    test: pd.DataFrame,
    num_users: int,
    num_movies: int,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    list_k: int = 10,
) -> dict:
    """Every metric of this module for one score matrix and one split (``evaluate`` of a ``MatrixScorer``)."""
    return evaluate(MatrixScorer(scores), train, test, num_users, num_movies, ks, list_k)


def graded_metrics(
    scores: np.ndarray, test: pd.DataFrame, k: int = 10, exclude: np.ndarray | None = None
) -> dict[str, float]:
    """How *good* the hits of each test user's (filtered) top-k list are, using the test ratings:
    NDCG@k with the test rating (1-5) as the gain (ideal: the user's k best-rated test movies), averaged over
    test users, and the mean test rating of the hits (every hit of every list counts once).  An ``exclude``d
    movie is never a hit (it is listed, last, only when the user has fewer than k others), while its test
    rating stays in the ideal."""
    if "user_rating" not in test.columns:
        raise ValueError("graded metrics need the test frame's 'user_rating' column")
    num_users, num_columns = scores.shape
    gains = np.zeros((num_users, num_columns))
    gains[test["user_idx"].to_numpy(), test["movie_idx"].to_numpy()] = test["user_rating"].to_numpy(np.float64)
    users = np.unique(test["user_idx"].to_numpy())
    lists = top_k_lists(scores, k, exclude, users)
    listed = np.take_along_axis(gains[users], lists, axis=1)
    seen = as_seen(exclude, scores.shape)
    if seen is not None:
        listed[seen.contains(users[:, np.newaxis], lists)] = 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = -np.sort(-gains[users, 1:], axis=1)[:, :k]
    hits = listed[listed > 0]
    return {
        f"graded ndcg@{k}": float(np.mean((listed * discounts).sum(axis=1) / (ideal * discounts).sum(axis=1))),
        f"mean rating of hits@{k}": float(hits.mean()) if hits.size else float("nan"),
    }
