"""Export a trained two-tower model as a TensorFlow SavedModel that any TensorFlow runtime can query
(``tf.saved_model.load``, ``saved_model_cli``, TF Serving), and load it back.

What the export holds (no Keras, no TFRS: a plain ``tf.Module``):

* the towers' outputs for every id, as two tables: ``user_embeddings [users + 1, d]`` and
  ``movie_embeddings [movies + 1, d]`` (row 0 is the out-of-vocabulary slot).  Our towers map an *id* to a
  vector (side features are looked up by id too), so these tables are the towers, exactly; and a model
  that holds ``FactorizedTopK`` cannot be saved at all (TFRS #589);
* two string lookups (user id → row, movie title → row);
* each user's training movies, as a ragged table (row offsets + movie rows), removed at query time
  (TFRS #629 has no answer for this); for a catalogue small enough (``DENSE_SEEN_BYTES``) also as a
  ``[users + 1, movies + 1]`` bool table, which is what the query reads then (far cheaper than scattering);
* the movies' training counts, the fallback list for a user the model has never seen (TFRS #616);
* an index over the movie vectors: ``"exact"`` (matrix product + top-k) or ``"scann"`` (ScaNN's TensorFlow
  ops; loading needs ``import scann`` first, TFRS #182).

Signatures (``k`` is an input, never frozen as in a saved ``BruteForce``/``ScaNN`` layer, TFRS #196, #744):

* ``serving_default(user_id: string [B], k: int32 [])`` → ``movie_titles`` string ``[B, k]``, ``scores``
  float ``[B, k]``, ``cold_start`` bool ``[B]``.  The user's training movies are left out.  A user id the
  model does not know gets the most popular movies, ``cold_start`` true and the movies' training counts as
  scores;
* ``recommend_including_seen``: the same, nothing left out;
* ``similar_movies(title: string [B], k: int32 [])`` → ``similar_titles`` ``[B, k]``, ``scores`` (cosine
  similarity of the movie vectors) ``[B, k]``, ``unknown_title`` bool ``[B]`` (its row is empty).

``k`` below 1 is an error (``InvalidArgumentError: k must be at least 1``); ``k`` above what a row can
hold is clamped (to the catalogue, one less for ``similar_movies``); when the left-out movies leave
fewer than ``k``, the missing slots have an empty title and score 0.  An empty batch gets an empty answer
(``[0, k]``) from both index kinds.

Layout (what TF Serving expects): ``<export_dir>/<version>/saved_model.pb`` + ``variables/``, and
``assets.extra/twotower.json`` with what the command line needs (index kind, catalogue size, id format).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.data.movielens import MovieLens
from twotower_utils.evaluation.baselines import popularity_scores
from twotower_utils.runtime import tensorflow_warnings_only
from twotower_utils.serving.index import ScannOptions, build_scann, default_scann_options
from twotower_utils.serving.loaded import (  # noqa: F401  (loading lives in serving.loaded; these names stay here)
    HOW_TO_EXPORT,
    METADATA_PATH,
    SIGNATURES,
    ExportError,
    LoadedModel,
    load_export,
    read_metadata,
    resolve_export,
    result_rows,
)
from twotower_utils.serving.recommend import recommend

INDEX_KINDS = ("exact", "scann")
FORMAT_VERSION = 1


@dataclass
class ServingTables:
    """Everything the export needs, as NumPy arrays (row 0 of each table is the out-of-vocabulary slot)."""

    user_ids: np.ndarray  # [U] strings, row i + 1 of user_embeddings
    user_embeddings: np.ndarray  # [U + 1, d]
    movie_titles: np.ndarray  # [M] strings, row j + 1 of movie_embeddings
    movie_embeddings: np.ndarray  # [M + 1, d]
    seen_offsets: np.ndarray  # [U + 2]: user u's training movies are seen_movies[offsets[u]:offsets[u + 1]]
    seen_movies: np.ndarray  # [training interactions] movie rows, grouped by user
    popular_movies: np.ndarray  # [M] movie rows by training count, most first (ties: lower row first)
    movie_counts: np.ndarray  # [M + 1] training interactions per movie row

    @property
    def num_movies(self) -> int:
        return len(self.movie_titles)


def serving_tables(model, data: MovieLens, train: pd.DataFrame) -> ServingTables:
    """The tables of a trained two-tower model: tower outputs for every id, the users' training movies
    (``train``, with ``user_idx``/``movie_idx``) and the movies' training counts."""
    users = model.user_tower.embed_all().numpy().astype(np.float32)
    movies = model.movie_tower.embed_all().numpy().astype(np.float32)
    pairs = train[["user_idx", "movie_idx"]].drop_duplicates().sort_values(["user_idx", "movie_idx"])
    counts = np.bincount(pairs["user_idx"].to_numpy(), minlength=data.num_users + 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    popularity = popularity_scores(train, 1, data.num_movies)[0, 1:]  # every user gets the same list
    return ServingTables(
        user_ids=np.asarray(data.user_vocabulary, dtype=str),
        user_embeddings=users,
        movie_titles=np.asarray(data.movie_vocabulary, dtype=str),
        movie_embeddings=movies,
        seen_offsets=offsets,
        seen_movies=pairs["movie_idx"].to_numpy().astype(np.int64),
        popular_movies=np.argsort(-popularity, kind="stable").astype(np.int64) + 1,
        movie_counts=np.bincount(train["movie_idx"].to_numpy(), minlength=data.num_movies + 1).astype(np.float32),
    )


def id_pattern(ids: np.ndarray) -> str:
    """The format every known id has, for telling a malformed id from an unknown one: whole numbers when
    all ids are (MovieLens), otherwise any text without surrounding spaces."""
    if len(ids) and all(re.fullmatch(r"[0-9]+", str(i)) for i in ids):
        return r"[0-9]+"
    return r"\S(.*\S)?"


# The users' training movies are also held as a [users + 1, movies + 1] bool table when it is at most this
# big (1.6 MB for MovieLens 100K): a row gathered per user is far cheaper at query time than scattering the
# ragged lists into the scores (the ragged table stays: ScaNN's widening reads its lengths).
DENSE_SEEN_BYTES = 64 * 2**20

_STRINGS = tf.TensorSpec([None], tf.string)
_K = tf.TensorSpec([], tf.int32)


class Recommender(tf.Module):
    """The exported module: tables, lookups, an index, and ``tf.function``s with ``k`` as an input."""

    def __init__(self, tables: ServingTables, index: str = "exact", scann: ScannOptions | None = None) -> None:
        super().__init__(name="twotower_recommender")
        if index not in INDEX_KINDS:
            raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
        self.index_kind = index
        self.num_movies = tables.num_movies
        self.user_embeddings = tf.Variable(tables.user_embeddings, trainable=False, name="user_embeddings")
        self.movie_embeddings = tf.Variable(tables.movie_embeddings, trainable=False, name="movie_embeddings")
        unit = tf.math.l2_normalize(tables.movie_embeddings, axis=1).numpy()
        self.movie_unit = tf.Variable(unit, trainable=False, name="movie_unit_vectors")
        self.titles = tf.Variable(["", *tables.movie_titles.tolist()], trainable=False, name="titles")
        self.user_ids = tf.Variable(["", *tables.user_ids.tolist()], trainable=False, name="user_ids")
        self.seen_offsets = tf.Variable(tables.seen_offsets, trainable=False, name="seen_offsets")
        self.seen_movies = tf.Variable(tables.seen_movies, trainable=False, name="seen_movies")
        self.popular_movies = tf.Variable(tables.popular_movies, trainable=False, name="popular_movies")
        self.movie_counts = tf.Variable(tables.movie_counts, trainable=False, name="movie_counts")
        self.dense_seen = (len(tables.user_ids) + 1) * (tables.num_movies + 1) <= DENSE_SEEN_BYTES
        if self.dense_seen:
            self.seen_mask = tf.Variable(_seen_mask(tables), trainable=False, name="seen_mask")
        self.user_lookup = _lookup(tables.user_ids)
        self.title_lookup = _lookup(tables.movie_titles)
        if index == "scann":
            self.scann_options = scann or default_scann_options(tables.num_movies)
            tag = uuid.uuid4().hex  # names the searcher resources of this export (see _ScannIndex)
            self.user_index = _ScannIndex(build_scann(tables.movie_embeddings[1:], self.scann_options, api="tf"), tag)
            self.movie_index = _ScannIndex(build_scann(unit[1:], self.scann_options, api="tf"), tag + "-movies")

    # --- recommendations for users -------------------------------------------------------------------
    @tf.function(input_signature=[_STRINGS, _K])
    def serve(self, user_id, k):
        """``serving_default``: top-``k`` titles per user id, the user's training movies left out."""
        return self._recommend(user_id, k, exclude_seen=True)

    @tf.function(input_signature=[_STRINGS, _K])
    def serve_including_seen(self, user_id, k):
        """``recommend_including_seen``: top-``k`` titles per user id, nothing left out."""
        return self._recommend(user_id, k, exclude_seen=False)

    def _recommend(self, user_id, k, exclude_seen: bool):
        k = _checked_k(k, self.num_movies)
        users = self.user_lookup.lookup(user_id)
        cold = tf.equal(users, 0)
        if exclude_seen:
            starts = tf.gather(self.seen_offsets, users)
            counts = tf.gather(self.seen_offsets, users + 1) - starts
            if self.dense_seen:
                seen = tf.gather(self.seen_mask, users)
            else:
                rows = tf.ragged.range(starts, starts + counts)
                seen = tf.RaggedTensor.from_row_lengths(tf.gather(self.seen_movies, rows.flat_values), counts)
        else:
            counts, seen = tf.zeros_like(users), None
        queries = tf.gather(self.user_embeddings, users)
        if self.index_kind == "exact":
            scores, rows = self._exact(queries, self.movie_embeddings, seen, k)
        else:
            scores, rows = self._scann(queries, self.user_index, seen, k, _largest(counts))
        popular = self.popular_movies[tf.newaxis, :k]
        cold_rows = cold[:, tf.newaxis]
        scores = tf.where(cold_rows, tf.gather(self.movie_counts, popular), scores)
        rows = tf.where(cold_rows, popular, rows)
        titles, scores = self._titles(rows, scores)
        return {"movie_titles": titles, "scores": scores, "cold_start": cold}

    # --- movies like a movie -------------------------------------------------------------------------
    @tf.function(input_signature=[_STRINGS, _K])
    def similar_movies(self, title, k):
        """The ``k`` movies whose vectors point most nearly the same way (cosine), the movie itself left out."""
        k = _checked_k(k, self.num_movies - 1)
        movies = self.title_lookup.lookup(title)
        unknown = tf.equal(movies, 0)
        itself = tf.RaggedTensor.from_row_lengths(movies, tf.ones_like(movies))
        queries = tf.gather(self.movie_unit, movies)
        if self.index_kind == "exact":
            scores, rows = self._exact(queries, self.movie_unit, itself, k)
        else:
            scores, rows = self._scann(queries, self.movie_index, itself, k, tf.constant(1, tf.int64))
        scores = tf.where(unknown[:, tf.newaxis], -np.inf, scores)  # an unknown title's row stays empty
        titles, scores = self._titles(rows, scores)
        return {"similar_titles": titles, "scores": scores, "unknown_title": unknown}

    # --- the two index kinds -------------------------------------------------------------------------
    def _masked(self, scores):
        """Column 0 (the out-of-vocabulary row) can never be recommended."""
        column = tf.one_hot(0, tf.shape(scores)[1], on_value=-np.inf, off_value=0.0)
        return scores + column

    def _exact(self, queries, table, exclude, k):
        """``exclude``: ragged movie rows per query, or a dense ``[B, M + 1]`` bool table (column 0 set)."""
        scores = tf.matmul(queries, table, transpose_b=True)
        if exclude is None or isinstance(exclude, tf.RaggedTensor):
            scores = self._masked(scores)
        if isinstance(exclude, tf.RaggedTensor):
            scores = _remove(scores, exclude)
        elif exclude is not None:
            scores = tf.where(exclude, -np.inf, scores)
        values, rows = tf.math.top_k(scores, k=k)
        return values, tf.cast(rows, tf.int64)

    def _scann(self, queries, index, exclude, k, most_excluded):
        """ScaNN's top ``k + most_excluded`` (rows 1..M are its candidates 0..M-1), the excluded ones removed,
        the best ``k`` kept.  Left-out movies widen the search: the leaves searched grow with the number
        of neighbours asked for, so that they hold about twice as many candidates."""
        options = self.scann_options
        wanted = tf.minimum(tf.cast(k, tf.int64) + most_excluded, self.num_movies)
        per_leaf = self.num_movies / options.num_leaves
        leaves = tf.cast(tf.math.ceil(2.0 * tf.cast(wanted, tf.float64) / per_leaf), tf.int32)
        leaves = tf.clip_by_value(tf.maximum(leaves, options.leaves_to_search), 1, options.num_leaves)
        wanted = tf.cast(wanted, tf.int32)
        searcher = index.searcher()
        # ScaNN fails on an empty batch (which a TF Serving batcher can send): search one zero vector, keep none
        batch = tf.shape(queries)[0]
        queries = tf.cond(
            tf.equal(batch, 0), lambda: tf.zeros([1, tf.shape(queries)[1]], queries.dtype), lambda: queries
        )
        found, scores = searcher.search_batched(
            queries,
            final_num_neighbors=wanted,
            pre_reorder_num_neighbors=tf.maximum(wanted, options.reorder),
            leaves_to_search=leaves,
        )
        found, scores = found[:batch], scores[:batch]
        rows = tf.cast(found, tf.int64) + 1  # ScaNN's -1 (no neighbour) becomes 0, the masked row
        valid = tf.greater(rows, 0)
        if isinstance(exclude, tf.RaggedTensor):
            valid = valid & ~_contains(rows, exclude)
        elif exclude is not None:
            valid = valid & ~tf.gather(exclude, rows, batch_dims=1)
        scores = tf.where(valid, scores, -np.inf)
        width = tf.shape(scores)[1]
        scores = tf.pad(scores, [[0, 0], [0, tf.maximum(k - width, 0)]], constant_values=-np.inf)
        rows = tf.pad(rows, [[0, 0], [0, tf.maximum(k - width, 0)]])
        values, position = tf.math.top_k(scores, k=k)
        return values, tf.gather(rows, position, batch_dims=1)

    def _titles(self, rows, scores):
        """Titles for movie rows; a slot with no movie (score -inf) gets an empty title and score 0."""
        valid = tf.math.is_finite(scores)
        titles = tf.where(valid, tf.gather(self.titles, rows), "")
        return titles, tf.where(valid, scores, 0.0)


class _ScannIndex(tf.Module):
    """A ScaNN searcher's state (ScaNN's ``ScannState`` variables) and how to rebuild the searcher from it.

    ScaNN's own ``recreate_handle`` leaves the resource's ``shared_name`` empty, so TensorFlow names the
    searcher after its graph node, the same in every index: in one process the first searcher built is
    then handed to every index (``similar_movies`` got the user index's searcher whenever a
    recommendation came first).  A name unique to the index and the export keeps them apart, also when
    several exports are loaded side by side (as TF Serving does with versions)."""

    def __init__(self, searcher, tag: str) -> None:
        super().__init__()
        self.state = searcher.serialize_to_module()
        self.shared_name = f"twotower-scann-{tag}"

    @tf.function(input_signature=[])
    def handle(self):
        from scann.scann_ops.py import scann_ops

        s = self.state
        return scann_ops.tensors_to_scann(
            s.dataset, s.scann_config, s.serialized_partitioner, s.datapoint_to_token, s.ah_codebook,
            s.hashed_dataset, s.int8_dataset, s.int8_multipliers, s.dp_norms, shared_name=self.shared_name,
        )  # fmt: skip

    def searcher(self):
        from scann.scann_ops.py import scann_ops

        return scann_ops.ScannSearcher(self.handle())


def _seen_mask(tables: ServingTables) -> np.ndarray:
    """``[users + 1, movies + 1]``: True at each user's training movies and at column 0 (no movie)."""
    users = len(tables.seen_offsets) - 1
    mask = np.zeros((users, tables.num_movies + 1), dtype=bool)
    mask[np.repeat(np.arange(users), np.diff(tables.seen_offsets)), tables.seen_movies] = True
    mask[:, 0] = True
    return mask


def _lookup(keys: np.ndarray) -> tf.lookup.StaticHashTable:
    """String → row (``i + 1`` for ``keys[i]``), 0 for anything else."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys.tolist(), tf.string), tf.range(1, len(keys) + 1, dtype=tf.int64)
    )
    return tf.lookup.StaticHashTable(initializer, default_value=0)


def _checked_k(k, most):
    tf.debugging.assert_positive(k, message="k must be at least 1")
    return tf.minimum(k, most)


def _largest(values):
    """The largest entry of a vector, 0 for an empty one."""
    return tf.reduce_max(tf.concat([values, tf.zeros([1], values.dtype)], axis=0))


def _remove(scores, exclude: tf.RaggedTensor):
    """``scores [B, M + 1]`` with ``-inf`` at each row's excluded columns."""
    rows = exclude.value_rowids()
    indices = tf.stack([rows, exclude.flat_values], axis=1)
    return tf.tensor_scatter_nd_update(scores, indices, tf.fill(tf.shape(rows), -np.inf))


def _contains(rows, exclude: tf.RaggedTensor):
    """``[B, W]``: is ``rows[b, w]`` one of row b's excluded movies?"""
    width = tf.maximum(tf.reduce_max(rows) + 1, _largest(exclude.flat_values) + 1)
    mask = _remove(tf.zeros(tf.stack([tf.shape(rows)[0], tf.cast(width, tf.int32)])), exclude)
    return tf.math.is_inf(tf.gather(mask, rows, batch_dims=1))


def export_model(
    model,
    data: MovieLens,
    train: pd.DataFrame,
    export_dir: str | os.PathLike,
    index: str = "exact",
    version: int | None = None,
    config=None,
    scann: ScannOptions | None = None,
) -> Path:
    """Write ``model`` as ``<export_dir>/<version>/`` (next free version by default) and return that folder.

    ``train`` holds the interactions left out at query time and counted for the cold-start list; ``config``
    (a ``config.RunConfig``) is recorded in the metadata.  The version folder appears whole or not at all."""
    tables = serving_tables(model, data, train)
    base = Path(export_dir)
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be a whole number >= 1, got {version}")
    target = base / str(version)
    if target.exists():
        raise FileExistsError(f"{target} exists already; choose another version or remove it")
    module = Recommender(tables, index, scann)
    signatures = {
        "serving_default": module.serve,
        "recommend_including_seen": module.serve_including_seen,
        "similar_movies": module.similar_movies,
    }
    options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]) if index == "scann" else None
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=base, prefix=f".staging-{version}-"))  # TF Serving skips non-numbers
    try:
        with tensorflow_warnings_only():
            tf.saved_model.save(module, str(staging), signatures=signatures, options=options)
        metadata = {
            "format": FORMAT_VERSION,
            "index": index,
            "scann": module.scann_options.to_dict() if index == "scann" else None,
            "num_users": len(tables.user_ids),
            "num_movies": tables.num_movies,
            "embedding_dim": int(tables.movie_embeddings.shape[1]),
            "seen_pairs": len(tables.seen_movies),  # distinct (user, movie) training pairs left out
            "user_id_pattern": id_pattern(tables.user_ids),
            "example_user_id": str(tables.user_ids[0]),
            "signatures": list(SIGNATURES),
            "config": None if config is None else config.to_dict(),
        }
        (staging / METADATA_PATH).parent.mkdir(parents=True, exist_ok=True)
        (staging / METADATA_PATH).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        for folder, _, files in os.walk(staging):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def next_version(export_dir: Path) -> int:
    """One more than the highest numbered version folder (1 for a new export directory)."""
    versions = [int(p.name) for p in Path(export_dir).glob("*") if p.name.isdigit() and p.is_dir()]
    return max(versions, default=0) + 1


RELOAD_SCRIPT = Path(__file__).with_name("reload_check.py")


def query_in_fresh_process(path: str | os.PathLike, user_ids, titles, k: int = 10, timeout: float = 300) -> dict:
    """Load the export in a new Python process that imports only TensorFlow (and ScaNN for a ScaNN export),
    query every signature and return its answer (``reload_check.py``).  ``python -I`` ignores PYTHONPATH,
    so the process could not import this package's copy even by accident."""
    import subprocess
    import sys

    request = {"path": str(resolve_export(path)), "user_ids": list(user_ids), "titles": list(titles), "k": int(k)}
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    completed = subprocess.run(
        [sys.executable, "-I", str(RELOAD_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise ExportError(f"the fresh process could not query '{path}':\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


def reload_check(
    model, data: MovieLens, train: pd.DataFrame, path: str | os.PathLike, user_ids, titles, k: int = 10
) -> dict:
    """Query the export in a fresh process and compare it with the in-memory ``model``.

    ``user_ids`` may include ids the model does not know (they must get the cold-start list).  Returns,
    for the known users: whether the exported lists are identical to ``serving.recommend.recommend``'s
    (training movies left out, and with them kept), recall@k of the exported lists against those, the
    largest score difference; for the unknown ones whether they got the most-popular list with the flag
    set; for ``titles`` the same comparison against an exact cosine search; and the modules the process
    imported."""
    answer = query_in_fresh_process(path, user_ids, titles, k)
    vocabulary = set(data.user_vocabulary.tolist())
    known = [u for u in user_ids if u in vocabulary]
    unknown = [u for u in user_ids if u not in vocabulary]
    position = {u: i for i, u in reversed(list(enumerate(user_ids)))}
    result = {"modules": answer["modules"], "signatures": answer["signatures"]}
    for name, exclude in (("serving_default", train), ("recommend_including_seen", None)):
        expected = recommend(model, data, known, k, exclude=exclude).groupby("user_id", sort=False)
        expected_titles = [expected.get_group(u)["movie_title"].tolist() for u in known]
        expected_scores = [expected.get_group(u)["score"].to_numpy() for u in known]
        exported = answer[name]
        got_titles = [exported["movie_titles"][position[u]] for u in known]
        got_scores = [np.asarray(exported["scores"][position[u]]) for u in known]
        result[name] = {
            "identical_lists": got_titles == expected_titles,
            "lists_differing_beyond_ties": _beyond_ties(got_titles, got_scores, expected_titles, expected_scores),
            "recall@k": _recall(got_titles, expected_titles),
            "max_score_difference": _score_gap(got_titles, got_scores, expected_titles, expected_scores),
            "known_users_flagged_cold": int(sum(exported["cold_start"][position[u]] for u in known)),
        }
        if unknown:
            popular = popularity_scores(train, 1, data.num_movies)[0, 1:]
            top = [data.movie_vocabulary[j] for j in np.argsort(-popular, kind="stable")[:k]]
            result[name]["unknown_users_get_most_popular"] = all(
                exported["movie_titles"][position[u]] == top and exported["cold_start"][position[u]] for u in unknown
            )
    result["similar_movies"] = _similar_check(model, data, titles, answer["similar_movies"], k)
    return result


def _recall(found: list[list[str]], expected: list[list[str]]) -> float:
    hits = sum(len(set(f) & set(e)) for f, e in zip(found, expected, strict=True))
    return hits / max(1, sum(len(e) for e in expected))


def _beyond_ties(got_titles, got_scores, expected_titles, expected_scores, tolerance: float = 1e-5) -> int:
    """How many lists differ by more than the order of near-equal scores: a list counts as the same when
    the scores at every rank agree within ``tolerance`` (two movies whose scores differ in the last bits
    may swap places between NumPy's and TensorFlow's arithmetic)."""
    differing = 0
    for gt, gs, et, es in zip(got_titles, got_scores, expected_titles, expected_scores, strict=True):
        if gt != et and (len(gt) != len(et) or not np.allclose(gs, es, rtol=0, atol=tolerance)):
            differing += 1
    return differing


def _score_gap(got_titles, got_scores, expected_titles, expected_scores) -> float:
    """Largest difference between the exported and the in-memory score of the same (user, movie)."""
    gap = 0.0
    for gt, gs, et, es in zip(got_titles, got_scores, expected_titles, expected_scores, strict=True):
        expected = dict(zip(et, es, strict=True))
        for title, score in zip(gt, gs, strict=True):
            if title in expected:
                gap = max(gap, abs(float(score) - float(expected[title])))
    return gap


def _similar_check(model, data: MovieLens, titles, exported: dict, k: int) -> dict:
    """Exported ``similar_movies`` against an exact cosine search of the in-memory movie tower."""
    vectors = model.movie_tower.embed_all().numpy()
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    vocabulary = set(data.movie_vocabulary.tolist())
    rows = [i for i, t in enumerate(titles) if t in vocabulary]
    movies = np.searchsorted(data.movie_vocabulary, [titles[i] for i in rows]) + 1
    scores = unit[movies] @ unit[1:].T
    scores[np.arange(len(rows)), movies - 1] = -np.inf  # the movie itself
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    expected = [[data.movie_vocabulary[j] for j in row] for row in order]
    expected_scores = list(np.take_along_axis(scores, order, axis=1))
    got = [exported["similar_titles"][i] for i in rows]
    got_scores = [np.asarray(exported["scores"][i]) for i in rows]
    unknown_rows = [i for i, t in enumerate(titles) if t not in vocabulary]
    return {
        "identical_lists": got == expected,
        "lists_differing_beyond_ties": _beyond_ties(got, got_scores, expected, expected_scores),
        "recall@k": _recall(got, expected),
        "unknown_titles_flagged": all(exported["unknown_title"][i] for i in unknown_rows),
        "unknown_rows_empty": all(not any(exported["similar_titles"][i]) for i in unknown_rows),
    }
