"""The serving command line: ``python -m twotower_utils recommend`` and ``similar`` query an exported model
(``make export``) and print titles and scores as a table, JSON or CSV.

    python -m twotower_utils recommend --model results/export/twotower --user 42 --k 10
    python -m twotower_utils recommend --model DIR --users-file users.txt --format csv   # '-' reads stdin
    python -m twotower_utils recommend --model DIR --stream --format csv    # one process answers a pipe
    python -m twotower_utils similar --model DIR --title "Star Wars (1977)"

**Many users.**  A users file (or standard input) is read and answered ``--batch-size`` ids at a time, and
each batch's answers are written as soon as they are computed: memory stays the same whatever the input's
size.  A bad line (a header, an id of the wrong form, text that is not UTF-8) stops the run with an error
(for a file, before anything is written); ``--skip-bad-lines`` skips such lines and counts them in one
notice at the end.  A UTF-8 byte-order mark and blank lines are accepted.  User ids the model does not
know are no error: they get the most popular movies, marked as cold starts, and one notice at the end
counts them.

**Keeping the model loaded.**  ``--stream`` reads ids from standard input and answers each line as it
arrives (the answer is flushed at once; JSON becomes one object per line), so one process, with TensorFlow
imported and the model loaded once, serves a pipe until its input ends.  The server path is TF Serving
(``TF_SERVING_REST``).

**Titles** are matched after Unicode NFC normalisation (a title typed in decomposed form is the same
title); an unknown title is refused with suggestions found after folding case and spaces.

**Errors** end with one line on stderr, never a traceback, and these exit statuses:

    0    done; also when the reader of the output went away (``... | head``): the rest is not computed
    1    the model directory (missing, unreadable, damaged, not a twotower export), or the output cannot be
         written (disk full, an encoding that cannot hold a title)
    2    bad input: a malformed id or line, an unknown title, ``--k`` out of range, an unreadable users file
    130  interrupted (Ctrl-C): ``interrupted``; the output holds whole records only (a CSV row, a JSON
         object or a table block is written whole or not at all; a JSON array is left unclosed)
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import os
import re
import signal
import sys
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from twotower_utils.serving.loaded import ExportError

FORMATS = ("table", "json", "csv")
BAD_INPUT, BAD_MODEL, BAD_OUTPUT, INTERRUPTED = 2, 1, 1, 130
BATCH_SIZE = 4096  # users per model call: 27 MB of float32 scores for MovieLens 100K's 1,664 movies
MAX_LINE = 1 << 16  # bytes; a longer line of a users file is a bad line (and is never held whole)
COLD_START = "most popular movies instead (cold start; scores are training-rating counts)"

# The server path: TF Serving's REST API on the export (columnar "inputs": k is a scalar).  The requests are
# checked against the SavedModel's signatures by tests/test_cli.py.
TF_SERVING_REST = """\
docker run -p 8501:8501 --mount type=bind,source="$PWD/results/export/twotower",target=/models/twotower \\
    -e MODEL_NAME=twotower -t tensorflow/serving
curl -X POST http://localhost:8501/v1/models/twotower:predict -d \\
    '{"signature_name": "serving_default", "inputs": {"user_id": ["42", "7"], "k": 10}}'
curl -X POST http://localhost:8501/v1/models/twotower:predict -d \\
    '{"signature_name": "similar_movies", "inputs": {"title": ["Star Wars (1977)"], "k": 5}}'
"""


class InputError(Exception):
    """Bad input from the user: one line saying what is wrong."""


class OutputError(Exception):
    """The output cannot be written (a full disk, an encoding that cannot hold a title)."""


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
    def work() -> None:
        parser = _parser("python -m twotower_utils recommend", "Top-k movies for user ids, from an exported model.")
        parser.add_argument("--user", action="append", default=[], help="a user id (repeat for several)")
        parser.add_argument("--users-file", help="a file with one user id per line ('-': standard input)")
        parser.add_argument("--include-seen", action="store_true", help="keep the movies the user rated in training")
        parser.add_argument(
            "--skip-bad-lines", action="store_true", help="skip malformed lines of the users file (counted at the end)"
        )
        parser.add_argument(
            "--stream",
            action="store_true",
            help="read ids from standard input and answer each line as it arrives (JSON: one object per line)",
        )
        parser.add_argument(
            "--batch-size", type=int, default=BATCH_SIZE, help=f"users per model call (default {BATCH_SIZE})"
        )
        args = parser.parse_args(argv)
        if args.batch_size < 1:
            parser.error(f"argument --batch-size: must be at least 1, got {args.batch_size}")
        _quiet_tensorflow()
        _recommend(args, Output())

    return _run(work)


def similar_main(argv: list[str] | None = None) -> int:
    def work() -> None:
        parser = _parser("python -m twotower_utils similar", "The k movies most like a movie, from an exported model.")
        parser.add_argument("--title", action="append", default=[], required=True, help="a movie title (repeatable)")
        args = parser.parse_args(argv)
        _quiet_tensorflow()
        _similar(args, Output())

    return _run(work)


def _run(work) -> int:
    """Run a command; every way it can end becomes one line on stderr and an exit status.  Everything, the
    import of TensorFlow included, runs inside, so Ctrl-C at any moment ends with 'interrupted'."""
    try:
        work()
        return 0
    except InputError as error:
        return _fail(error, BAD_INPUT)
    except ExportError as error:
        return _fail(error, BAD_MODEL)
    except OutputError as error:
        _discard_output()
        return _fail(error, BAD_OUTPUT)
    except BrokenPipeError:  # `... | head`: the reader left, nothing is wrong
        _discard_output()
        return 0
    except KeyboardInterrupt:  # every batch was flushed whole: nothing partial is left in the buffer
        _say("interrupted")
        return INTERRUPTED
    except Exception as error:
        if not type(error).__module__.startswith("tensorflow"):
            raise
        return _fail(f"the model failed: {_last_line(error)}", BAD_MODEL)


def _fail(error, code: int) -> int:
    _say(f"error: {error}")
    return code


def _say(line: str) -> None:
    """A line on stderr, whatever its encoding can hold."""
    with contextlib.suppress(OSError, ValueError):
        try:
            sys.stderr.write(line + "\n")
        except UnicodeEncodeError:
            sys.stderr.write(ascii(line)[1:-1] + "\n")
        sys.stderr.flush()


def _last_line(error: Exception) -> str:
    """TensorFlow's messages put the node's stack first and what went wrong last."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _discard_output() -> None:
    """After the output failed (or the reader left), send what is still buffered, and the interpreter's own
    flush at exit, to /dev/null, so that nothing more fails."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# --- output ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C while a batch of records is being written takes effect once it is written, so the output never
    ends inside a record; a second Ctrl-C stops at once.  Only the main thread's default handler is
    replaced (an ignored SIGINT stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):
        previous = None
    if previous is not signal.default_int_handler:
        yield
        return
    pending: list[int] = []

    def defer(signum, frame):
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    signal.signal(signal.SIGINT, defer)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


class Output:
    """Standard output, written a batch of whole records at a time and flushed after each batch.

    A stream with a file descriptor is written with ``os.write`` until every byte is out: a signal that
    interrupts a blocked write to a pipe can make Python's buffered writer drop the rest of that write."""

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self.records = 0

    def write(self, text: str, records: int = 1) -> None:
        stream = self.stream or sys.stdout
        with _interrupts_deferred():
            try:
                fd = _descriptor(stream)
                if fd is None:
                    stream.write(text)
                    stream.flush()
                else:
                    data = text.encode(stream.encoding or "utf-8", stream.errors or "strict")
                    stream.flush()  # whatever went through the stream before comes first
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
            except UnicodeEncodeError as error:
                raise OutputError(_encoding_problem(error, stream)) from None
            except BrokenPipeError:
                raise
            except OSError as error:
                raise OutputError(f"cannot write the output: {error.strerror or error}") from None
        self.records += records


def _descriptor(stream) -> int | None:
    """The file descriptor under a text stream whose bytes are its encoded text (no newline translation)."""
    if os.linesep != "\n" or not isinstance(stream, io.TextIOWrapper):
        return None
    try:
        return stream.fileno()
    except (OSError, ValueError):
        return None


def _encoding_problem(error: UnicodeEncodeError, stream) -> str:
    text = error.object
    start = text.rfind("\n", 0, error.start) + 1
    end = text.find("\n", error.end)
    line = " ".join(text[start : len(text) if end < 0 else end].split())
    encoding = getattr(stream, "encoding", None) or error.encoding
    return (
        f"cannot write {text[error.start : error.end]!r} in the output's encoding, {encoding} "
        f"(in: {line}); set PYTHONIOENCODING=utf-8"
    )


class Records:
    """A command's answers in one format, batch by batch: ``write`` formats a batch (ids, their title and
    score rows, their flags) and writes it whole; ``close`` ends the output (JSON's closing bracket).
    ``lines``: JSON as one object per line (for ``--stream``)."""

    def __init__(self, fmt: str, key: str, flag: str | None, output: Output, lines: bool = False) -> None:
        self.fmt, self.key, self.flag, self.output, self.lines = fmt, key, flag, output, lines
        self.count = 0
        self._csv_titles: dict[bytes, str] = {}

    def write(self, names, titles, scores, flags=None) -> None:
        """``names``: the ids (strings); ``titles`` ``[B, k]`` bytes and ``scores`` ``[B, k]`` as the signature
        returns them (an empty title is an empty slot, left out); ``flags`` ``[B]`` bool or None."""
        import numpy as np

        if not len(names):
            return
        scores = np.round(np.asarray(scores, dtype=np.float64), 6)  # the digits every format shows
        flags = np.zeros(len(names), dtype=bool) if flags is None else np.asarray(flags, dtype=bool)
        if self.fmt == "csv":
            text = self._csv(list(names), np.asarray(titles, dtype=object), scores, flags)
        else:
            formatter = self._json if self.fmt == "json" else self._table
            text = formatter(names, titles.tolist(), scores.tolist(), flags.tolist())
        self.output.write(text, len(names))
        self.count += len(names)

    def close(self) -> None:
        if self.fmt == "json" and not self.lines:
            self.output.write("\n]\n" if self.count else "[]\n", 0)

    def _csv(self, names, titles, scores, flags) -> str:
        """Rows as ``csv.writer`` writes them, built with one ``%`` per run of users whose ``k`` slots are all
        filled: a third of the time of a row at a time, which is what a million users need."""
        import numpy as np

        parts = []
        if not self.count:
            parts.append(",".join([self.key, "rank", "movie_title", "score", *([self.flag] if self.flag else [])]))
            parts.append("\n")
        rows, k = titles.shape
        flat = titles.ravel().tolist()
        quoted = self._csv_titles
        for title in set(flat) - quoted.keys():
            quoted[title] = _csv_field(title.decode())
        fields = np.empty((rows, k, 4), dtype=object)
        plain = not any(c in "".join(names) for c in ',"\r\n')  # ids rarely need quotes: check them at once
        heads = [n + "," for n in names] if plain else [_csv_field(n) + "," for n in names]
        fields[:, :, 0] = np.array(heads, dtype=object)[:, None]
        fields[:, :, 1] = np.array([quoted[t] for t in flat], dtype=object).reshape(rows, k)
        fields[:, :, 2] = scores
        tails = np.where(flags, ",true\n", ",false\n") if self.flag else np.full(rows, "\n")
        fields[:, :, 3] = tails.astype(object)[:, None]
        template = "".join(f"%s{rank},%s,%.6g%s" for rank in range(1, k + 1))
        gaps = (titles == b"").any(axis=1)  # rows with empty slots (the left-out movies left fewer than k)
        start = 0
        for row in [*np.flatnonzero(gaps).tolist(), rows]:
            if row > start:
                parts.append((template * (row - start)) % tuple(fields[start:row].ravel().tolist()))
            if row < rows:
                parts += [f"{h}{rank},{t},{s:.6g}{e}" for rank, (h, t, s, e) in enumerate(fields[row], 1) if t]
            start = row + 1
        return "".join(parts)

    def _json(self, names, titles, scores, flags) -> str:
        objects = [self._object(*row) for row in zip(names, titles, scores, flags, strict=True)]
        if self.lines:
            return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
        body = ",\n".join(
            "  " + json.dumps(o, indent=2, ensure_ascii=False).replace("\n", "\n  ") for o in objects
        )  # json.dump(all, indent=2)'s layout, one record at a time
        return ("[\n" if not self.count else ",\n") + body

    def _object(self, name, row_titles, row_scores, flag) -> dict:
        record = {self.key: name}
        if self.flag:
            record[self.flag] = bool(flag)
        record["items"] = [
            {"rank": rank, "movie_title": title.decode(), "score": score}
            for rank, (title, score) in enumerate(zip(row_titles, row_scores, strict=True), 1)
            if title
        ]
        return record

    def _table(self, names, titles, scores, flags) -> str:
        label = "user" if self.key == "user_id" else "like"
        note = "  (unknown user: most popular movies, scores are rating counts)"
        parts = []
        for n, (name, row_titles, row_scores, flag) in enumerate(zip(names, titles, scores, flags, strict=True)):
            parts.append(f"{'' if n + self.count == 0 else chr(10)}{label} {name}{note if flag else ''}\n")
            parts.append(f"{'rank':>4}  {'score':>9}  title\n")
            for rank, (title, score) in enumerate(zip(row_titles, row_scores, strict=True), 1):
                if title:
                    parts.append(f"{rank:>4}  {score:>9.4f}  {title.decode()}\n")
        return "".join(parts)


def _csv_field(text: str) -> str:
    """A CSV field as ``csv.writer`` writes it (quoted when it holds a comma, a quote or a line break)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


# --- recommend ---------------------------------------------------------------------------------------
def _recommend(args, output: Output) -> None:
    # deferred: serving.loaded imports TensorFlow, which --help and argument errors never need
    from twotower_utils.serving.loaded import read_metadata, resolve_export

    if args.stream and (args.user or args.users_file not in (None, "-")):
        raise InputError("--stream reads the ids from standard input: leave out --user and --users-file")
    version_dir = resolve_export(args.model)
    metadata = read_metadata(version_dir)
    ids = UserIds(args, metadata)
    _check_k(args.k, metadata.get("num_movies"))
    ids.check_file()
    model = _load(version_dir)
    _check_k(args.k, model.num_movies)
    records = Records(args.format, "user_id", "cold_start", output, lines=args.stream)
    cold, examples = 0, []
    answers = _answers(model, ids.batches(args.batch_size), args.k, args.include_seen, ahead=not args.stream)
    try:
        for batch, out in answers:
            records.write(batch, out["movie_titles"], out["scores"], out["cold_start"])
            ids.answered += len(batch)
            flagged = int(out["cold_start"].sum())
            if flagged:
                cold += flagged
                if len(examples) < 3:
                    examples += [u for u, c in zip(batch, out["cold_start"].tolist(), strict=True) if c][:3]
    except _StoppedAt as stop:
        raise InputError(ids.stopped(stop.error)) from None
    finally:
        answers.close()  # a batch still being computed is waited for
    if not ids.answered and not args.stream:
        raise InputError(ids.nothing_given())
    records.close()
    if cold == 1:
        _say(f"notice: user {examples[0]!r} is not in the model: the {COLD_START}")
    elif cold:
        shown = ", ".join(repr(u) for u in examples[:3])
        _say(f"notice: {cold:,} users not in the model: {COLD_START}; e.g. {shown}")
    if ids.skipped:
        _say(f"notice: {ids.skipped_summary()}")


# short lines of ASCII digits with blanks around them (and blank lines): the fast path of a users file
_DIGIT_LINES = re.compile(rb"(?:[ \t\r]{0,64}[0-9]{0,64}[ \t\r]{0,64}\n)*[ \t\r]{0,64}[0-9]{0,64}[ \t\r]{0,64}")


def _answers(model, batches: Iterator[list[str]], k: int, include_seen: bool, ahead: bool):
    """``(batch, answer)`` in order.  ``ahead``: the next batch is read and computed (TensorFlow, in a worker
    thread, without the GIL) while this one is formatted and written; ``--stream`` answers at once instead."""
    if not ahead:
        for batch in batches:
            yield batch, model.recommend(batch, k, include_seen=include_seen)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="twotower-recommend") as pool:
        running = None
        try:
            for batch in batches:
                submitted = (batch, pool.submit(model.recommend, batch, k, include_seen=include_seen))
                if running is not None:
                    yield running[0], running[1].result()
                running = submitted
        except _StoppedAt:  # a bad line: the batches before it are answered first
            if running is not None:
                yield running[0], running[1].result()
            raise
        if running is not None:
            yield running[0], running[1].result()


class _StoppedAt(Exception):
    """A bad line in the strict default, raised once the ids before it were handed on."""

    def __init__(self, error: ValueError) -> None:
        super().__init__(str(error))
        self.error = error


class UserIds:
    """The ids to answer: ``--user`` values, then the lines of ``--users-file`` (a file or standard input),
    each checked against the model's id format, handed on in batches."""

    def __init__(self, args, metadata: dict) -> None:
        self.source = args.users_file if not args.stream else "-"
        self.stream = args.stream
        self.skip = args.skip_bad_lines
        self.where = "stdin" if self.source == "-" else self.source
        self.pattern = metadata.get("user_id_pattern")
        self.example = metadata.get("example_user_id", "42")
        self._match = self._matcher(self.pattern)
        self._clean = _DIGIT_LINES if self.pattern == "[0-9]+" else None
        self.answered = self.skipped = 0
        self.first_skipped = ""
        if not args.user and not self.source:
            raise InputError("give a user id (--user 42) or a file of ids (--users-file FILE, '-' for stdin)")
        self.given = [self._checked_user(value) for value in args.user]
        self.handle = None
        if self.source and self.source != "-":
            try:
                self.handle = open(self.source, "rb")  # noqa: SIM115  (read in batches, closed at the end)
            except OSError as error:
                raise InputError(f"cannot read users file '{self.source}': {error.strerror or error}") from None

    @staticmethod
    def _matcher(pattern):
        if not pattern:
            return lambda text: True
        if pattern == "[0-9]+":
            return lambda text: text.isascii() and text.isdigit()
        return re.compile(pattern).fullmatch

    def _problem(self, value: str) -> str:
        kind = "whole numbers such as" if self.pattern == "[0-9]+" else "like"
        return f"this model's user ids are {kind} {self.example!r}"

    def _checked_user(self, value: str) -> str:
        user_id = value.strip()
        if not user_id:
            raise InputError("empty user id (--user)")
        if not self._match(user_id):
            raise InputError(f"malformed user id {value!r} (--user): {self._problem(value)}")
        return user_id

    def _line(self, raw: bytes, number: int) -> str | None:
        """The id on a line, None for a blank one; ``ValueError`` says what is wrong with a bad one."""
        if len(raw) > MAX_LINE:
            raise ValueError(f"a line longer than {MAX_LINE:,} bytes (line {number} of {self.where})")
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise ValueError(f"text that is not UTF-8 (line {number} of {self.where})") from None
        user_id = text.strip()
        if not user_id:
            return None
        if not self._match(user_id):
            value = text.rstrip("\r\n")
            raise ValueError(f"malformed user id {value!r} (line {number} of {self.where}): {self._problem(value)}")
        return user_id

    def check_file(self) -> None:
        """A users file read in full before the model is loaded: in the strict default a bad line is reported
        before anything is written (standard input can be read only once: it is checked as it is answered)."""
        if self.handle is None or self.skip or not os.path.isfile(self.source):
            return
        found = len(self.given)
        for ids in self._parsed():
            if isinstance(ids, ValueError):
                raise InputError(f"{ids} (--skip-bad-lines skips such lines)")
            found += len(ids)
        if not found:
            raise InputError(self.nothing_given())
        os.lseek(self.handle.fileno(), 0, os.SEEK_SET)

    def _parsed(self) -> Iterator[list[str] | ValueError]:
        """The input's ids, a list per block read.  A bad line comes as its ``ValueError`` (after the ids before
        it), or with ``--skip-bad-lines`` is counted and skipped.  A block of whole numbers and blanks only
        (the usual file, for a model with whole-number ids) is split at once rather than line by line."""
        number = 0
        for block in self._blocks():
            lines = block.count(b"\n") + (not block.endswith(b"\n"))
            if self._clean is not None and self._clean.fullmatch(block):
                number += lines
                yield block.decode("ascii").split()
                continue
            ids = []
            for raw in block.split(b"\n")[:lines]:
                number += 1
                try:
                    user_id = self._line(raw.rstrip(b"\r"), number)
                except ValueError as error:
                    if not self.skip:
                        yield ids
                        yield error
                        return
                    self._skip(error)
                    continue
                if user_id is not None:
                    ids.append(user_id)
            yield ids

    def _blocks(self) -> Iterator[bytes]:
        """The input in blocks of whole lines, one per read: a read returns what the input holds at that moment,
        so in a pipe each block is what has arrived.  A UTF-8 byte-order mark is dropped; a line longer than
        ``MAX_LINE`` is cut there (and then refused): memory stays bounded whatever the input."""
        handle = self.handle if self.handle is not None else sys.stdin
        raw = getattr(handle, "buffer", handle)
        try:
            fd = raw.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        first = True
        if fd is None:  # a stream without a file descriptor (a test's StringIO): line by line
            for line in raw:
                line = line.encode() if isinstance(line, str) else line
                yield line.removeprefix(b"\xef\xbb\xbf") if first else line
                first = False
            return
        rest = b""
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError as error:
                raise InputError(f"cannot read users file '{self.source}': {error.strerror or error}") from None
            if not data:
                break
            if first and (rest + data).startswith(b"\xef\xbb\xbf"[: len(rest + data)]):
                if len(rest + data) < 3:  # not enough to tell yet
                    rest += data
                    continue
                data, rest = (rest + data)[3:], b""
            first = False
            end = data.rfind(b"\n")
            if end < 0:
                rest = (rest + data)[: MAX_LINE + 1]  # too long already: the rest of the line is not kept
                continue
            block, rest = rest + data[: end + 1], data[end + 1 :][: MAX_LINE + 1]
            yield block
        if rest:
            yield rest

    def batches(self, size: int) -> Iterator[list[str]]:
        """Lists of at most ``size`` ids: the ``--user`` values, then the input's ids; with ``--stream`` every
        read's ids are handed on at once.  A bad line stops the run after the ids before it were answered
        (or, with ``--skip-bad-lines``, is counted and skipped)."""
        pending = list(self.given)
        try:
            for ids in self._parsed() if self.source else ():
                if isinstance(ids, ValueError):
                    if pending:
                        yield pending
                    raise _StoppedAt(ids)
                pending += ids
                while len(pending) >= size:
                    yield pending[:size]
                    pending = pending[size:]
                if self.stream and pending:
                    yield pending
                    pending = []
        finally:
            if self.handle is not None:
                self.handle.close()
        while pending:
            yield pending[:size]
            pending = pending[size:]

    def _skip(self, error: ValueError) -> None:
        self.skipped += 1
        if self.skipped == 1:
            self.first_skipped = str(error)
        if self.stream:
            _say(f"notice: skipped {error}")

    def stopped(self, error: ValueError) -> str:
        done = f"; stopped there: the answers for the {self.answered:,} ids before it were written" * bool(
            self.answered
        )
        return f"{error}{done} (--skip-bad-lines skips such lines)"

    def skipped_summary(self) -> str:
        lines = "1 bad line" if self.skipped == 1 else f"{self.skipped:,} bad lines"
        return f"skipped {lines} of {self.where} (the first: {self.first_skipped})"

    def nothing_given(self) -> str:
        where = "standard input" if self.source == "-" else f"'{self.source}'"
        if self.skipped:
            return f"no user ids given: every line of {where} was skipped ({self.skipped_summary()})"
        return f"no user ids given: {where} is empty"


def _check_k(k: int, most, what: str = "the catalogue") -> None:
    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if most and k > most:
        raise InputError(f"--k must be at most {most} ({what}), got {k}")


def _load(version_dir: Path):
    # deferred: TensorFlow's import (most of a call's start-up) happens inside the interrupt-guarded block
    from twotower_utils.serving.loaded import load_export

    return load_export(version_dir)


# --- similar -----------------------------------------------------------------------------------------
def _similar(args, output: Output) -> None:
    # deferred: serving.loaded imports TensorFlow, which --help and argument errors never need
    from twotower_utils.serving.loaded import read_metadata, resolve_export

    version_dir = resolve_export(args.model)
    titles = [unicodedata.normalize("NFC", t).strip() for t in args.title]
    if not all(titles):
        raise InputError("empty title")
    num_movies = read_metadata(version_dir).get("num_movies")
    _check_k(args.k, num_movies and num_movies - 1, "the catalogue less the movie itself")
    model = _load(version_dir)
    _check_k(args.k, model.num_movies - 1, "the catalogue less the movie itself")
    catalogue = model.titles()
    known = {unicodedata.normalize("NFC", t): t for t in catalogue}
    for title in titles:
        if title not in known:
            raise InputError(f"unknown title {title!r}{_suggest(title, catalogue)}")
    queries = [known[t] for t in titles]
    out = model.similar(queries, args.k)
    records = Records(args.format, "title", None, output)
    records.write(queries, out["similar_titles"], out["scores"])
    records.close()


def fold(title: str) -> str:
    """A title for comparing what people type: NFC, case folded, runs of spaces made one."""
    return " ".join(unicodedata.normalize("NFC", title).casefold().split())


def _suggest(title: str, catalogue: list[str]) -> str:
    folded = fold(title)
    by_fold: dict[str, list[str]] = {}
    for t in catalogue:
        by_fold.setdefault(fold(t), []).append(t)
    close = by_fold.get(folded, [])
    close += [t for f, ts in by_fold.items() if folded in f and f != folded for t in ts]
    if not close:
        close = [t for f in difflib.get_close_matches(folded, list(by_fold), 5, 0.5) for t in by_fold[f]]
    return (
        "; did you mean: " + ", ".join(repr(t) for t in close[:5])
        if close
        else " (titles include the year, e.g. 'Star Wars (1977)')"
    )
