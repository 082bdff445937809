"""Nearest neighbours, genre structure, projections and the projector export, on hand-made vectors."""

import numpy as np
import pytest

from twotower_utils.notebook import embeddings as emb
from twotower_utils.training import build_for


def _group_vectors(data, groups: int, noise: float = 0.01, seed: int = 0):
    """Movie ``m`` points along axis ``m % groups``, plus a little noise."""
    rng = np.random.default_rng(seed)
    movie = np.array([int(t.split()[1]) for t in data.movie_vocabulary])
    vectors = np.eye(groups)[movie % groups] + noise * rng.standard_normal((len(movie), groups))
    return vectors, movie


def test_nearest_neighbours_are_the_same_group_by_cosine(tiny_data):
    vectors, movie = _group_vectors(tiny_data, 4)
    vectors *= np.linspace(1, 5, len(vectors))[:, None]  # lengths must not matter: cosine
    found = emb.nearest_neighbours(vectors, tiny_data, "Movie 00 (1990)", k=5)
    assert found["rank"].tolist() == [1, 2, 3, 4, 5]
    assert "Movie 00 (1990)" not in found["movie_title"].tolist()
    assert all(int(t.split()[1]) % 4 == 0 for t in found["movie_title"])
    assert found["cosine"].is_monotonic_decreasing and found["cosine"].iloc[0] > 0.99


def test_unknown_title_is_a_clear_error(tiny_data):
    with pytest.raises(KeyError, match="did you mean"):
        emb.title_index(tiny_data, "Movie 00")
    assert emb.title_index(tiny_data, "Movie 03 (1990)") == 3


def test_neighbour_table_puts_dimensions_side_by_side(tiny_data):
    vectors = {"d=4": _group_vectors(tiny_data, 4)[0], "d=3": _group_vectors(tiny_data, 3)[0]}
    table = emb.neighbour_table(vectors, tiny_data, ["Movie 00 (1990)", "Movie 01 (1990)"], k=3)
    assert table.shape == (3, 4) and table.index.tolist() == [1, 2, 3]
    assert ("Movie 00 (1990)", "d=3") in table.columns


def test_genre_agreement_sees_genre_structure(tiny_data):
    genres = emb.movie_genres(tiny_data)
    assert genres[0] == {"Action"} and genres[1] == {"Comedy"}
    by_genre, _ = _group_vectors(tiny_data, 3)  # the synthetic genre is m % 3
    assert emb.genre_agreement(by_genre, genres, k=5) == pytest.approx(1.0)
    chance = emb.genre_agreement_by_chance(genres)
    assert 0.2 < chance < 0.5
    random = np.random.default_rng(1).standard_normal((tiny_data.num_movies, 3))
    assert emb.genre_agreement(random, genres, k=5) < 0.8
    assert emb.primary_genre([{"Drama", "Horror"}, {"Western"}], ["Horror", "Drama"]) == ["Horror", "other"]


def test_pca_projection_and_explained_variance():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 6)) * np.array([10.0, 5.0, 0.1, 0.1, 0.1, 0.1])
    coords = emb.project_2d(vectors, "pca")
    assert coords.shape == (50, 2)
    assert np.var(coords[:, 0]) > np.var(coords[:, 1])
    assert emb.explained_variance(vectors) > 0.99
    assert emb.project_2d(vectors[:, :1], "pca").shape == (50, 2)
    with pytest.raises(ValueError, match="pca"):
        emb.project_2d(vectors, "umap")


def test_tsne_projection_runs_on_a_few_points():
    coords = emb.project_2d(np.random.default_rng(0).standard_normal((30, 4)), "tsne", seed=1)
    assert coords.shape == (30, 2) and np.isfinite(coords).all()


def test_model_vectors_projection_plot_and_projector_export(tiny_data, tiny_config, tmp_path):
    model = build_for(tiny_config, tiny_data)
    vectors = emb.movie_vectors(model)
    assert vectors.shape == (tiny_data.num_movies, tiny_config.model.embedding_dim)
    labels = emb.primary_genre(emb.movie_genres(tiny_data), ["Action", "Drama"])
    fig = emb.plot_projection(emb.project_2d(vectors), labels, "tiny", annotate={"Movie 00": (0.0, 0.0)})
    assert len(fig.axes[0].collections) == 3  # other, Action, Drama
    counts = tiny_data.ratings["movie_title"].value_counts()
    vectors_path, metadata_path = emb.export_projector(vectors, tiny_data, tmp_path / "projector", counts)
    assert len(vectors_path.read_text().splitlines()) == tiny_data.num_movies
    lines = metadata_path.read_text().splitlines()
    assert lines[0] == "title\tgenres\tratings" and len(lines) == tiny_data.num_movies + 1
    assert lines[1].startswith("Movie 00 (1990)\tAction\t")
