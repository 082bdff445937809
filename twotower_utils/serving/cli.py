"""The serving command line: ``python -m twotower_utils recommend`` and ``similar`` query an exported model
(``make export``) and print titles and scores as a table, JSON or CSV.

    python -m twotower_utils recommend --model results/export/twotower --user 42 --k 10
    python -m twotower_utils recommend --model DIR --users-file users.txt --format csv   # '-' reads stdin
    python -m twotower_utils similar --model DIR --title "Star Wars (1977)"

Every bad input ends with one ``error: ...`` line on stderr and exit status 2 (1 when the model directory
is the problem), never a traceback.  A user id the model does not know is no error: it gets the most
popular movies, marked as a cold start, with a notice on stderr.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import os
import re
import sys
from pathlib import Path

FORMATS = ("table", "json", "csv")
BAD_INPUT, BAD_MODEL = 2, 1


class InputError(Exception):
    """Bad input from the user: one line saying what is wrong."""


def _quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up lines (no GPU found ...) are noise on a command line; TF_CPP_MIN_LOG_LEVEL
    set by the user (other than the package's default, 2) is kept."""
    if "tensorflow" not in sys.modules and os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "2":
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", required=True, type=Path, help="an export: the folder of versions or one version")
    parser.add_argument("--k", type=int, default=10, help="how many movies per row (default 10)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    return parser


def recommend_main(argv: list[str] | None = None) -> int:
    parser = _parser("python -m twotower_utils recommend", "Top-k movies for user ids, from an exported model.")
    parser.add_argument("--user", action="append", default=[], help="a user id (repeat for several)")
    parser.add_argument("--users-file", help="a file with one user id per line ('-': standard input)")
    parser.add_argument("--include-seen", action="store_true", help="keep the movies the user rated in training")
    args = parser.parse_args(argv)
    _quiet_tensorflow()
    return _run(lambda: _recommend(args))


def similar_main(argv: list[str] | None = None) -> int:
    parser = _parser("python -m twotower_utils similar", "The k movies most like a movie, from an exported model.")
    parser.add_argument("--title", action="append", default=[], required=True, help="a movie title (repeatable)")
    args = parser.parse_args(argv)
    _quiet_tensorflow()
    return _run(lambda: _similar(args))


def _run(work) -> int:
    from twotower_utils.serving.export import ExportError

    try:
        rows = work()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_MODEL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        rows()
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# --- recommend ---------------------------------------------------------------------------------------
def _recommend(args):
    from twotower_utils.serving.export import read_metadata, resolve_export

    version_dir = resolve_export(args.model)
    metadata = read_metadata(version_dir)
    user_ids = _user_ids(args, metadata)
    _check_k(args.k, metadata.get("num_movies"))
    model = _load(version_dir)
    _check_k(args.k, model.num_movies)
    out = model.recommend(user_ids, args.k, include_seen=args.include_seen)
    results = []
    for i, user_id in enumerate(user_ids):
        cold = bool(out["cold_start"][i])
        if cold:
            print(
                f"notice: user {user_id!r} is not in the model: the most popular movies instead (cold start; "
                "scores are training-rating counts)",
                file=sys.stderr,
            )
        results.append(
            {"user_id": user_id, "cold_start": cold, "items": _items(out["movie_titles"][i], out["scores"][i])}
        )
    return lambda: _print(results, args.format, key="user_id", flag="cold_start")


def _user_ids(args, metadata: dict) -> list[str]:
    if not args.user and not args.users_file:
        raise InputError("give a user id (--user 42) or a file of ids (--users-file FILE, '-' for stdin)")
    given = [(value, "--user") for value in args.user]
    if args.users_file:
        given += _read_ids(args.users_file)
    if not given:
        where = "standard input" if args.users_file == "-" else f"'{args.users_file}'"
        raise InputError(f"no user ids given: {where} is empty")
    pattern = metadata.get("user_id_pattern")
    example = metadata.get("example_user_id", "42")
    ids = []
    for value, where in given:
        user_id = value.strip()
        if not user_id:
            raise InputError(f"empty user id ({where})")
        if pattern and not re.fullmatch(pattern, user_id):
            kind = "whole numbers such as" if pattern == r"[0-9]+" else "like"
            raise InputError(f"malformed user id {value!r} ({where}): this model's user ids are {kind} {example!r}")
        ids.append(user_id)
    return ids


def _read_ids(name: str) -> list[tuple[str, str]]:
    """One id per line; blank lines are skipped."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read users file '{name}': {getattr(error, 'strerror', None) or error}") from None
    where = "stdin" if name == "-" else name
    return [(line, f"line {n} of {where}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _check_k(k: int, num_movies) -> None:
    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if num_movies and k > num_movies:
        raise InputError(f"--k must be at most {num_movies} (the catalogue), got {k}")


def _load(version_dir: Path):
    from twotower_utils.serving.export import load_export

    return load_export(version_dir)


def _items(titles, scores) -> list[dict]:
    """Non-empty slots, best first."""
    from twotower_utils.serving.export import result_rows

    rows = result_rows([""], [titles], [scores])
    return [{"rank": r["rank"], "movie_title": r["movie_title"], "score": round(r["score"], 6)} for r in rows]


# --- similar -----------------------------------------------------------------------------------------
def _similar(args):
    from twotower_utils.serving.export import read_metadata, resolve_export

    version_dir = resolve_export(args.model)
    titles = [t.strip() for t in args.title]
    if not all(titles):
        raise InputError("empty title")
    num_movies = read_metadata(version_dir).get("num_movies")
    _check_k(args.k, num_movies and num_movies - 1)
    model = _load(version_dir)
    catalogue = model.titles()
    known = set(catalogue)
    for title in titles:
        if title not in known:
            raise InputError(f"unknown title {title!r}{_suggest(title, catalogue)}")
    out = model.similar(titles, args.k)
    results = [{"title": t, "items": _items(out["similar_titles"][i], out["scores"][i])} for i, t in enumerate(titles)]
    return lambda: _print(results, args.format, key="title", flag=None)


def _suggest(title: str, catalogue: list[str]) -> str:
    lower = title.lower()
    close = [t for t in catalogue if lower in t.lower()][:5] or difflib.get_close_matches(title, catalogue, 5, 0.5)
    return (
        "; did you mean: " + ", ".join(repr(t) for t in close)
        if close
        else " (titles include the year, e.g. 'Star Wars (1977)')"
    )


# --- output ------------------------------------------------------------------------------------------
def _print(results: list[dict], fmt: str, key: str, flag: str | None) -> None:
    if fmt == "json":
        json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
        print()
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([key, "rank", "movie_title", "score", *([flag] if flag else [])])
        for result in results:
            for item in result["items"]:
                extra = [str(result[flag]).lower()] if flag else []
                writer.writerow([result[key], item["rank"], item["movie_title"], f"{item['score']:.6g}", *extra])
    else:
        for n, result in enumerate(results):
            label = "user" if key == "user_id" else "like"
            note = "  (unknown user: most popular movies, scores are rating counts)" if flag and result[flag] else ""
            print(f"{'' if n == 0 else chr(10)}{label} {result[key]}{note}")
            print(f"{'rank':>4}  {'score':>9}  title")
            for item in result["items"]:
                print(f"{item['rank']:>4}  {item['score']:>9.4f}  {item['movie_title']}")
