"""Honest top-k metrics from one score matrix, shared by the two-tower and the baselines.

A *score matrix* is ``[num_users + 1, num_movies + 1]``, indexed by integer ids like
``counting.seen_matrix`` (row 0 and column 0, the out-of-vocabulary slots, are never
ranked).  The two-tower's is ``user_tower.embed_all() @ movie_tower.embed_all().T``
(``model_scores``); a baseline builds its own (``baselines.py``).

Two families of numbers:

* **per-interaction hit rate @k** — ``FactorizedTopK``'s definition: a test interaction is a
  hit when fewer than k catalogue movies score strictly above its movie (ties count as hits).
  *Unfiltered* ranks against the whole catalogue; *filtered* leaves out the user's training
  movies (TFRS issue #113).  Both come from the one counting core, ``counting.topk_accuracy``,
  which takes a score matrix or a model's towers alike.
* **per-user ranking metrics** on each test user's filtered top-k list (ties broken by the
  lower movie id): Recall@k (hits / the user's test movies), Precision@k (hits / k),
  NDCG@k (binary gains, ideal DCG over min(k, test movies)), MAP@k (average precision
  normalised by min(k, test movies)) and MRR (1 / rank of the first test movie in the whole
  filtered ranking), averaged over users with at least one test movie; plus the catalogue
  coverage and the popularity bias of the top-10 lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from twotower_utils.evaluation.counting import seen_matrix, topk_accuracy


def model_scores(model, history_frame: pd.DataFrame | None = None) -> np.ndarray:
    """The two-tower's score matrix: every user embedding against every movie embedding (a sequence user
    tower's user embeddings read each user's last ratings of ``history_frame``, ``two_tower.user_table``)."""
    from twotower_utils.models.two_tower import user_table

    users = user_table(model, history_frame).numpy()
    movies = model.movie_tower.embed_all().numpy()
    return users @ movies.T


def ranked_movies(scores: np.ndarray, exclude: np.ndarray | None = None, users: np.ndarray | None = None) -> np.ndarray:
    """Each user's movie ids, best first; excluded movies go last; ties: lower movie id first."""
    users = np.arange(scores.shape[0]) if users is None else np.asarray(users)
    rows = scores[users, 1:].astype(np.float64).copy()
    if exclude is not None:
        rows[exclude[users, 1:]] = -np.inf
    return np.argsort(-rows, axis=1, kind="stable") + 1


def top_k_lists(scores: np.ndarray, k: int, exclude: np.ndarray | None = None, users=None) -> np.ndarray:
    """``[len(users), k]`` movie ids of each user's (filtered) top-k list."""
    return ranked_movies(scores, exclude, users)[:, :k]


def ranking_metrics(
    scores: np.ndarray, test: pd.DataFrame, ks: Sequence[int], exclude: np.ndarray | None = None
) -> dict[str, float]:
    """Per-user Recall@k, Precision@k, NDCG@k, MAP@k for each k, and MRR, averaged over test users."""
    num_users, num_columns = scores.shape
    relevant = seen_matrix(test, num_users - 1, num_columns - 1)
    users = np.unique(test["user_idx"].to_numpy())
    order = ranked_movies(scores, exclude, users)
    if exclude is not None:  # excluded movies were ranked last; they must never count
        order_excluded = np.take_along_axis(exclude[users], order, axis=1)
    else:
        order_excluded = np.zeros(order.shape, dtype=bool)
    gains = np.take_along_axis(relevant[users], order, axis=1) & ~order_excluded
    num_relevant = relevant[users, 1:].sum(axis=1)
    positions = np.arange(1, gains.shape[1] + 1)
    result: dict[str, float] = {}
    for k in ks:
        top = gains[:, :k].astype(np.float64)
        hits = top.sum(axis=1)
        ideal_count = np.minimum(num_relevant, k)
        discounts = 1.0 / np.log2(positions[:k] + 1)
        dcg = (top * discounts).sum(axis=1)
        idcg = np.array([discounts[:n].sum() for n in ideal_count])
        precision_at = np.cumsum(top, axis=1) / positions[:k]
        average_precision = (precision_at * top).sum(axis=1) / ideal_count
        result[f"recall@{k}"] = float(np.mean(hits / num_relevant))
        result[f"precision@{k}"] = float(np.mean(hits / k))
        result[f"ndcg@{k}"] = float(np.mean(dcg / idcg))
        result[f"map@{k}"] = float(np.mean(average_precision))
    any_hit = gains.any(axis=1)
    first = np.where(any_hit, gains.argmax(axis=1) + 1, np.inf)
    result["mrr"] = float(np.mean(1.0 / first))
    return result


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


def evaluate_scores(
    scores: np.ndarray,
    train: pd.DataFrame,
    test: pd.DataFrame,
    num_users: int,
    num_movies: int,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    list_k: int = 10,
) -> dict:
    """Every metric of this module for one score matrix and one split."""
    seen = seen_matrix(train, num_users, num_movies)
    test_users = np.unique(test["user_idx"].to_numpy())
    lists = top_k_lists(scores, list_k, seen, test_users)
    return {
        "hit_rate": topk_accuracy(scores, test, ks),
        "hit_rate_filtered": topk_accuracy(scores, test, ks, exclude=seen),
        "ranking": ranking_metrics(scores, test, [k for k in ks if k <= list_k] or [list_k], exclude=seen),
        f"coverage@{list_k}": coverage(lists, num_movies),
        f"popularity@{list_k}": popularity_bias(lists, train, num_movies),
    }


def graded_metrics(
    scores: np.ndarray, test: pd.DataFrame, k: int = 10, exclude: np.ndarray | None = None
) -> dict[str, float]:
    """How *good* the hits of each test user's (filtered) top-k list are, using the test ratings:
    NDCG@k with the test rating (1-5) as the gain (ideal: the user's k best-rated test movies), averaged over
    test users, and the mean test rating of the hits (every hit of every list counts once)."""
    if "user_rating" not in test.columns:
        raise ValueError("graded metrics need the test frame's 'user_rating' column")
    num_users, num_columns = scores.shape
    gains = np.zeros((num_users, num_columns))
    gains[test["user_idx"].to_numpy(), test["movie_idx"].to_numpy()] = test["user_rating"].to_numpy(np.float64)
    users = np.unique(test["user_idx"].to_numpy())
    lists = top_k_lists(scores, k, exclude, users)
    listed = np.take_along_axis(gains[users], lists, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = -np.sort(-gains[users, 1:], axis=1)[:, :k]
    hits = listed[listed > 0]
    return {
        f"graded ndcg@{k}": float(np.mean((listed * discounts).sum(axis=1) / (ideal * discounts).sum(axis=1))),
        f"mean rating of hits@{k}": float(hits.mean()) if hits.size else float("nan"),
    }
