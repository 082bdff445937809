"""The results page of the docs, generated from what the runs recorded: ``make docs``
(``python -m twotower_utils.notebook.docs --results results --output docs/results.md``).

- One section per numbered notebook, rendered from its section of ``results/metrics.json``; the
  section names the command that produced it and when, read from the executed notebook's papermill
  metadata (``results/executed/NN_*.ipynb``: its parameters and end time), else from the time
  ``metrics.json`` was last written.  A notebook with nothing recorded says ``not run yet`` and the
  command that runs it.
- Then the benchmarks (``results/bench/*.json``) and the validation studies (``results/<study>/*.json``),
  each with the make target that writes it, the command line the file recorded, and the file's date.
- Tables are built from the recorded values by their shape (numbers by name, a row per record,
  a matrix for a dict of dicts), so the page follows whatever the notebooks record: a number on the
  page is a number in a file, never typed by hand.
- Deterministic: keys in a fixed (natural) order, one float format, no generation time, paths as
  given on the command line; rerunning on the same inputs writes the same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import shlex
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from twotower_utils.experiments.headline import FILE as HEADLINE_FILE
from twotower_utils.experiments.headline import markdown as headline_table
from twotower_utils.notebook.runner import STUDY, notebook_parameters, numbered_notebooks, parameters_table

PROG = "python -m twotower_utils.notebook.docs"
MAKE_DOCS = "make docs"
MAX_ROWS = 40  # rows of one table; the rest are counted, not shown
MAX_INLINE = 12  # a list of numbers longer than this is summarised
MAX_COLUMNS = 14  # a dict of dicts wider than this is shown as one table per key
MAX_DEPTH = 5  # heading level of the deepest nested key; deeper values are flattened into dotted keys
SET_BY_RUNNER = ("output_dir",)


@dataclass(frozen=True)
class Source:
    """A report file some command writes under the results folder."""

    path: str  # relative to the results folder
    title: str
    command: str


BENCHMARKS = (
    Source("bench/training.json", "Training speed", "make bench"),
    Source("bench/serving.json", "Serving latency, exact vs ScaNN", "make bench-serving"),
    Source("bench/scale.json", "Scaling with data size", "make bench-scale"),
    Source(
        "bench/evaluation.json",
        "Evaluation speed",
        "python benchmarks/bench_evaluation.py --output results/bench/evaluation.json",
    ),
)
STUDIES = (
    Source("sweep/summary.json", "Embedding-dimension sweep (notebook 05)", "make sweep"),
    Source("tuning/tuning.json", "k-fold validation of the two-tower switches (notebook 06)", "make tune"),
    Source("ranking/ranking_tuning.json", "Ranking stage validation (notebook 08)", "make ranking-tune"),
    Source("multitask/multitask_tuning.json", "Multitask validation (notebook 07)", "make multitask-tune"),
    Source("sequence/sequence_tuning.json", "Sequence tower validation (notebook 09)", "make sequence-tune"),
    Source(
        "sequence/study_sequence_sasrec.json",
        "SASRec trained on every position, early-stopped, and its blend with recency-weighted EASE (3 seeds)",
        "make sequence-study",
    ),
    Source(
        "sequence/study_sequence_gru.json",
        "The GRU tower trained on every position, and its blend with recency-weighted EASE (3 seeds)",
        "make sequence-study",
    ),
    Source(
        "ranking/study_reranker.json",
        "Re-rankers over every signal: linear and LightGBM lambdarank (3 seeds, two random splits)",
        "make reranker-study",
    ),
    Source(
        "studies/rating_models_u1.json",
        "Stronger rating models on the canonical u1 split (chosen on validation, 3 seeds)",
        "make rating-study",
    ),
    Source(
        "studies/rating_models_random.json",
        "Stronger rating models on the report's random split (chosen on validation, 3 seeds)",
        "make rating-study",
    ),
)


# ----------------------------------------------------------------------------------------------- formatting


def natural_key(text: Any) -> tuple:
    """``"2" < "10"``, ``"top_5" < "top_10"``: digit runs compare as numbers."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(text))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts) if p)


def format_number(value: float | int) -> str:
    """One format for every number: integers as they are, floats with 4 decimals (1 from 1000 on,
    scientific below 0.001), so a rerun on the same values writes the same text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:.1f}"
    if abs(value) >= 0.001:
        return f"{value:.4f}"
    return f"{value:.2e}"


def escape(text: str) -> str:
    """Text safe inside a Markdown table cell (an underscore inside a word stays as it is)."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*\[\]|])", r"\\\1", text)
    return re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", text)


def code(text: str) -> str:
    """``text`` as inline code (in a table cell too: pipes escaped, no backticks inside)."""
    return "`" + " ".join(str(text).split()).replace("`", "'").replace("|", "\\|") + "`"


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(is_scalar(v) for v in value)


def cell(value: Any) -> str:
    """A scalar (or a list of scalars) as table-cell text."""
    if value is None:
        return "–"
    if isinstance(value, (bool, int, float)):
        return format_number(value)
    if is_scalar_list(value):
        return list_text(value)
    if isinstance(value, str):
        return escape(value)
    return escape(json.dumps(value, sort_keys=True))


def list_text(values: list) -> str:
    """A list of scalars inline; a long list of numbers as its length, ends and range."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(values) > MAX_INLINE and len(numbers) == len(values):
        return (
            f"{len(values)} values: {format_number(values[0])} … {format_number(values[-1])} "
            f"(min {format_number(min(numbers))}, max {format_number(max(numbers))})"
        )
    if len(values) > MAX_INLINE:
        return ", ".join(cell(v) for v in values[:MAX_INLINE]) + f", … ({len(values)} in all)"
    return ", ".join(cell(v) for v in values) if values else "(none)"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys; lists of dicts indexed ``key[0]``."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key in sorted(value, key=natural_key):
            found.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, list) and not is_scalar_list(value):
        found = {}
        for index, item in enumerate(value):
            found.update(flatten(item, f"{prefix}[{index}]"))
        return found
    return {prefix: value}


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    rows = list(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append(f"| … {len(rows) - MAX_ROWS} more rows |" + " |" * (len(header) - 1))
    return lines + [""]


def key_value_table(values: dict[str, Any]) -> list[str]:
    return table(["", "value"], ([code(k) if k else "", cell(v)] for k, v in values.items()))


def all_numeric_keys(values: dict) -> bool:
    return bool(values) and all(re.fullmatch(r"-?\d+(\.\d+)?", str(k)) for k in values)


# ----------------------------------------------------------------------------------------------- rendering


def render_value(name: str, value: Any, level: int) -> list[str]:
    """Markdown for one recorded value under a heading of ``level`` (``###`` = 3)."""
    heading = ["#" * min(level, 6) + " " + code(name), ""] if name else []
    if is_scalar(value) or is_scalar_list(value):
        return heading + [cell(value), ""]
    if isinstance(value, list):
        if all(isinstance(v, dict) for v in value):
            return heading + records_table(value)
        return heading + key_value_table(flatten(value))
    if not value:
        return heading + ["(empty)", ""]
    if all(is_scalar(v) or is_scalar_list(v) for v in value.values()):
        keys = sorted(value, key=natural_key)
        if all_numeric_keys(value) and len(keys) <= MAX_COLUMNS:  # e.g. top-k accuracy by k
            return heading + table([escape(k) for k in keys], [[cell(value[k]) for k in keys]])
        return heading + key_value_table({k: value[k] for k in keys})
    if all(isinstance(v, dict) for v in value.values()):
        rows = {k: flatten(v) for k, v in value.items()}
        columns = sorted({c for row in rows.values() for c in row}, key=natural_key)
        if len(columns) <= MAX_COLUMNS and all(
            is_scalar(v) or is_scalar_list(v) for r in rows.values() for v in r.values()
        ):
            ordered = sorted(rows, key=natural_key)
            return heading + table(
                ["", *(code(c) for c in columns)],
                ([escape(k), *(cell(rows[k].get(c)) for c in columns)] for k in ordered),
            )
    if level >= MAX_DEPTH:
        return heading + key_value_table(flatten(value))
    return heading + render_mapping(value, level + 1)


def records_table(records: list[dict]) -> list[str]:
    """One row per record; its keys (flattened) are the columns."""
    rows = [flatten(record) for record in records]
    columns: list[str] = []
    for row in rows:  # first-seen order: records keep the column order they were written in
        columns += [c for c in row if c not in columns]
    return table([code(c) for c in columns], ([cell(row.get(c)) for c in columns] for row in rows))


def render_mapping(values: dict[str, Any], level: int, skip: Sequence[str] = ()) -> list[str]:
    """The scalars of ``values`` in one table, then a heading and a table per nested value."""
    keys = [k for k in sorted(values, key=natural_key) if k not in skip]
    scalars = {k: values[k] for k in keys if is_scalar(values[k]) or is_scalar_list(values[k])}
    lines = key_value_table(scalars) if scalars else []
    for key in keys:
        if key not in scalars:
            lines += render_value(key, values[key], level)
    return lines


# ----------------------------------------------------------------------------------------------- provenance


def utc_text(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def file_time(path: Path) -> str:
    return utc_text(dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC))


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def notebook_title(notebook: Path) -> str:
    """The notebook's first Markdown ``# `` heading, else its name."""
    try:
        cells = json.loads(notebook.read_text()).get("cells", [])
    except (OSError, ValueError):
        cells = []
    for cell_ in cells:
        if cell_.get("cell_type") == "markdown":
            source = "".join(cell_.get("source", []))
            for line in source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem.replace("_", " ")


def papermill_record(executed: Path) -> dict[str, Any] | None:
    """The papermill metadata of an executed notebook (parameters, start and end time), or None."""
    content = read_json_file(executed)
    if not isinstance(content, dict):
        return None
    record = content.get("metadata", {}).get("papermill")
    return record if isinstance(record, dict) and record.get("end_time") else None


def run_command(number: str, parameters: dict[str, Any], declared: Iterable[str] = ()) -> str:
    """The runner's command line for one notebook with the parameters it ran with: ``--study`` when every value of
    ``STUDY`` that the notebook declares (``declared``: its parameter names) is among them."""
    given = {name: value for name, value in parameters.items() if name not in SET_BY_RUNNER}
    declared = set(declared)
    study = [name for name in STUDY if name in declared]
    studied = bool(study) and all(name in given and given[name] == STUDY[name] for name in study)
    parts = ["python -m twotower_utils run", *(["--study"] if studied else []), "--only", number]
    for name in sorted(given, key=natural_key):
        if not (studied and name in study):
            parts += ["-p", shlex.quote(f"{name}={given[name]}")]
    return " ".join(parts)


def recorded_command(report: Any) -> str | None:
    """A report's own ``command`` (its ``sys.argv``) as a command line, or None."""
    argv = report.get("command") if isinstance(report, dict) else None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        return None
    program = PurePosixPath(argv[0])
    if program.name == "__main__.py":
        head = f"python -m {program.parent.name}"
    elif program.suffix == ".py":
        head = f"python {'/'.join(program.parts[-2:]) if program.parent.name == 'benchmarks' else program.name}"
    else:
        head = program.name
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


# ----------------------------------------------------------------------------------------------- the page


def notebook_sections(metrics: dict[str, Any], notebooks: list[Path]) -> dict[str, str]:
    """``{notebook stem: metrics section}``: a section belongs to the notebook of its number prefix."""
    owner = {}
    for section in sorted(metrics, key=natural_key):
        number = section[:2]
        if number.isdigit():
            for notebook in notebooks:
                if notebook.name.startswith(number + "_") and notebook.stem not in owner:
                    owner[notebook.stem] = section
    return owner


def render_notebook(notebook: Path, section: str | None, metrics: dict, results: Path, results_label: str) -> list[str]:
    number = notebook.name[:2]
    title = notebook_title(notebook)
    lines = [f"## {escape(title if title.startswith(number) else f'{number} · {title}')}", ""]
    if section is None:
        lines += [f"Not run yet: `{run_command(number, {})}` (or `make run-notebooks` for the whole series).", ""]
        return lines
    executed = results / "executed" / notebook.name
    record = papermill_record(executed)
    seconds = metrics.get("run", {}).get("seconds_per_notebook", {}).get(notebook.stem)
    took = f", in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    if record is not None:
        when = utc_text(dt.datetime.fromisoformat(record["end_time"]))
        command = run_command(number, record.get("parameters") or {}, notebook_parameters(notebook))
        lines += [
            f"Recorded by `{command}` on {when}{took} "
            f"(executed copy: `{results_label}/executed/{notebook.name}`; section {code(section)} "
            f"of `{results_label}/metrics.json`).",
            "",
        ]
    else:
        when = file_time(results / "metrics.json")
        lines += [
            f"Recorded by running `notebooks/{notebook.name}` (no executed copy in `{results_label}/executed/`: "
            f"run in JupyterLab or by `{run_command(number, {})}`); `{results_label}/metrics.json` "
            f"last written on {when}.",
            "",
        ]
    values = metrics[section]
    if isinstance(values, dict):
        lines += render_mapping(values, 3)
    else:
        lines += render_value("", values, 3)
    return lines


def render_report(source: Source, results: Path, results_label: str) -> list[str]:
    path = results / source.path
    lines = [f"### {escape(source.title)}", ""]
    report = read_json_file(path) if path.exists() else None
    if report is None:
        return lines + [f"Not run yet: `{source.command}` (writes `{results_label}/{source.path}`).", ""]
    recorded = recorded_command(report)
    line = f"Recorded by `{source.command}` on {file_time(path)} (`{results_label}/{source.path}`)"
    line += f"; its command line: `{recorded}`." if recorded else "."
    lines += [line, ""]
    if isinstance(report, dict):
        return lines + render_mapping(report, 4, skip=("command",))
    return lines + render_value("", report, 4)


def render_results(results: Path, notebooks_dir: Path, results_label: str | None = None) -> str:
    """The whole results page as Markdown text."""
    results_label = results_label or results.as_posix()
    metrics_path = results / "metrics.json"
    metrics = read_json_file(metrics_path) if metrics_path.exists() else None
    metrics = metrics if isinstance(metrics, dict) else {}
    notebooks = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    owner = notebook_sections(metrics, notebooks)
    lines = [
        "# Results",
        "",
        f"Generated by `{MAKE_DOCS}` from the files the runs recorded under `{results_label}/`; do not edit by hand.",
        "Every table below is rendered from a recorded value, with the command that produced it and when.",
        "",
        "## The notebooks",
        "",
    ]
    run = metrics.get("run", {})
    if isinstance(run, dict) and run.get("seconds_per_notebook"):
        times = run["seconds_per_notebook"]
        rows = []
        for stem in sorted(times, key=natural_key):
            record = papermill_record(results / "executed" / f"{stem}.ipynb")
            when = utc_text(dt.datetime.fromisoformat(record["end_time"])) if record else "–"
            seconds = times[stem]
            rows.append([escape(stem), f"{seconds:.1f}" if isinstance(seconds, (int, float)) else cell(seconds), when])
        lines += ["Seconds per notebook, as `make run-notebooks` recorded them:", ""]
        lines += table(["notebook", "seconds", "finished"], rows)
        if run.get("parameters"):
            lines += ["Parameters of the last run:", ""] + key_value_table(dict(sorted(run["parameters"].items())))
    elif not metrics:
        lines += [f"Not run yet: `make run-notebooks` (writes `{results_label}/metrics.json`).", ""]
    for notebook in notebooks:
        lines += render_notebook(notebook, owner.get(notebook.stem), metrics, results, results_label)
    others = [s for s in sorted(metrics, key=natural_key) if s != "run" and s not in owner.values()]
    if others:
        lines += ["## Other recorded sections", ""]
        for section in others:
            lines += [
                f"### {code(section)}",
                "",
                f"From `{results_label}/metrics.json`, last written on {file_time(metrics_path)}.",
                "",
            ]
            values = metrics[section]
            lines += render_mapping(values, 4) if isinstance(values, dict) else render_value("", values, 4)
    lines += ["## Benchmarks", ""]
    known = {source.path for source in BENCHMARKS}
    extra = sorted(p.relative_to(results).as_posix() for p in (results / "bench").glob("*.json"))
    for source in [*BENCHMARKS, *(Source(p, p, "a benchmark") for p in extra if p not in known)]:
        lines += render_report(source, results, results_label)
    lines += ["## Validation studies", ""]
    for source in STUDIES:
        lines += render_report(source, results, results_label)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def rating_study_table(results: Path) -> str | None:
    """The rating-model study (``make rating-study``) as one table: test RMSE and MAE on u1 and on the report's
    split, mean ± std over the seeds, and the fit time (with the refit on the whole training part when the study
    refitted); ``None`` until both files exist."""
    found = {}
    for split in ("u1", "random"):
        path = results / "studies" / f"rating_models_{split}.json"
        if not path.exists():
            return None
        found[split] = read_json_file(path)["splits"][split]["summary"]
    header = ["model", "u1 RMSE", "u1 MAE", "seed split RMSE", "seed split MAE", "fit s (u1)"]
    rows = []
    for name, row in sorted(found["u1"].items(), key=lambda item: -item[1]["rmse"]):  # the best last
        other = found["random"].get(name, {})
        rows.append(
            [
                name,
                f"{row['rmse']:.4f} ± {row['rmse_std']:.4f}",
                f"{row['mae']:.4f}",
                f"{other['rmse']:.4f} ± {other['rmse_std']:.4f}" if other else "–",
                f"{other['mae']:.4f}" if other else "–",
                f"{row['fit_seconds'] + row.get('refit_seconds', 0.0):.0f}" if "fit_seconds" in row else "–",
            ]
        )
    return "\n".join(table(header, rows)).rstrip()


def reranker_study_table(results: Path) -> str | None:
    """The every-signal re-ranker study (``make reranker-study``): filtered HR@10 and NDCG@10 per pipeline and
    split (mean ± std, and every seed's HR@10), then LightGBM's most useful features; ``None`` until it was run."""
    path = results / "ranking" / "study_reranker.json"
    if not path.exists():
        return None
    found = read_json_file(path)
    splits = found["splits"]
    header = ["pipeline"]
    for split in splits:
        header += [f"split {split}: HR@10", "NDCG@10", "every seed (HR@10)"]
    first = next(iter(splits.values()))["runs"]

    def first_hit_rate(name: str) -> float:  # rows by the first split's mean HR@10, the lowest (stage one) first
        runs = first.get(name, [])
        return statistics.fmean(r["HR@10 filtered"] for r in runs) if runs else math.inf

    names = sorted(dict.fromkeys(name for part in splits.values() for name in part["runs"]), key=first_hit_rate)
    rows = []
    for name in names:
        row = [name]
        for part in splits.values():
            runs = part["runs"].get(name, [])
            hr = [r["HR@10 filtered"] for r in runs]
            ndcg = [r["NDCG@10"] for r in runs]
            row += (
                [
                    f"{statistics.fmean(hr):.4f} ± {statistics.pstdev(hr):.4f}",
                    f"{statistics.fmean(ndcg):.4f}",
                    " ".join(f"{v:.4f}" for v in hr),
                ]
                if runs
                else ["–", "–", "–"]
            )
        rows.append(row)
    lines = table(header, rows)
    top = found.get("importances", [])[:5]
    if top:
        lines.append(
            "LightGBM's largest shares of the total gain: "
            + ", ".join(f"{r['feature']} {r['gain share']:.2f}" for r in top)
            + "."
        )
    return "\n".join(lines).rstrip()


def fill_block(text: str, name: str, content: str) -> str:
    """``text`` with what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``content``
    (a generated block inside a hand-written page); one ``ValueError`` when the markers are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start} ... {end} block")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{content.rstrip()}\n{end}{tail}"


def fill_page_blocks(path: Path, blocks: dict[str, str]) -> bool:
    """Fill each named block of the page at ``path`` (``fill_block``); whether the file changed."""
    text = path.read_text()
    for name, content in blocks.items():
        text = fill_block(text, name, content)
    return write_if_changed(path, text)


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; whether it wrote."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="the runs' output folder")
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    parser.add_argument("--output", type=Path, default=Path("docs/results.md"))
    args = parser.parse_args(argv)
    if not args.notebooks.is_dir():
        print(f"error: no notebooks folder at {args.notebooks}", file=sys.stderr)
        return 1
    text = render_results(args.results, args.notebooks)
    changed = write_if_changed(args.output, text)
    print(f"{'wrote' if changed else 'unchanged:'} {args.output} (from {args.results}/)")
    headline = args.results / HEADLINE_FILE
    readme = args.output.parent.parent / "README.md"
    if headline.exists() and readme.exists():
        found = read_json_file(headline)
        block = f"{headline_table(found)}\n\nFrom `{found.get('command', 'make headline')}` ({found.get('seconds', 0):.0f} s here)."
        changed = fill_page_blocks(readme, {"headline": block})
        print(f"{'wrote' if changed else 'unchanged:'} {readme} (the headline table, from {headline})")
    findings = args.output.parent / "findings.md"
    study = rating_study_table(args.results)
    if study is not None and findings.exists():
        changed = fill_page_blocks(findings, {"rating-study": f"{study}\n\nFrom `make rating-study`."})
        print(f"{'wrote' if changed else 'unchanged:'} {findings} (the rating-model study)")
    reranker = reranker_study_table(args.results)
    if reranker is not None and findings.exists():
        argv = read_json_file(args.results / "ranking" / "study_reranker.json").get("command", [])
        command = " ".join(a for i, a in enumerate(argv) if a != "--output" and (i == 0 or argv[i - 1] != "--output"))
        changed = fill_page_blocks(
            findings, {"reranker-study": f"{reranker}\n\nFrom `make reranker-study` (`{command}`)."}
        )
        print(f"{'wrote' if changed else 'unchanged:'} {findings} (the re-ranker study)")
    running = args.output.parent / "running.md"
    if running.exists():
        table = parameters_table(numbered_notebooks(args.notebooks))
        changed = fill_page_blocks(running, {"parameters": table})
        print(f"{'wrote' if changed else 'unchanged:'} {running} (the parameters table, from {args.notebooks}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
