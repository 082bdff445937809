"""Counting: for each test interaction, how many catalogue movies score strictly above the true one.

This is the one core behind every hit rate and every top-k list of the project.  The true movie is in the
top k exactly when fewer than k candidates beat it, which is how ``tfrs.metrics.FactorizedTopK`` decides too
(``tf.math.in_top_k``: ties count as hits).

The core works **one batch of users at a time**, so its memory is bounded by ``user_batch x num_movies``
whatever the size of the data (MovieLens 25M: 162,541 users x 59,047 movies would be 38 GB as one float32
matrix).  For each batch it

1. asks a *scorer* for the ``[B, num_movies]`` score rows of the users (``Scorer.rows``), once per user however
   many test interactions the user has;
2. masks the user's seen movies (a sparse ``SeenMovies``, CSR over user ids) to ``-inf``;
3. keeps the row's best ``depth + 1`` scores (``top_k``, exact, ties: the lower movie id first) and counts, for
   each test interaction, how many of them beat its movie.  Fewer than ``depth`` beating it is then an exact
   count; ``depth`` or more means "not in the top ``depth``", which is all a hit rate @k <= depth needs.

**The filtered protocol** is the user-facing list: rank the catalogue without the user's training movies, take
the top k, and a test interaction is a hit when its movie is in that list.  The core counts exactly that.  A
test interaction whose movie is itself among the user's excluded movies can never be in a filtered list, so it
is a **miss at every k**: its count is ``num_movies`` (a rank beyond the catalogue), its reciprocal rank 0, its
gain 0.  It stays in the denominator, which is all test interactions, as a list shown to a user is judged on
every rating the user went on to make.  MovieLens 100K keys movies by title (1,682 movie ids, 1,664 titles),
so a user can rate one title in training and again in test under another id: ``seen_test_rows`` finds those
interactions, 109 of the 20,000 test ratings of the random 80/20 split with seed 42 (103 and 115 with seeds 43
and 44), 5 of the global time cut's, 56 of leave-latest-out's and 8 of leave-one-out's 943.  Counted as hits
they would add up to 0.003 to filtered HR@10 on the seed-42 split (the best two-tower's 0.1775 would read
0.1801, EASE's 0.1741 0.1770, most-popular's 0.0886 0.0898).  Without the exclusions (``unfiltered``) nothing
is left out: a list may show a movie the user saw, and such a test movie is ranked like any other.

Scores come from a **two-tower model** (``TowerScorer``: the catalogue is embedded once and a batch of users is
scored with one matrix product, instead of ``FactorizedTopK``'s re-embedding of every candidate per batch), a
**score matrix** ``[num_users + 1, num_movies + 1]`` (``MatrixScorer``, as the small baselines make them; row 0
and column 0, the out-of-vocabulary slots, are never ranked) or any ``Scorer`` (``baselines.PopularityScorer``).

Peak memory of one batch of B users, W = M rounded up to whole ``top_k`` chunks, s bytes a score (4 for
float32, 8 for a float64 matrix): the raw and the masked rows ``2 B W s``, which TensorFlow's allocator keeps
with the chunked ``top_k``'s gathers and the MRR pass, about ``5 B W s`` measured (1.2 GB at B = 1024 for
MovieLens 25M's catalogue), plus the sparse inputs (``SeenMovies``: 4 bytes a training interaction, 8 a
user) and about 40 bytes a test interaction for its ids, positives and counts.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.data.pipeline import interactions_dataset
from twotower_utils.runtime import TFDATA_REWRITE, XLA_INFO, filtered_stderr


class SeenMovies:
    """Which movies each user id saw, as CSR over user ids: the movies of user ``u`` are
    ``indices[indptr[u]:indptr[u + 1]]``, sorted and without repeats.

    It is the one implementation of "which movies did this user see" (``seen_matrix`` is its dense form).  It
    takes ``4 n + 8 (num_users + 2)`` bytes for n distinct interactions where the dense boolean matrix takes
    ``(num_users + 1) (num_movies + 1)``: 80 MB instead of 9.6 GB for MovieLens 25M's training ratings.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, num_users: int, num_movies: int) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int32)
        self.shape = (int(num_users) + 1, int(num_movies) + 1)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, num_users: int, num_movies: int) -> SeenMovies:
        """The (user_idx, movie_idx) pairs of ``frame``: one sort of their keys ``user * (M + 1) + movie``,
        O(n log n), no Python loop per row."""
        users = frame["user_idx"].to_numpy(np.int64)
        movies = frame["movie_idx"].to_numpy(np.int64)
        _check_ids(users, num_users, "user_idx")
        _check_ids(movies, num_movies, "movie_idx")
        keys = np.unique(users * (num_movies + 1) + movies)
        counts = np.bincount(keys // (num_movies + 1), minlength=num_users + 1)
        return cls(np.concatenate([[0], np.cumsum(counts)]), keys % (num_movies + 1), num_users, num_movies)

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> SeenMovies:
        """The True cells of a boolean ``[users + 1, movies + 1]`` matrix (``np.nonzero`` is row-major sorted)."""
        matrix = np.asarray(matrix, dtype=bool)
        rows, columns = np.nonzero(matrix)
        counts = np.bincount(rows, minlength=matrix.shape[0])
        return cls(np.concatenate([[0], np.cumsum(counts)]), columns, matrix.shape[0] - 1, matrix.shape[1] - 1)

    def counts(self, users: np.ndarray) -> np.ndarray:
        """How many movies each of ``users`` saw."""
        users = np.asarray(users, dtype=np.int64)
        return self.indptr[users + 1] - self.indptr[users]

    def pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, movies)``: every movie seen by ``users[i]`` as the pair ``(i, movie)``, without a
        Python loop (the rows' slices laid end to end)."""
        users = np.asarray(users, dtype=np.int64)
        lengths = self.counts(users)
        positions = np.repeat(np.arange(len(users)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return positions, self.indices[np.repeat(self.indptr[users], lengths) + offsets].astype(np.int64)

    def rows(self, users: np.ndarray) -> np.ndarray:
        """Dense boolean rows ``[len(users), num_movies + 1]`` of a batch of users."""
        positions, movies = self.pairs(users)
        dense = np.zeros((len(users), self.shape[1]), dtype=bool)
        dense[positions, movies] = True
        return dense

    def contains(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """Element-wise: did ``users[i]`` see ``movies[i]`` (any shapes that broadcast)?  A binary search in
        each user's sorted slice."""
        users, movies = np.broadcast_arrays(np.asarray(users, dtype=np.int64), np.asarray(movies, dtype=np.int64))
        keys = np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(self.indptr)) * self.shape[1]
        keys += self.indices
        wanted = users * self.shape[1] + movies
        found = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        return (keys[found] == wanted) if len(keys) else np.zeros(wanted.shape, dtype=bool)

    def dense(self) -> np.ndarray:
        """The whole boolean ``[num_users + 1, num_movies + 1]`` matrix (small data only)."""
        return self.rows(np.arange(self.shape[0]))


def _check_ids(ids: np.ndarray, largest: int, name: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() > largest):
        raise ValueError(f"{name} must lie in 0..{largest}, found {ids.min()}..{ids.max()}")


def seen_matrix(frame: pd.DataFrame, num_users: int, num_movies: int) -> np.ndarray:
    """Boolean ``[num_users + 1, num_movies + 1]`` matrix: user id ``u`` rated movie id ``m`` in ``frame``
    (``SeenMovies.dense``; at scale pass ``SeenMovies.from_frame`` wherever an ``exclude`` is taken)."""
    return SeenMovies.from_frame(frame, num_users, num_movies).dense()


def seen_test_rows(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Boolean, one per row of ``test``: the user already has the movie (the same ``movie_idx``) in ``train``.
    No filtered list can show such a movie, so the filtered protocol counts the row as a miss at every k
    (module docstring); ``.sum()`` is how many there are."""
    frames = (train, test)
    num_users = max((int(f["user_idx"].max()) for f in frames if len(f)), default=0)
    num_movies = max((int(f["movie_idx"].max()) for f in frames if len(f)), default=0)
    seen = SeenMovies.from_frame(train, num_users, num_movies)
    return seen.contains(test["user_idx"].to_numpy(np.int64), test["movie_idx"].to_numpy(np.int64))


def as_seen(exclude, shape: tuple[int, int]) -> SeenMovies | None:
    """``exclude`` (None, a ``SeenMovies`` or a dense boolean matrix) as a ``SeenMovies`` of ``shape``."""
    if exclude is None:
        return None
    seen = exclude if isinstance(exclude, SeenMovies) else SeenMovies.from_dense(exclude)
    if seen.shape[1] != shape[1] or seen.shape[0] < shape[0]:
        raise ValueError(f"exclude covers {seen.shape} (users + 1, movies + 1); the scores are {shape}")
    return seen


class Scorer:
    """Score rows for a batch of users.  ``shape`` is ``(num_users + 1, num_movies + 1)``; ``rows(users, width)``
    is ``[B, width]`` (movie id m in column m - 1; ``width`` >= num_movies, default num_movies, and the columns
    from num_movies on are padding of any value, so that ``exact_top_k`` can view a row as whole chunks without
    a padded copy); ``positives(users, movies)`` is each pair's score as the reference metric computes it (by
    default the row's own entry)."""

    shape: tuple[int, int]

    def rows(self, users: np.ndarray, width: int | None = None) -> tf.Tensor:
        raise NotImplementedError

    def positives(self, users: np.ndarray, movies: np.ndarray) -> tf.Tensor | None:
        return None  # the entries of ``rows``


class TowerScorer(Scorer):
    """Scores from a two-tower model's towers, one batch of users at a time.  A sequence user tower reads each
    user's last ratings of ``history_frame`` (the training frame) as the query (the model's ``query_table``).
    Memory: the two embedding tables, plus ``4 B M`` bytes (float32) for a batch's rows."""

    def __init__(self, model, history_frame: pd.DataFrame | None = None) -> None:
        self._use(model.query_table(history_frame), model.movie_tower.embed_all())

    @classmethod
    def from_tables(cls, user_table, movie_table) -> TowerScorer:
        """A scorer straight from the two tables (row i: id i, row 0 out-of-vocabulary), e.g. random ones of
        MovieLens 25M's shape in ``benchmarks/bench_evaluation.py``."""
        scorer = cls.__new__(cls)
        scorer._use(user_table, movie_table)
        return scorer

    def _use(self, user_table, movie_table) -> None:
        self.user_table = tf.convert_to_tensor(user_table, tf.float32)
        self.movie_table = tf.convert_to_tensor(movie_table, tf.float32)
        self.shape = (int(self.user_table.shape[0]), int(self.movie_table.shape[0]))
        self._candidates = {self.shape[1] - 1: self.movie_table[1:]}

    def rows(self, users: np.ndarray, width: int | None = None) -> tf.Tensor:
        """``[B, width]``: the users' embeddings against the catalogue (padded with zero vectors up to
        ``width``), one matrix product."""
        width = self.shape[1] - 1 if width is None else width
        if width not in self._candidates:
            self._candidates[width] = tf.pad(self.movie_table[1:], [[0, width - (self.shape[1] - 1)], [0, 0]])
        return tf.matmul(tf.gather(self.user_table, users), self._candidates[width], transpose_b=True)

    def positives(self, users: np.ndarray, movies: np.ndarray) -> tf.Tensor:
        """Each true movie's score computed as ``FactorizedTopK`` does (a row-wise sum, not the matrix
        product; the two can differ in the last bit)."""
        return tf.reduce_sum(tf.gather(self.user_table, users) * tf.gather(self.movie_table, movies), axis=1)


class MatrixScorer(Scorer):
    """Scores read from a ``[num_users + 1, num_movies + 1]`` score matrix (its dtype is kept: a float64
    baseline is ranked in float64, so near-ties are not merged by rounding)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores)
        self.shape = self.scores.shape

    def rows(self, users: np.ndarray, width: int | None = None) -> tf.Tensor:
        width = self.shape[1] - 1 if width is None else width
        rows = np.zeros((len(users), width), dtype=self.scores.dtype)
        rows[:, : self.shape[1] - 1] = self.scores[users, 1:]
        return tf.constant(rows)


def scorer_for(source, history_frame: pd.DataFrame | None = None) -> Scorer:
    """A scorer for a two-tower model (a sequence tower's queries from ``history_frame``), a score matrix, or a
    scorer (returned as it is)."""
    if isinstance(source, Scorer):
        return source
    if isinstance(source, np.ndarray):
        return MatrixScorer(source)
    if hasattr(source, "user_tower") and hasattr(source, "movie_tower"):
        return TowerScorer(source, history_frame)
    raise TypeError(f"cannot score with a {type(source).__name__}: pass a two-tower model or a score matrix")


def top_k_chunk(num_movies: int, k: int) -> int:
    """The chunk width of ``exact_top_k``: about sqrt(num_movies / k) balances its two small ``top_k`` calls
    (over ``num_movies / chunk`` chunk maxima, and over ``k * chunk`` candidates); 1 (a plain ``top_k``) when
    that saves nothing."""
    chunk = int(round(math.sqrt(num_movies / max(k, 1))))
    return chunk if chunk >= 2 and k * chunk * 2 <= num_movies else 1


def exact_top_k(rows: tf.Tensor, k: int, chunk: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``tf.math.top_k(rows[:, :width], k)`` (values and column indices, ties: the lower column first),
    exactly, but several times faster for k = 100 of 59,047 columns: view each row as contiguous chunks of
    ``chunk`` columns, keep the k chunks with the largest maxima, and ``top_k`` only their ``k * chunk``
    scores.  ``rows`` is ``[B, W]``, W a multiple of ``chunk`` (columns from ``width`` on are padding: the
    scorers make them in the same product, so no padded copy of the rows is needed).

    Why it is exact: a score outside the kept chunks lies in a chunk whose maximum is beaten (or tied by a
    chunk further left) by each of the k kept chunks' maxima, so k scores come before it.  The kept chunks are
    put back in column order, so ``top_k``'s tie-break (lower position first) is still the lower column."""
    if chunk <= 1:
        return tf.math.top_k(rows[:, :width], k)
    num_chunks = tf.shape(rows)[1] // chunk
    chunks = tf.reshape(rows, [-1, num_chunks, chunk])
    maxima = tf.reduce_max(chunks, axis=2)
    last = (width - 1) // chunk * chunk  # the last chunk's first column: its maximum must skip the padding
    maxima = tf.concat([maxima[:, :-1], tf.reduce_max(rows[:, last:width], axis=1, keepdims=True)], axis=1)
    kept = tf.sort(tf.math.top_k(maxima, k).indices, axis=1)
    columns = tf.reshape(kept[:, :, tf.newaxis] * chunk + tf.range(chunk), [-1, k * chunk])
    candidates = tf.reshape(tf.gather(chunks, kept, batch_dims=1), [-1, k * chunk])
    candidates = tf.where(columns < width, candidates, tf.constant(-np.inf, rows.dtype))
    top = tf.math.top_k(candidates, k)
    return top.values, tf.gather(columns, top.indices, batch_dims=1)


@tf.function(jit_compile=True)
def _first_rank(masked, best_score, best_column, width):
    """1 + how many of the first ``width`` columns come before (score, column) in the ranking: scored above
    it, or tied with it further left.  XLA fuses the comparisons into one pass over the rows."""
    columns = tf.range(tf.shape(masked)[1])[tf.newaxis, :]
    above = tf.logical_and(masked > best_score[:, tf.newaxis], columns < width)
    tied_left = tf.logical_and(tf.equal(masked, best_score[:, tf.newaxis]), columns < best_column[:, tf.newaxis])
    return 1 + tf.reduce_sum(tf.cast(tf.logical_or(above, tied_left), tf.int32), axis=1)


@tf.function(reduce_retracing=True)
def _rank_batch(rows, seen_at, row_of, columns, positives, seen_true, depth, chunk, width, options):
    """One user batch: mask the seen movies, keep the top ``depth``, count what beats each interaction.

    ``rows`` ``[B, M]``; ``seen_at`` ``[s, 2]`` (row, column) of the batch's seen movies; per interaction its
    row ``row_of``, column ``columns``, ``positives`` (the reference score of its movie) and ``seen_true`` (its
    movie is among the seen).  ``depth``, ``chunk`` and ``options`` (a tuple of flags: tfrs_compatible,
    unfiltered, first_ranks) are Python values, one trace each.  The top ``depth`` of the masked rows,
    ``[B, depth]`` column indices, always comes back, with what ``options`` asks for.  ``rows`` may be
    wider than ``width``, the catalogue: the columns beyond it are padding (``exact_top_k``).  A seen true
    movie's ``beating`` is ``width``: no filtered list shows it.
    """
    tfrs_compatible, unfiltered, first_ranks = options
    entries = tf.gather_nd(rows, tf.stack([row_of, columns], axis=1))
    # The true movie never counts against itself: its own entry can beat a row-wise positive by rounding
    # (TFRS's artefact, kept when ``tfrs_compatible``).
    self_beats = tf.cast(entries > positives, tf.int32)
    unseen_true = tf.logical_not(seen_true)
    minus_inf = tf.constant(-np.inf, rows.dtype)
    masked = tf.tensor_scatter_nd_update(rows, seen_at, tf.fill(tf.shape(seen_at)[:1], minus_inf))
    values, top = exact_top_k(masked, depth, chunk, width)
    counted = tf.reduce_sum(tf.cast(tf.gather(values, row_of) > positives[:, tf.newaxis], tf.int32), axis=1)
    # A true movie among the excluded is in no filtered list: a miss at every k (module docstring).
    beating = tf.where(seen_true, width, counted if tfrs_compatible else counted - self_beats)
    result = {"beating": beating, "top": top, "top_scores": values}
    if unfiltered:
        # Without the exclusions, what beats an interaction is what beats it among the unseen movies (counted
        # above) plus its user's seen movies that score above it: a binary search in each user's few sorted
        # seen scores, instead of a second top_k over the whole rows.
        batch = tf.shape(rows)[0]
        seen_scores = tf.RaggedTensor.from_value_rowids(tf.gather_nd(rows, seen_at), seen_at[:, 0], nrows=batch)
        lowest = tf.fill([batch, 1], minus_inf)  # a column that beats nothing, so no row is empty
        ascending = tf.sort(tf.concat([lowest, seen_scores.to_tensor(minus_inf)], axis=1), axis=1)
        queries = tf.RaggedTensor.from_value_rowids(positives, row_of, nrows=batch)
        padded = tf.concat([tf.zeros([batch, 1], rows.dtype), queries.to_tensor(0)], axis=1)
        above = tf.shape(ascending)[1] - tf.searchsorted(ascending, padded, side="right")
        seen_above = tf.RaggedTensor.from_tensor(above[:, 1:], lengths=queries.row_lengths()).flat_values
        result["beating_unfiltered"] = counted + seen_above - (0 if tfrs_compatible else self_beats)
    if first_ranks:
        # The full ranking's first unseen test movie: the best-scored one (ties: the lower movie id).  Its rank
        # is 1 + the masked scores above it + those tied with it further left: one pass over the rows, so the
        # MRR is exact without sorting the catalogue.
        batch = tf.shape(rows)[0]
        candidate = tf.where(unseen_true, entries, minus_inf)
        best_score = tf.math.unsorted_segment_max(candidate, row_of, batch)
        is_best = tf.logical_and(unseen_true, tf.equal(entries, tf.gather(best_score, row_of)))
        best_column = tf.math.unsorted_segment_min(tf.where(is_best, columns, width), row_of, batch)
        rank = _first_rank(masked, best_score, best_column, width)
        found = tf.math.unsorted_segment_max(tf.cast(unseen_true, tf.int32), row_of, batch) > 0
        result["first_rank"] = tf.where(found, rank, 0)  # 0: the user has no unseen test movie
    return result


@dataclass
class RankedUsers:
    """What ``rank_users`` found: the ranked ``users`` (sorted, distinct), their ``top`` movie ids
    ``[len(users), list_length]`` (seen movies last, ties: the lower id first) and their ``top_scores`` (a
    seen movie's is -inf), and, for the interactions of
    the frame in its own row order, the candidates ``beating`` each (with the exclusions; ``num_movies``, a
    miss at every k, for an interaction whose movie is excluded), the same ``beating_unfiltered`` (without
    them), and per user the ``first_rank`` of its best unseen frame movie in the whole filtered ranking (0
    when it has none)."""

    users: np.ndarray
    top: np.ndarray
    top_scores: np.ndarray
    beating: np.ndarray
    beating_unfiltered: np.ndarray | None = None
    first_rank: np.ndarray | None = None


def rank_users(
    source,
    users: np.ndarray,
    frame: pd.DataFrame | None = None,
    exclude=None,
    at_most: int | None = None,
    list_length: int = 0,
    user_batch: int = 1024,
    tfrs_compatible: bool = False,
    unfiltered: bool = False,
    first_ranks: bool = False,
    history_frame: pd.DataFrame | None = None,
) -> RankedUsers:
    """The counting core: score ``users`` ``user_batch`` at a time and keep each row's top only.

    ``frame``'s interactions (their users must be among ``users``) are grouped by user, so each user is scored
    once.  Their ``beating`` counts are exact below ``at_most`` (``None``: exact, at the price of sorting every
    row) and at least ``at_most`` otherwise, which decides every hit rate @k <= at_most.  ``exclude`` (None, a
    ``SeenMovies`` or a dense boolean matrix) is masked out, and an interaction whose movie it holds counts
    ``num_movies`` (in no filtered list); ``tfrs_compatible`` keeps ``FactorizedTopK``'s
    self-rounding artefact.  ``unfiltered`` also counts without the exclusions (the unseen movies' count plus
    a binary search in the user's sorted seen scores); ``first_ranks`` adds each user's exact first-hit rank
    (the MRR; one more pass over the rows).

    Memory: the batch's rows, about ``3 user_batch num_movies`` scores (see the module docstring), the
    ``SeenMovies`` and, for the results, ``8 (interactions + users x list_length)`` bytes.
    """
    scorer = scorer_for(source, history_frame)
    num_movies = scorer.shape[1] - 1
    if user_batch < 1:
        raise ValueError(f"user_batch must be at least 1, got {user_batch}")
    users = np.asarray(users, dtype=np.int64)
    if users.size and (np.any(np.diff(users) <= 0) or users[0] < 0 or users[-1] >= scorer.shape[0]):
        raise ValueError(f"users must be distinct sorted ids in 0..{scorer.shape[0] - 1}")
    if frame is None:
        frame = pd.DataFrame({"user_idx": np.zeros(0, np.int64), "movie_idx": np.zeros(0, np.int64)})
    frame_users = frame["user_idx"].to_numpy(np.int64)
    frame_movies = frame["movie_idx"].to_numpy(np.int64)
    _check_ids(frame_movies, num_movies, "movie_idx")
    order = np.argsort(frame_users, kind="stable")
    frame_users, frame_movies = frame_users[order], frame_movies[order]
    row_of = np.searchsorted(users, frame_users)
    if frame_users.size and (row_of.max() >= len(users) or np.any(users[row_of] != frame_users)):
        raise ValueError("every user of the frame must be among the users ranked")
    seen = as_seen(exclude, scorer.shape)
    seen_true = seen.contains(frame_users, frame_movies) if seen is not None else np.zeros(len(order), bool)
    at_most = num_movies if at_most is None else max(int(at_most), 1)
    depth = min(max(at_most + 1, list_length), num_movies)
    chunk = top_k_chunk(num_movies, depth)
    padded_width = -(-num_movies // chunk) * chunk
    options = (bool(tfrs_compatible), bool(unfiltered), bool(first_ranks))
    found: dict[str, list[np.ndarray]] = {}
    bounds = np.searchsorted(row_of, np.arange(0, len(users) + user_batch, user_batch))
    for number, start in enumerate(range(0, len(users), user_batch)):
        batch = users[start : start + user_batch]
        low, high = bounds[number], bounds[number + 1]
        rows = scorer.rows(batch, padded_width)
        at = tf.constant(np.stack([row_of[low:high] - start, frame_movies[low:high] - 1], axis=1), tf.int32)
        positives = scorer.positives(frame_users[low:high], frame_movies[low:high])
        if positives is None:
            positives = tf.gather_nd(rows, at)
        if seen is None:
            seen_at = np.zeros((0, 2), np.int64)
        else:
            positions, movies = seen.pairs(batch)
            seen_at = np.stack([positions, movies - 1], axis=1)[movies > 0]
        # the first batch compiles the XLA pass of _first_rank, which absl announces on stderr once per process
        quiet = filtered_stderr(XLA_INFO) if number == 0 and first_ranks else contextlib.nullcontext()
        with quiet:
            result = _rank_batch(
                rows,
                tf.constant(seen_at, tf.int32),
                at[:, 0],
                at[:, 1],
                tf.cast(positives, rows.dtype),
                tf.constant(seen_true[low:high]),
                depth,
                chunk,
                num_movies,
                options,
            )
        for name, value in result.items():
            found.setdefault(name, []).append(value.numpy())
    if not found:  # no users at all
        return RankedUsers(
            users, np.zeros((0, list_length), np.int64), np.zeros((0, list_length)), np.zeros(0, np.int64)
        )
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))

    def per_interaction(name: str) -> np.ndarray | None:
        return np.concatenate(found[name]).astype(np.int64)[restore] if name in found else None

    return RankedUsers(
        users=users,
        top=np.concatenate(found["top"])[:, :list_length].astype(np.int64) + 1,
        top_scores=np.concatenate(found["top_scores"])[:, :list_length],
        beating=per_interaction("beating"),
        beating_unfiltered=per_interaction("beating_unfiltered"),
        first_rank=np.concatenate(found["first_rank"]).astype(np.int64) if first_ranks else None,
    )


def candidates_beating(
    source,
    frame: pd.DataFrame,
    batch_size: int = 4096,
    exclude=None,
    tfrs_compatible: bool = False,
    at_most: int | None = None,
) -> np.ndarray:
    """For each interaction of ``frame``, how many catalogue movies score strictly above the true movie.

    ``source`` is a two-tower model, a score matrix or a scorer (``scorer_for``); ``batch_size`` users are
    scored at a time.  ``exclude`` (a ``SeenMovies`` or a ``seen_matrix``) marks movies not to count for the
    user; an interaction whose own movie is excluded counts ``num_movies``, a miss at every k, since no list
    without those movies can show it (module docstring).  The true movie itself is never counted:
    ``FactorizedTopK`` scores it twice (a row-wise sum and a matrix product), and when rounding makes the
    second larger the movie "beats itself" and drops a place.
    ``tfrs_compatible=True`` keeps that artefact, to reproduce ``FactorizedTopK`` number for number.  With
    ``at_most`` only the counts below it are exact (the others are ``at_most`` or more): a ``top_k`` of
    ``at_most + 1`` scores a row instead of a full sort.
    """
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    users = np.unique(frame["user_idx"].to_numpy(np.int64))
    ranked = rank_users(source, users, frame, exclude, at_most, 0, batch_size, tfrs_compatible)
    return ranked.beating


def hit_rates_from_counts(counts: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Top-k accuracy for each k: the share of interactions with fewer than k candidates above them."""
    if len(counts) == 0:
        return {k: float("nan") for k in ks}
    return {k: float(np.mean(counts < k)) for k in ks}


def topk_accuracy(
    source,
    frame: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    batch_size: int = 4096,
    exclude=None,
    tfrs_compatible: bool = False,
) -> dict[int, float]:
    """``FactorizedTopK``'s top-k categorical accuracy (per-interaction hit rate @k) over the whole
    catalogue, computed exactly and fast, for a two-tower model or a score matrix (``batch_size`` users at
    a time, the top ``max(ks) + 1`` of each row kept)."""
    counts = candidates_beating(source, frame, batch_size, exclude, tfrs_compatible, at_most=max(ks))
    return hit_rates_from_counts(counts, ks)


def filtered_topk_accuracy(
    source,
    train: pd.DataFrame,
    frame: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    batch_size: int = 4096,
) -> dict[int, float]:
    """Hit rate @k with each user's ``train`` movies left out of the ranking (the filtered protocol: a test
    movie the user rated in ``train`` is a miss, ``seen_test_rows``); a sequence user tower reads each user's
    ``train`` ratings as the query."""
    scorer = scorer_for(source, train)
    seen = SeenMovies.from_frame(train, scorer.shape[0] - 1, scorer.shape[1] - 1)
    return topk_accuracy(scorer, frame, ks, batch_size, exclude=seen)


def factorized_topk_reference(model, frame: pd.DataFrame, batch_size: int = 4096) -> dict[int, float]:
    """The same numbers the slow way: Keras ``evaluate`` with the TFRS task's ``FactorizedTopK``."""
    with filtered_stderr(TFDATA_REWRITE):  # the candidates' tf.data map, rewritten inside Keras's test function
        results = model.evaluate(interactions_dataset(frame, batch_size, shuffle=False), return_dict=True, verbose=0)
    found = {re.search(r"top_(\d+)_categorical", key): value for key, value in results.items()}
    return {int(match.group(1)): float(value) for match, value in found.items() if match}


def metric_name(k: int, prefix: str = "") -> str:
    """The Keras/TFRS history key for top-k accuracy (``val_`` prefix for the test set)."""
    return f"{prefix}factorized_top_k/top_{k}_categorical_accuracy"
