"""The serving command line (``recommend``, ``similar``): output formats, many users, and one clear message
for every bad input, never a traceback."""

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
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


ACCENTED = "Misérables, Les (1995)"  # not ASCII, and a comma: CSV quotes it
QUOTED = 'Movie "Quoted", The (1990)'


@pytest.fixture(scope="module")
def numeric(tiny_config):
    """The tiny data with whole-number user ids ('1'..'24'), like MovieLens', and two titles that test
    encodings and CSV quoting."""
    tiny = synthetic_movielens()
    ratings = tiny.ratings[["user_id", "movie_title", "user_rating", "timestamp"]].copy()
    ratings["user_id"] = ratings["user_id"].map(lambda u: str(int(u[1:]) + 1))
    renamed = {"Movie 39 (1990)": ACCENTED, "Movie 35 (1990)": QUOTED}
    ratings["movie_title"] = ratings["movie_title"].astype(str).replace(renamed)
    movies = tiny.movies.copy()
    movies["movie_title"] = movies["movie_title"].astype(str).replace(renamed)
    data = MovieLens.from_frames(ratings, movies, tiny.genre_names)
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


# --- many users: batches, bad lines, unknown users ------------------------------------------------------
def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_users_file_is_answered_in_batches_with_the_same_output(capsys, model_dir, tmp_path):
    """The batch size changes nothing but the last digit of a score (a matrix product's summation order)."""
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{1 + i % 30}\n" for i in range(50)))  # 25..30 are unknown
    outputs = {}
    for fmt in ("csv", "json", "table"):
        for size in (1, 7, 4096):
            code, out, _ = run(
                capsys, recommend_main, "--model", model_dir, "--users-file", users, "--format", fmt,
                "--batch-size", size, "--k", "4",
            )  # fmt: skip
            assert code == 0
            outputs.setdefault(fmt, []).append(out)
    tables = [[line.split()[:1] + line.split()[2:] for line in out.splitlines()] for out in outputs["table"]]
    assert tables[0] == tables[1] == tables[2] and len(tables[0]) == 50 * 6 + 49
    rows = [json.loads(out) for out in outputs["json"]]
    assert [r["user_id"] for r in rows[0]] == [str(1 + i % 30) for i in range(50)]
    for other in rows[1:]:
        assert [[i["movie_title"] for i in r["items"]] for r in other] == [
            [i["movie_title"] for i in r["items"]] for r in rows[0]
        ]
        assert [i["score"] for r in other for i in r["items"]] == pytest.approx(
            [i["score"] for r in rows[0] for i in r["items"]], abs=1e-4
        )
    tables = [csv_rows(out) for out in outputs["csv"]]
    assert [[(r["user_id"], r["rank"], r["movie_title"], r["cold_start"]) for r in t] for t in tables[1:]] == [
        [(r["user_id"], r["rank"], r["movie_title"], r["cold_start"]) for r in tables[0]]
    ] * 2
    assert len(tables[0]) == 200 and {r["cold_start"] for r in tables[0] if int(r["user_id"]) > 24} == {"true"}


def test_csv_is_what_the_csv_module_writes_including_quotes_and_empty_slots(capsys, model_dir, numeric):
    data, split, _ = numeric
    code, out, _ = run(
        capsys, recommend_main, "--model", model_dir, "--user", "1", "--user", "999", "--k", "40", "--format", "csv"
    )
    assert code == 0
    rows = csv_rows(out)
    seen = split.train.loc[split.train.user_id == "1", "movie_title"].nunique()
    assert len(rows) == (40 - seen) + 40  # the user's training movies leave empty slots, left out
    assert {ACCENTED, QUOTED} <= {r["movie_title"] for r in rows}
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(["user_id", "rank", "movie_title", "score", "cold_start"])
    for r in rows:
        writer.writerow([r["user_id"], r["rank"], r["movie_title"], r["score"], r["cold_start"]])
    assert out == expected.getvalue()
    assert [int(r["rank"]) for r in rows if r["user_id"] == "1"] == list(range(1, 41 - seen))


def test_unknown_users_get_one_summary_line(capsys, model_dir, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{n}\n" for n in (1, 100, 2, 101, 102, 100)))
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users, "--format", "csv")
    assert code == 0 and len(csv_rows(out)) == 60
    assert err.splitlines() == [
        "notice: 4 users not in the model: most popular movies instead (cold start; scores are training-rating "
        "counts); e.g. '100', '101', '102'"
    ]


def test_a_byte_order_mark_and_windows_line_ends_are_accepted(capsys, model_dir, tmp_path):
    users = tmp_path / "users.txt"
    users.write_bytes(b"\xef\xbb\xbf3\r\n4\r\n\r\n")
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users, "--format", "json")
    assert code == 0 and err == "" and [r["user_id"] for r in json.loads(out)] == ["3", "4"]


def test_a_bad_line_stops_a_file_before_any_output_unless_skipped(capsys, model_dir, tmp_path):
    users = tmp_path / "users.txt"
    users.write_bytes(b"user_id\n3\n\xff\xfe\n4\n")
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users, "--format", "csv")
    assert code == 2 and out == ""
    assert err == (
        f"error: malformed user id 'user_id' (line 1 of {users}): this model's user ids are whole numbers such as "
        "'1' (--skip-bad-lines skips such lines)\n"
    )
    code, out, err = run(
        capsys, recommend_main, "--model", model_dir, "--users-file", users, "--format", "csv", "--skip-bad-lines"
    )
    assert code == 0 and [r["user_id"] for r in csv_rows(out)][::10] == ["3", "4"]
    assert err.splitlines() == [
        f"notice: skipped 2 bad lines of {users} (the first: malformed user id 'user_id' (line 1 of {users}): "
        "this model's user ids are whole numbers such as '1')"
    ]
    users.write_bytes(b"x\n\xff\n")
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users, "--skip-bad-lines")
    assert (
        code == 2 and out == "" and err.startswith("error: no user ids given: every line of") and "2 bad lines" in err
    )
    users.write_bytes(b"3\n" + b"9" * 70_000 + b"\n")
    code, out, err = run(capsys, recommend_main, "--model", model_dir, "--users-file", users)
    assert code == 2 and out == "" and err.startswith("error: a line longer than 65,536 bytes (line 2 of")


def test_a_bad_line_on_stdin_stops_after_answering_the_lines_before_it(capsys, model_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("4\n7\nseven\n8\n"))
    code, out, err = run(
        capsys, recommend_main, "--model", model_dir, "--users-file", "-", "--k", "2", "--format", "csv"
    )
    assert code == 2 and [r["user_id"] for r in csv_rows(out)] == ["4", "4", "7", "7"]
    assert err == (
        "error: malformed user id 'seven' (line 3 of stdin): this model's user ids are whole numbers such as '1'; "
        "stopped there: the answers for the 2 ids before it were written (--skip-bad-lines skips such lines)\n"
    )


def test_stream_mode_answers_json_one_object_per_line(capsys, model_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("4\n\nnobody\n4242\n"))
    code, out, err = run(
        capsys, recommend_main, "--model", model_dir, "--stream", "--format", "json", "--k", "3", "--skip-bad-lines"
    )
    assert code == 0
    answers = [json.loads(line) for line in out.splitlines()]
    assert [(a["user_id"], a["cold_start"], len(a["items"])) for a in answers] == [("4", False, 3), ("4242", True, 3)]
    assert err.splitlines()[0].startswith("notice: skipped malformed user id 'nobody' (line 3 of stdin)")
    assert err.splitlines()[1] == "notice: user '4242' is not in the model: the most popular movies instead " + (
        "(cold start; scores are training-rating counts)"
    )
    code, _, err = run(capsys, recommend_main, "--model", model_dir, "--stream", "--user", "4")
    assert code == 2 and err == "error: --stream reads the ids from standard input: leave out --user and --users-file\n"


# --- titles --------------------------------------------------------------------------------------------
def test_titles_are_matched_after_nfc_and_suggested_after_case_and_space_folding(capsys, model_dir):
    decomposed = unicodedata.normalize("NFD", ACCENTED)
    assert decomposed != ACCENTED
    code, out, _ = run(capsys, similar_main, "--model", model_dir, "--title", decomposed, "--k", "2")
    assert code == 0 and out.splitlines()[0] == f"like {ACCENTED}"
    code, out, err = run(capsys, similar_main, "--model", model_dir, "--title", "MISÉRABLES,   les (1995)")
    assert code == 2 and out == ""
    assert err == f"error: unknown title 'MISÉRABLES,   les (1995)'; did you mean: {ACCENTED!r}\n"


def test_similar_k_names_what_bounds_it(capsys, model_dir):
    code, _, err = run(capsys, similar_main, "--model", model_dir, "--title", "Movie 01 (1990)", "--k", "40")
    assert code == 2 and err == "error: --k must be at most 39 (the catalogue less the movie itself), got 40\n"


# --- the output and the model directory -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", "memory"])
def test_an_output_that_cannot_hold_a_title_is_one_error(capsys, model_dir, monkeypatch, tmp_path, kind):
    """`PYTHONIOENCODING=ascii`: a file descriptor (written with os.write) or an in-memory stream."""
    if kind == "file":
        ascii_out = open(tmp_path / "out.txt", "w", encoding="ascii")  # noqa: SIM115
    else:
        ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    code, _, err = run(capsys, similar_main, "--model", model_dir, "--title", ACCENTED)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: cannot write 'é' in the output's encoding, ascii (in: like Misérables, Les (1995))")
    assert err.rstrip().endswith("set PYTHONIOENCODING=utf-8")
    ascii_out.flush()
    written = (tmp_path / "out.txt").read_bytes() if kind == "file" else ascii_out.buffer.getvalue()
    assert written == b""  # the record is written whole or not at all
    ascii_out.close()


def test_a_full_disk_is_one_error(capsys, model_dir, monkeypatch):
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        code, out, err = run(capsys, recommend_main, "--model", model_dir, "--user", "1", "--format", "csv")
        assert code == 1 and err == "error: cannot write the output: No space left on device\n"


def test_a_savedmodel_with_the_signature_names_but_nothing_else_is_refused(capsys, tmp_path):
    import tensorflow as tf

    strings, k = tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32)

    class Impostor(tf.Module):
        @tf.function(input_signature=[strings, k])
        def users(self, user_id, k):
            rows = tf.fill(tf.stack([tf.shape(user_id)[0], k]), "x")
            return {"movie_titles": rows, "scores": tf.zeros(tf.shape(rows)), "cold_start": tf.equal(user_id, "")}

        @tf.function(input_signature=[strings, k])
        def movies(self, title, k):
            rows = tf.fill(tf.stack([tf.shape(title)[0], k]), "x")
            return {"similar_titles": rows, "scores": tf.zeros(tf.shape(rows)), "unknown_title": tf.equal(title, "")}

        @tf.function(input_signature=[strings, k])
        def other(self, x, k):
            return {"movie_titles": x}

    module = Impostor()
    signatures = {"serving_default": module.users, "recommend_including_seen": module.users}
    tf.saved_model.save(
        module, str(tmp_path / "named" / "1"), signatures={**signatures, "similar_movies": module.movies}
    )
    tf.saved_model.save(
        module, str(tmp_path / "wrong" / "1"), signatures={**signatures, "similar_movies": module.other}
    )
    for main, args in ((recommend_main, ["--user", "1"]), (similar_main, ["--title", "Movie 01 (1990)"])):
        code, out, err = run(capsys, main, "--model", tmp_path / "named", *args)
        assert code == 1 and out == ""
        assert err == (
            f"error: '{tmp_path / 'named' / '1'}' is a SavedModel but not a twotower export (no table of movie titles)\n"
        )
    code, _, err = run(capsys, recommend_main, "--model", tmp_path / "wrong", "--user", "1")
    assert code == 1 and err.endswith("not a twotower export (similar_movies takes k, x, not k, title)\n")


@pytest.fixture
def readable_copy(model_dir):
    """A copy of the export in a folder anyone may enter, and a way to run a command as a user without
    root's bypass of file permissions (the tests run as root in CI containers)."""
    folder = Path(tempfile.mkdtemp(prefix="twotower-perm-"))
    os.chmod(folder, 0o755)
    shutil.copytree(model_dir, folder / "twotower")
    yield folder / "twotower"
    for path in (folder, *folder.rglob("*")):
        os.chmod(path, 0o755)
    shutil.rmtree(folder)


def as_unprivileged(function, *args):
    if os.geteuid() != 0:
        return function(*args)
    import pwd

    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no 'nobody' user to drop root's permission bypass to")
    os.seteuid(nobody)
    try:
        return function(*args)
    finally:
        os.seteuid(0)


def test_an_unreadable_model_directory_is_one_error(capsys, readable_copy):
    version = readable_copy / "1"
    for path, named in ((readable_copy, readable_copy), (version / "variables", version / "variables")):
        os.chmod(path, 0)
        try:
            code = as_unprivileged(recommend_main, ["--model", str(readable_copy), "--user", "1"])
        finally:
            os.chmod(path, 0o755)
        out, err = capsys.readouterr()
        assert code == 1 and out == "", err
        assert err == f"error: cannot read '{named}': Permission denied (the model directory must be readable)\n"


# --- the server path ------------------------------------------------------------------------------------
def test_the_tf_serving_rest_requests_match_the_signatures(model_dir):
    """TF Serving's REST 'predict' with columnar inputs turns each JSON value into a tensor of the signature's
    type; the documented requests, answered that way, give the documented outputs."""
    import tensorflow as tf

    from twotower_utils.serving.cli import TF_SERVING_REST
    from twotower_utils.serving.loaded import SIGNATURE_OUTPUTS, load_export

    model = load_export(model_dir).model
    bodies = [json.loads(body) for body in re.findall(r"-d \\\s*'(\{.*\})'", TF_SERVING_REST)]
    assert [b["signature_name"] for b in bodies] == ["serving_default", "similar_movies"]
    assert "tensorflow/serving" in TF_SERVING_REST and ":predict" in TF_SERVING_REST
    for body in bodies:
        signature = model.signatures[body["signature_name"]]
        specs = signature.structured_input_signature[1]
        assert set(body["inputs"]) == set(specs)
        out = signature(**{name: tf.constant(value, specs[name].dtype) for name, value in body["inputs"].items()})
        assert set(out) == SIGNATURE_OUTPUTS[body["signature_name"]]
        batch = len(next(v for v in body["inputs"].values() if isinstance(v, list)))
        assert out["scores"].shape == (batch, body["inputs"]["k"])


# --- real processes: Ctrl-C, a full disk, a closed pipe, a pipe served line by line ------------------------
def command(model_dir, *args) -> list[str]:
    return [sys.executable, "-m", "twotower_utils", "recommend", "--model", str(model_dir), *map(str, args)]


def process_env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


@pytest.fixture(scope="module")
def many_ids(tmp_path_factory):
    """300,000 ids: seconds of output, so that every moment of a run can be interrupted."""
    path = tmp_path_factory.mktemp("ids") / "ids.txt"
    path.write_text("".join(f"{1 + i % 30}\n" for i in range(30)) * 10_000)
    return path


def interrupt(proc: subprocess.Popen, when) -> tuple[bytes, str]:
    """Send SIGINT once ``when(proc, output so far)`` holds, while a thread keeps reading the output."""
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read(1 << 16), b"")))
    reader.start()
    deadline = time.monotonic() + 120
    while not when(proc, chunks) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    try:
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    finally:
        proc.kill()
        reader.join()
    return b"".join(chunks), err


def tensorflow_is_loading(proc, chunks) -> bool:
    with open(f"/proc/{proc.pid}/maps") as maps:
        return "libtensorflow_framework" in maps.read()


def assert_whole_records(out: bytes, k: int = 10) -> None:
    text = out.decode()
    assert text == "" or text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(row) == 5 for row in rows) and (len(rows) - 1) % k == 0 if rows else True


def test_ctrl_c_while_tensorflow_loads_is_one_line_and_status_130(model_dir, many_ids):
    proc = subprocess.Popen(
        command(model_dir, "--users-file", many_ids, "--format", "csv"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=process_env(), cwd=ROOT,
    )  # fmt: skip
    out, err = interrupt(proc, tensorflow_is_loading)
    assert proc.returncode == 130 and err == "interrupted\n" and out == b""


def test_ctrl_c_while_answering_leaves_whole_records(model_dir, many_ids, pause=0.1):
    """Interrupted while computing or writing: the output ends after a whole user's rows."""
    proc = subprocess.Popen(
        command(model_dir, "--users-file", many_ids, "--format", "csv"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=process_env(), cwd=ROOT,
    )  # fmt: skip
    started = []

    def answering(proc, chunks):
        if chunks and not started:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] >= pause

    out, err = interrupt(proc, answering)
    assert proc.returncode == 130 and err == "interrupted\n", err
    assert out.startswith(b"user_id,rank,movie_title,score,cold_start\n")
    assert_whole_records(out)


def test_ctrl_c_while_the_output_is_blocked_waits_for_the_record(model_dir, many_ids):
    """The reader stops reading: the process blocks in a write; Ctrl-C takes effect once the write is done."""
    proc = subprocess.Popen(
        command(model_dir, "--users-file", many_ids, "--format", "csv"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=process_env(), cwd=ROOT,
    )  # fmt: skip
    first = proc.stdout.read(1024)
    time.sleep(1.0)  # the pipe fills up behind the unread output
    out, err = interrupt(proc, lambda proc, chunks: True)
    assert proc.returncode == 130 and err == "interrupted\n", err
    assert_whole_records(first + out)


def test_a_full_disk_and_a_closed_pipe_in_a_real_process(model_dir, many_ids):
    with open("/dev/full", "wb") as full:
        completed = subprocess.run(
            command(model_dir, "--user", "1", "--format", "csv"), stdout=full, stderr=subprocess.PIPE,
            env=process_env(), cwd=ROOT, timeout=120,
        )  # fmt: skip
    assert completed.returncode == 1
    assert completed.stderr.decode() == "error: cannot write the output: No space left on device\n"
    proc = subprocess.Popen(
        command(model_dir, "--users-file", many_ids, "--format", "csv"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=process_env(), cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout.readline() == b"user_id,rank,movie_title,score,cold_start\n"
    proc.stdout.close()  # `... | head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""  # stopped at once, not after 300,000 users


def peak_rss_mb(args: list[str]) -> float:
    """The peak RSS of one run of the command line (output thrown away), from the kernel's accounting."""
    with open(os.devnull, "wb") as devnull:
        child = subprocess.Popen(args, stdout=devnull, stderr=subprocess.PIPE, env=process_env(), cwd=ROOT)
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        child.stderr.close()
    assert child.returncode == 0, err[-2000:]
    return usage.ru_maxrss / 1024


def test_memory_does_not_grow_with_the_users_file(model_dir, tmp_path):
    """Batches of 1,000: ten times the ids, the same peak (one id held the whole run cost about 20 KB)."""
    peaks = []
    for count in (10_000, 100_000):
        users = tmp_path / f"{count}.txt"
        users.write_text("".join(f"{1 + i % 30}\n" for i in range(30)) * (count // 30))
        peaks.append(peak_rss_mb(command(model_dir, "--users-file", users, "--format", "csv", "--batch-size", "1000")))
    assert peaks[1] - peaks[0] < 40, peaks


def test_stream_mode_answers_each_line_as_it_arrives(model_dir):
    proc = subprocess.Popen(
        command(model_dir, "--stream", "--format", "csv", "--k", "2", "--skip-bad-lines"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=process_env(), cwd=ROOT,
    )  # fmt: skip
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        answers = []
        for line in (b"3\n", b"abc\n", b"4242\n", b"5\n"):
            proc.stdin.write(line)
            proc.stdin.flush()  # the process has no more input than this line: it must answer it now
            if line != b"abc\n":
                answers.append([proc.stdout.readline() for _ in range(2 + (not answers))])
        proc.stdin.close()
        rest, err = proc.stdout.read(), proc.stderr.read().decode()
        code = proc.wait()
    finally:
        watchdog.cancel()
    assert code == 0 and rest == b""
    assert answers[0][0] == b"user_id,rank,movie_title,score,cold_start\n"
    assert [a[-1].split(b",")[0] for a in answers] == [b"3", b"4242", b"5"]
    assert answers[1][-1].endswith(b",true\n")
    assert err.splitlines() == [
        "notice: skipped malformed user id 'abc' (line 2 of stdin): this model's user ids are whole numbers such "
        "as '1'",
        "notice: user '4242' is not in the model: the most popular movies instead (cold start; scores are "
        "training-rating counts)",
        "notice: skipped 1 bad line of stdin (the first: malformed user id 'abc' (line 2 of stdin): this model's "
        "user ids are whole numbers such as '1')",
    ]


# --- the benchmark's command-line row ---------------------------------------------------------------------
def test_the_benchmarks_command_line_row_runs_alone(model_dir, tmp_path):
    """`benchmarks/bench_serving.py --streaming-only`: ids through the command line, counted as a consumer
    reads them, with the child's peak RSS (speed itself is measured by `make bench-serving`, not here)."""
    output = tmp_path / "serving.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_serving.py"), "--model", str(model_dir)]
        + ["--streaming-only", "--streaming-ids", "2000", "--streaming-batch-size", "300", "--output", str(output)],
        capture_output=True, text=True, env=process_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(output.read_text())
    stream = summary["streaming"]
    assert summary["export"] is None and summary["catalogues"] == []
    assert stream["ids"] == 2000 and stream["unknown_ids"] == 200 and stream["rows_complete"]
    assert stream["batch_size"] == 300 and stream["k"] == 10 and stream["format"] == "csv"
    assert stream["peak_rss_mb"] > 0 and stream["cpu_seconds"] > 0 and 0 < stream["startup_seconds"]
    assert stream["users_per_second"] == pytest.approx(2000 / stream["seconds"])
    assert summary["verdict"]["streaming_target_met"] in (True, False)
    assert "command line, 2,000 ids from a file (200 unknown)" in completed.stdout
