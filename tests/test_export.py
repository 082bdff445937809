"""The SavedModel export: layout, signatures with k as an input, seen movies left out, cold start, similar
movies, a reload in a fresh process, saved_model_cli, and clear errors for a missing or foreign model."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from twotower_utils.evaluation.baselines import popularity_scores
from twotower_utils.serving import export as ex
from twotower_utils.serving.index import ScannOptions
from twotower_utils.serving.recommend import recommend
from twotower_utils.training import train

SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_split, tiny_config):
    return train(tiny_config, tiny_data, tiny_split, verbose=0, curves=False).model


@pytest.fixture(scope="module")
def exports(trained, tiny_data, tiny_split, tiny_config, tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    exact = ex.export_model(trained, tiny_data, tiny_split.train, base / "exact", config=tiny_config)
    scann = ex.export_model(trained, tiny_data, tiny_split.train, base / "scann", index="scann")
    return exact, scann


@pytest.fixture(scope="module")
def loaded(exports):
    return ex.load_export(exports[0])


def test_layout_is_what_tf_serving_expects_and_versions_count_up(exports, trained, tiny_data, tiny_split):
    exact, _ = exports
    assert exact.name == "1" and (exact / "saved_model.pb").is_file() and (exact / "variables").is_dir()
    metadata = json.loads((exact / "assets.extra" / "twotower.json").read_text())
    assert metadata["index"] == "exact" and metadata["num_movies"] == tiny_data.num_movies
    assert metadata["num_users"] == tiny_data.num_users and metadata["seen_pairs"] == len(tiny_split.train)
    assert metadata["config"]["model"]["embedding_dim"] == 8 and metadata["signatures"] == list(ex.SIGNATURES)
    second = ex.export_model(trained, tiny_data, tiny_split.train, exact.parent)
    assert second.name == "2" and ex.resolve_export(exact.parent) == second
    with pytest.raises(FileExistsError, match="exists already"):
        ex.export_model(trained, tiny_data, tiny_split.train, exact.parent, version=1)
    assert sorted(p.name for p in exact.parent.iterdir()) == ["1", "2"]  # no staging folder left behind


def test_serving_tables_hold_each_users_training_movies_and_the_popular_list(trained, tiny_data, tiny_split):
    tables = ex.serving_tables(trained, tiny_data, tiny_split.train)
    assert tables.user_embeddings.shape == (tiny_data.num_users + 1, 8)
    for user in (1, 5, tiny_data.num_users):
        got = tables.seen_movies[tables.seen_offsets[user] : tables.seen_offsets[user + 1]]
        expected = sorted(tiny_split.train.loc[tiny_split.train.user_idx == user, "movie_idx"])
        assert got.tolist() == expected
    popular = popularity_scores(tiny_split.train, 1, tiny_data.num_movies)[0, 1:]
    assert tables.popular_movies.tolist() == (np.argsort(-popular, kind="stable") + 1).tolist()
    most = tiny_split.train["movie_idx"].value_counts().max()
    assert tables.movie_counts[tables.popular_movies[0]] == tables.movie_counts.max() == most


def test_reload_in_a_fresh_process_gives_the_in_memory_lists(exports, trained, tiny_data, tiny_split):
    users = [*tiny_data.user_vocabulary[:6].tolist(), "nobody", ""]
    titles = [*tiny_data.movie_vocabulary[:3].tolist(), "No Such Movie (2001)"]
    check = ex.reload_check(trained, tiny_data, tiny_split.train, exports[0], users, titles, k=5)
    assert "twotower_utils" not in check["modules"] and "tensorflow_recommenders" not in check["modules"]
    assert sorted(check["signatures"]) == sorted(ex.SIGNATURES)
    for name in ("serving_default", "recommend_including_seen"):
        assert check[name]["identical_lists"] and check[name]["lists_differing_beyond_ties"] == 0, name
        assert check[name]["max_score_difference"] < 1e-4
        assert check[name]["known_users_flagged_cold"] == 0
        assert check[name]["unknown_users_get_most_popular"]
    assert check["similar_movies"] == {
        "identical_lists": True,
        "lists_differing_beyond_ties": 0,
        "recall@k": 1.0,
        "unknown_titles_flagged": True,
        "unknown_rows_empty": True,
    }


def test_scann_export_reloads_with_recall_against_exact(exports, trained, tiny_data, tiny_split):
    metadata = ex.read_metadata(exports[1])
    assert metadata["index"] == "scann" and metadata["scann"]["num_leaves"] >= 1
    users, titles = tiny_data.user_vocabulary.tolist(), tiny_data.movie_vocabulary.tolist()
    check = ex.reload_check(trained, tiny_data, tiny_split.train, exports[1], [*users, "nobody"], titles, k=5)
    assert "scann" in check["modules"] and "twotower_utils" not in check["modules"]
    assert check["serving_default"]["recall@k"] >= 0.95
    assert check["recommend_including_seen"]["recall@k"] >= 0.95
    assert check["serving_default"]["unknown_users_get_most_popular"]
    # the fresh process asks for recommendations first: similar_movies must still get its own searcher
    assert check["similar_movies"]["recall@k"] >= 0.95


def test_each_scann_index_keeps_its_own_searcher_in_one_process(exports, tiny_data):
    """Movies first, then users, then both again, with two loads of the export alive: every answer
    matches the exact export's (ScaNN searches all of this tiny catalogue's leaves)."""
    exact, first, second = ex.load_export(exports[0]), ex.load_export(exports[1]), ex.load_export(exports[1])
    titles, users = tiny_data.movie_vocabulary.tolist(), tiny_data.user_vocabulary.tolist()
    for model in (first, second, first):
        similar = model.similar(titles, 5)["similar_titles"]
        recommended = model.recommend(users, 5)["movie_titles"]
        assert (similar == exact.similar(titles, 5)["similar_titles"]).mean() > 0.9
        assert (recommended == exact.recommend(users, 5)["movie_titles"]).mean() > 0.9


def test_scann_export_widens_its_search_for_left_out_movies(trained, tiny_data, tiny_split, tmp_path):
    """One leaf searched of four: without widening, a user's 9 training movies would crowd the short list."""
    options = ScannOptions(num_leaves=4, leaves_to_search=1, reorder=10)
    path = ex.export_model(trained, tiny_data, tiny_split.train, tmp_path, index="scann", scann=options)
    model = ex.load_export(path)
    users = tiny_data.user_vocabulary.tolist()
    out = model.recommend(users, k=5)
    expected = recommend(trained, tiny_data, users, 5, exclude=tiny_split.train)
    hits = sum(
        len({t.decode() for t in out["movie_titles"][i]} & set(expected.loc[expected.user_id == u, "movie_title"]))
        for i, u in enumerate(users)
    )
    assert hits / (5 * len(users)) >= 0.95


def test_k_is_an_input_not_frozen(loaded, tiny_data):
    users = tiny_data.user_vocabulary[:3].tolist()
    assert loaded.recommend(users, k=3)["movie_titles"].shape == (3, 3)
    assert loaded.recommend(users, k=7)["movie_titles"].shape == (3, 7)
    assert loaded.similar(["Movie 01 (1990)"], k=4)["similar_titles"].shape == (1, 4)


def test_k_below_one_is_one_clear_error(loaded, tiny_data):
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be at least 1"):
        loaded.recommend(tiny_data.user_vocabulary[:1].tolist(), k=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be at least 1"):
        loaded.similar(["Movie 01 (1990)"], k=-2)


def test_k_above_the_catalogue_is_clamped_and_left_out_slots_are_empty(loaded, tiny_data, tiny_split):
    user = tiny_data.user_vocabulary[0]
    seen = set(tiny_split.train.loc[tiny_split.train.user_id == user, "movie_title"])
    out = loaded.recommend([user], k=1000)
    titles = [t.decode() for t in out["movie_titles"][0]]
    assert len(titles) == tiny_data.num_movies
    unseen = [t for t in titles if t]
    assert len(unseen) == tiny_data.num_movies - len(seen) and not seen & set(unseen)
    assert titles[len(unseen) :] == [""] * len(seen) and not out["scores"][0, len(unseen) :].any()
    everything = loaded.recommend([user], k=1000, include_seen=True)["movie_titles"][0]
    assert sorted(t.decode() for t in everything) == sorted(tiny_data.movie_vocabulary)
    assert loaded.similar(["Movie 01 (1990)"], k=1000)["similar_titles"].shape == (1, tiny_data.num_movies - 1)


def test_unknown_users_get_the_popular_list_with_counts(loaded, tiny_data, tiny_split):
    out = loaded.recommend(["nobody", tiny_data.user_vocabulary[0], ""], k=3)
    assert out["cold_start"].tolist() == [True, False, True]
    counts = tiny_split.train["movie_title"].value_counts()
    assert out["scores"][0].tolist() == sorted(counts.to_numpy(dtype=float), reverse=True)[:3]
    assert set(out["movie_titles"][0]) == set(out["movie_titles"][2])


def test_similar_movies_flags_an_unknown_title(loaded):
    out = loaded.similar(["Movie 01 (1990)", "Casablanca (1942)"], k=3)
    assert out["unknown_title"].tolist() == [False, True]
    assert b"Movie 01 (1990)" not in out["similar_titles"][0].tolist()
    assert out["similar_titles"][1].tolist() == [b""] * 3 and not out["scores"][1].any()
    assert np.all(np.diff(out["scores"][0]) <= 0) and np.all(np.abs(out["scores"][0]) <= 1 + 1e-6)


def test_saved_model_cli_lists_the_signatures_and_runs_one(exports):
    if not SAVED_MODEL_CLI.exists():
        pytest.skip("saved_model_cli is not next to this Python")
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    shown = subprocess.run(
        [str(SAVED_MODEL_CLI), "show", "--dir", str(exports[0]), "--all"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in (*ex.SIGNATURES, "inputs['k']", "inputs['user_id']", "outputs['cold_start']", "DT_INT32"):
        assert name in shown.stdout, name
    inputs = 'user_id=["u01", "nobody"];k=2'
    ran = subprocess.run(
        [str(SAVED_MODEL_CLI), "run", "--dir", str(exports[0]), "--tag_set", "serve"]
        + ["--signature_def", "serving_default", "--input_exprs", inputs],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "Result for output key movie_titles" in ran.stdout and "(1990)" in ran.stdout
    assert "[False  True]" in ran.stdout  # cold_start


def test_a_missing_or_foreign_directory_is_one_clear_error(tmp_path, exports):
    with pytest.raises(ex.ExportError, match="does not exist; make one with `make export`"):
        ex.resolve_export(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ex.ExportError, match="is a file"):
        ex.resolve_export(tmp_path / "file")
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(ex.ExportError, match="holds no exported model.*make export"):
        ex.resolve_export(tmp_path / "empty")
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ex.ExportError, match="could not load the model"):
        ex.load_export(broken.parent)
    foreign = tmp_path / "foreign"
    tf.saved_model.save(tf.Module(), str(foreign))
    with pytest.raises(ex.ExportError, match="not a twotower export"):
        ex.load_export(foreign)


def test_id_pattern_tells_whole_numbers_from_names():
    assert ex.id_pattern(np.array(["1", "42", "943"])) == r"[0-9]+"
    assert ex.id_pattern(np.array(["u01", "7"])) == r"\S(.*\S)?"


def test_a_bad_index_kind_is_refused(trained, tiny_data, tiny_split, tmp_path):
    with pytest.raises(ValueError, match="index must be one of"):
        ex.export_model(trained, tiny_data, tiny_split.train, tmp_path, index="faiss")
    assert not any(tmp_path.iterdir())


def test_lists_that_differ_only_in_near_ties_are_told_apart_from_real_differences():
    same, swapped, other = ["a", "b", "c"], ["a", "c", "b"], ["a", "b", "x"]
    tied, apart = np.array([3.0, 2.0, 2.0]), np.array([3.0, 2.0, 1.0])
    assert ex._beyond_ties([same], [tied], [same], [tied]) == 0
    assert ex._beyond_ties([swapped], [tied], [same], [tied + 1e-7]) == 0
    assert ex._beyond_ties([other], [apart], [same], [apart - [0, 0, 0.5]]) == 1
    assert ex._beyond_ties([same[:2]], [tied[:2]], [same], [tied]) == 1


def test_an_empty_batch_gets_an_empty_answer_from_both_index_kinds(exports):
    """A TF Serving batcher can send an empty batch; ScaNN's own search refuses one."""
    empty, k = tf.constant([], tf.string), tf.constant(5)
    for path in exports:
        model = ex.load_export(path).model
        for name, key in (("serving_default", "user_id"), ("recommend_including_seen", "user_id")):
            out = model.signatures[name](**{key: empty, "k": k})
            assert out["movie_titles"].shape == (0, 5) and out["cold_start"].shape == (0,), (path, name)
        out = model.signatures["similar_movies"](title=empty, k=k)
        assert out["similar_titles"].shape == (0, 5) and out["unknown_title"].shape == (0,), path
        assert ex.load_export(path).recommend([], 3)["scores"].shape == (0, 3)


def test_the_ragged_and_the_dense_seen_tables_leave_out_the_same_movies(
    trained, tiny_data, tiny_split, loaded, monkeypatch, tmp_path
):
    """A catalogue too big for the dense table (here: a limit of 0 bytes) scatters the ragged lists instead."""
    monkeypatch.setattr(ex, "DENSE_SEEN_BYTES", 0)
    for index in ("exact", "scann"):
        ragged = ex.load_export(ex.export_model(trained, tiny_data, tiny_split.train, tmp_path / index, index=index))
        assert not hasattr(ragged.model, "seen_mask") and hasattr(loaded.model, "seen_mask")
        users = [*tiny_data.user_vocabulary.tolist(), "nobody"]
        for k in (5, 1000):
            got, expected = ragged.recommend(users, k), loaded.recommend(users, k)
            assert (got["movie_titles"] == expected["movie_titles"]).mean() > (0.9 if index == "scann" else 0.999)
            if index == "exact":
                assert np.allclose(got["scores"], expected["scores"], atol=1e-5)


def test_k_below_one_says_so_in_the_first_line(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        loaded.recommend(["u01"], k=0)
    assert str(error.value).splitlines()[0] == "k must be at least 1, got 0"
