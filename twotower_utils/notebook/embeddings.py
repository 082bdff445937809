"""What the movie embeddings learned: cosine nearest neighbours, genre structure, 2-D projections,
and a TSV export for the TensorBoard Embedding Projector (https://projector.tensorflow.org)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from twotower_utils.data.movielens import MovieLens


def movie_vectors(model) -> np.ndarray:
    """``[num_movies, dim]`` embeddings, row ``i`` for ``data.movie_vocabulary[i]`` (the OOV row dropped)."""
    return np.asarray(model.movie_tower.embed_all())[1:]


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so dot products are cosine similarities."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def title_index(data: MovieLens, title: str) -> int:
    """Row of ``title`` in ``data.movie_vocabulary``; a clear error with close titles when unknown."""
    position = int(np.searchsorted(data.movie_vocabulary, title))
    if position < data.num_movies and data.movie_vocabulary[position] == title:
        return position
    words = title.split("(")[0].strip().lower()
    close = [t for t in data.movie_vocabulary if words and words in t.lower()][:5]
    raise KeyError(f"unknown movie title {title!r}" + (f"; did you mean {close}?" if close else ""))


def nearest_neighbours(vectors: np.ndarray, data: MovieLens, title: str, k: int = 5) -> pd.DataFrame:
    """The ``k`` movies most cosine-similar to ``title`` (itself excluded), best first."""
    unit = normalise(vectors)
    query = title_index(data, title)
    similarity = unit @ unit[query]
    similarity[query] = -np.inf
    order = np.argsort(-similarity, kind="stable")[:k]
    return pd.DataFrame(
        {"rank": np.arange(1, len(order) + 1), "movie_title": data.movie_vocabulary[order], "cosine": similarity[order]}
    )


def neighbour_table(vectors_by_name: dict[str, np.ndarray], data: MovieLens, titles: Sequence[str], k: int = 5):
    """Side by side: for each title and each named set of vectors (e.g. one per dimension), the ``k`` neighbours."""
    columns = {}
    for title in titles:
        for name, vectors in vectors_by_name.items():
            found = nearest_neighbours(vectors, data, title, k)
            columns[(title, name)] = [
                f"{t} ({c:.2f})" for t, c in zip(found["movie_title"], found["cosine"], strict=True)
            ]
    table = pd.DataFrame(columns, index=pd.RangeIndex(1, k + 1, name="rank"))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def movie_genres(data: MovieLens) -> list[set[str]]:
    """Genre names of each title in ``data.movie_vocabulary`` (titles listed twice get both entries' genres)."""
    genres: dict[str, set[str]] = {title: set() for title in data.movie_vocabulary}
    if "movie_genres" in data.movies:
        names = data.genre_names
        for title, ids in zip(data.movies["movie_title"], data.movies["movie_genres"], strict=True):
            for i in ids:
                genres[title].add(names[int(i)] if names and int(i) < len(names) else str(int(i)))
    return [genres[title] for title in data.movie_vocabulary]


def primary_genre(genres: list[set[str]], shown: Sequence[str]) -> list[str]:
    """One label per movie for colouring: the first of ``shown`` it has, else ``"other"``."""
    return [next((g for g in shown if g in movie), "other") for movie in genres]


def genre_agreement(
    vectors: np.ndarray, genres: list[set[str]], k: int = 10, movies: np.ndarray | None = None
) -> float:
    """Share of each movie's ``k`` cosine neighbours that share at least one genre with it, averaged.

    ``movies`` restricts the queries (e.g. to movies with enough ratings); neighbours come from all movies.
    """
    unit = normalise(vectors)
    queries = np.arange(len(unit)) if movies is None else np.asarray(movies)
    similarity = unit[queries] @ unit.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    shares = [np.mean([bool(genres[q] & genres[n]) for n in row]) for q, row in zip(queries, neighbours, strict=True)]
    return float(np.mean(shares))


def genre_agreement_by_chance(genres: list[set[str]], movies: np.ndarray | None = None, seed: int = 0) -> float:
    """The same share for random neighbours: what ``genre_agreement`` would give without structure."""
    rng = np.random.default_rng(seed)
    queries = np.arange(len(genres)) if movies is None else np.asarray(movies)
    others = rng.integers(0, len(genres), size=(len(queries), 50))
    return float(np.mean([[bool(genres[q] & genres[o]) for o in row] for q, row in zip(queries, others, strict=True)]))


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 42) -> np.ndarray:
    """``[n, 2]`` coordinates: PCA (numpy SVD of the centred vectors) or t-SNE (scikit-learn, on cosine)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.shape[1] < 2:
        return np.column_stack([vectors[:, 0], np.zeros(len(vectors))])
    if method == "pca":
        centred = vectors - vectors.mean(axis=0)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        return u[:, :2] * s[:2]
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(vectors) - 1) / 3))
        tsne = TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity, random_state=seed)
        return tsne.fit_transform(normalise(vectors))
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def explained_variance(vectors: np.ndarray, components: int = 2) -> float:
    """Share of the variance the first ``components`` principal components keep."""
    centred = np.asarray(vectors, dtype=np.float64) - np.mean(vectors, axis=0)
    s = np.linalg.svd(centred, compute_uv=False) ** 2
    return float(s[:components].sum() / s.sum()) if s.sum() > 0 else 0.0


def plot_projection(coords: np.ndarray, labels: Sequence[str], title: str = "", ax=None, annotate: dict | None = None):
    """Scatter of 2-D coordinates coloured by label ("other" in light grey, drawn first)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6.5, 5.5))[1]
    labels = np.asarray(labels)
    kinds = [k for k in dict.fromkeys(labels) if k != "other"]
    if "other" in labels:
        mask = labels == "other"
        ax.scatter(coords[mask, 0], coords[mask, 1], s=6, c="lightgrey", label="other")
    for i, kind in enumerate(kinds):
        mask = labels == kind
        ax.scatter(coords[mask, 0], coords[mask, 1], s=9, color=plt.cm.tab10(i % 10), label=kind, alpha=0.8)
    for text, (x, y) in (annotate or {}).items():
        ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    return ax.figure


def export_projector(
    vectors: np.ndarray, data: MovieLens, folder: str | os.PathLike, ratings_per_movie: pd.Series | None = None
) -> tuple[Path, Path]:
    """``vectors.tsv`` and ``metadata.tsv`` (title, genres, ratings) to load in the Embedding Projector."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vectors_path, metadata_path = folder / "vectors.tsv", folder / "metadata.tsv"
    np.savetxt(vectors_path, np.asarray(vectors), delimiter="\t", fmt="%.6f")
    metadata = pd.DataFrame(
        {
            "title": data.movie_vocabulary,
            "genres": ["|".join(sorted(g)) for g in movie_genres(data)],
        }
    )
    if ratings_per_movie is not None:
        metadata["ratings"] = ratings_per_movie.reindex(data.movie_vocabulary).fillna(0).astype(int).to_numpy()
    metadata.to_csv(metadata_path, sep="\t", index=False)
    return vectors_path, metadata_path
