"""The serving command line (``recommend``, ``similar``): output formats, many users, and one clear message
for every bad input, never a traceback."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import synthetic_movielens
from twotower_utils.__main__ import main as package_main
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import random_split
from twotower_utils.serving.cli import recommend_main, similar_main
from twotower_utils.serving.export import export_model
from twotower_utils.training import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def numeric(tiny_config):
    """The tiny data with whole-number user ids ('1'..'24'), like MovieLens'."""
    tiny = synthetic_movielens()
    ratings = tiny.ratings[["user_id", "movie_title", "user_rating", "timestamp"]].copy()
    ratings["user_id"] = ratings["user_id"].map(lambda u: str(int(u[1:]) + 1))
    data = MovieLens.from_frames(ratings, tiny.movies, tiny.genre_names)
    split = random_split(data, seed=3, train_fraction=0.75)
    return data, split, train(tiny_config, data, split, verbose=0, curves=False).model


@pytest.fixture(scope="module")
def model_dir(numeric, tmp_path_factory):
    data, split, model = numeric
    base = tmp_path_factory.mktemp("cli") / "twotower"
    export_model(model, data, split.train, base)
    return base


def run(capsys, main, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_recommend_prints_a_table_without_the_users_training_movies(capsys, model_dir, numeric):
    data, split, _ = numeric
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--user", "3", "--k", "4")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "user 3" and lines[1].split() == ["rank", "score", "title"] and len(lines) == 6
    titles = [line.split(None, 2)[2] for line in lines[2:]]
    seen = set(split.train.loc[split.train.user_id == "3", "movie_title"])
    assert not seen & set(titles)
    code, out, _ = run(capsys, recommend_main, "--model", model_dir, "--user", "3", "--k", "30", "--include-seen")
    assert code == 0 and seen <= {line.split(None, 2)[2] for line in out.splitlines()[2:]}


def test_json_and_csv_formats_for_many_users_from_a_file(capsys, model_dir, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("1\n\n 2 \n999\n")  # blank lines are skipped, spaces around an id are not part of it
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users, "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["user_id"] for r in rows] == ["1", "2", "999"]
    assert [r["cold_start"] for r in rows] == [False, False, True] and "user '999' is not in the model" in err
    assert all(len(r["items"]) == 10 and r["items"][0]["rank"] == 1 for r in rows)
    code, out, _ = run(capsys, recommend_main, "--model", model_dir, "--user", "1", "--user", "5", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(table) == 20 and set(table[0]) == {"user_id", "rank", "movie_title", "score", "cold_start"}
    assert {r["cold_start"] for r in table} == {"false"}


def test_user_ids_from_stdin(capsys, model_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("4\n7\n"))
    code, out, _ = run(capsys, recommend_main, "--model", model_dir, "--users-file", "-", "--k", "2", "--format", "csv")
    assert code == 0 and [line.split(",")[0] for line in out.splitlines()[1:]] == ["4", "4", "7", "7"]


def test_an_unknown_user_gets_the_popular_list_with_a_notice(capsys, model_dir):
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--user", "4242", "--k", "3")
    assert code == 0 and "cold start" in err and "(unknown user: most popular movies" in out.splitlines()[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", ""], "error: empty user id (--user)"),
        (["--user", "   "], "error: empty user id (--user)"),
        (["--user", "abc"], "error: malformed user id 'abc' (--user): this model's user ids are whole numbers"),
        (["--user", "4.2"], "error: malformed user id '4.2'"),
        (["--user", "-3"], "error: malformed user id '-3'"),
        (["--user", "1", "--k", "0"], "error: --k must be at least 1, got 0"),
        (["--user", "1", "--k", "-5"], "error: --k must be at least 1, got -5"),
        (["--user", "1", "--k", "41"], "error: --k must be at most 40 (the catalogue), got 41"),
        ([], "error: give a user id (--user 42) or a file of ids"),
        (["--users-file", "/nonexistent/users.txt"], "error: cannot read users file '/nonexistent/users.txt'"),
    ],
)
def test_bad_input_is_one_clear_error(capsys, model_dir, args, message):
    code, out, err = run(capsys, recommend_main, "--model", model_dir, *args)
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1, err


def test_a_bad_line_in_a_users_file_is_named(capsys, model_dir, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("1\nuser two\n")
    code, _, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users)
    assert code == 2 and f"malformed user id 'user two' (line 2 of {users})" in err
    users.write_text("\n\n")
    code, _, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users)
    assert code == 2 and "no user ids given" in err and "is empty" in err


def test_a_missing_or_non_model_directory_names_it_and_says_how_to_make_one(capsys, tmp_path):
    code, _, err = run(capsys, recommend_main, "--model", tmp_path / "nowhere", "--user", "1")
    assert code == 1 and f"model directory '{tmp_path / 'nowhere'}' does not exist" in err and "make export" in err
    code, _, err = run(capsys, recommend_main, "--model", tmp_path, "--user", "1")
    assert code == 1 and "holds no exported model" in err and "make export" in err and err.count("\n") == 1


def test_k_that_is_not_a_number_is_argparses_one_message(capsys, model_dir):
    with pytest.raises(SystemExit) as stop:
        recommend_main(["--model", str(model_dir), "--user", "1", "--k", "ten"])
    assert stop.value.code == 2 and "argument --k: invalid int value: 'ten'" in capsys.readouterr().err


def test_similar_prints_neighbours_and_refuses_unknown_titles_with_suggestions(capsys, model_dir):
    code, out, _ = run(capsys, similar_main, "--model", model_dir, "--title", "Movie 01 (1990)", "--k", "3")
    assert code == 0 and out.splitlines()[0] == "like Movie 01 (1990)" and len(out.splitlines()) == 5
    assert "Movie 01 (1990)" not in out.splitlines()[2:]
    code, out, err = run(capsys, similar_main, "--model", model_dir, "--title", "movie 01", "--k", "3")
    assert code == 2 and out == "" and "error: unknown title 'movie 01'; did you mean: 'Movie 01 (1990)'" in err
    code, _, err = run(capsys, similar_main, "--model", model_dir, "--title", " ")
    assert code == 2 and err == "error: empty title\n"
    code, _, err = run(capsys, similar_main, "--model", model_dir, "--title", "Movie 01 (1990)", "--k", "40")
    assert code == 2 and "--k must be at most 39" in err
    code, out, _ = run(capsys, similar_main, "--model", model_dir, "--title", "Movie 02 (1990)", "--format", "json")
    assert code == 0 and json.loads(out)[0]["title"] == "Movie 02 (1990)"


def test_the_package_command_line_dispatches_to_the_serving_commands(capsys, model_dir):
    code, out, _ = run(capsys, package_main, "recommend", "--model", model_dir, "--user", "2", "--k", "2")
    assert code == 0 and out.startswith("user 2")
    code, out, _ = run(capsys, package_main, "--help")
    assert code == 0 and all(name in out for name in ("export", "recommend", "similar"))


def test_a_real_process_shows_no_traceback(model_dir):
    """What a user at a shell sees: the error line and nothing of TensorFlow's start-up or stack."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    for args, expected in (
        (["--user", "x y"], "error: malformed user id 'x y'"),
        (["--user", "5", "--k", "0"], "error: --k must be at least 1, got 0"),
    ):
        completed = subprocess.run(
            [sys.executable, "-m", "twotower_utils", "recommend", "--model", str(model_dir), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert completed.returncode == 2 and completed.stdout == ""
        assert completed.stderr.strip() == expected or completed.stderr.startswith(expected), completed.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "twotower_utils", "recommend", "--model", "/nonexistent/model", "--user", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert missing.returncode == 1 and missing.stderr.splitlines() == [
        "error: model directory '/nonexistent/model' does not exist; make one with `make export` "
        "(or `python -m twotower_utils export --export-dir DIR`)"
    ]
