"""Run the numbered notebooks headless with papermill: ``python -m twotower_utils run``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from twotower_utils.results import read_metrics, record_metrics

PROG = "python -m twotower_utils run"
DEFAULT_KERNEL = "twotower"


def numbered_notebooks(notebook_dir: Path) -> list[Path]:
    """``NN_name.ipynb`` files in order."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(notebook: Path, output_dir: Path, parameters: dict, kernel: str) -> float:
    """Execute one notebook into ``output_dir/executed``; raise ``RuntimeError`` naming it on failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed = output_dir / "executed" / notebook.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    previous = os.environ.get("TWOTOWER_HEADLESS")
    os.environ["TWOTOWER_HEADLESS"] = "1"  # the kernel inherits it: no widgets can render here
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters={**parameters, "output_dir": str(output_dir.resolve())},
            kernel_name=kernel,
            cwd=str(notebook.parent),
            progress_bar=False,
        )
    except PapermillExecutionError as error:
        raise RuntimeError(
            f"{notebook.name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
            f"  the executed notebook with the error is kept at {executed}"
        ) from None
    finally:
        if previous is None:
            os.environ.pop("TWOTOWER_HEADLESS", None)
        else:
            os.environ["TWOTOWER_HEADLESS"] = previous
    return time.perf_counter() - start


def parse_parameters(pairs: list[str]) -> dict:
    """``name=value`` pairs; numbers become numbers."""
    parameters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"parameters are name=value, got {pair!r}")
        parameters[name] = _parse_value(value)
    return parameters


def _parse_value(value: str):
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    parser.add_argument("--output-dir", type=Path, default=Path("results"))
    parser.add_argument("--kernel", default=DEFAULT_KERNEL)
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name starts with these prefixes")
    parser.add_argument("-p", "--parameter", action="append", default=[], help="name=value, passed to every notebook")
    args = parser.parse_args(argv)
    parameters = parse_parameters(args.parameter)
    notebooks = numbered_notebooks(args.notebooks)
    if args.only:
        notebooks = [n for n in notebooks if n.name.startswith(tuple(args.only))]
    if not notebooks:
        print(f"no numbered notebooks found in {args.notebooks}", file=sys.stderr)
        return 1
    timings = {}
    for notebook in notebooks:
        print(f"running {notebook.name} ...", flush=True)
        try:
            timings[notebook.stem] = round(run_notebook(notebook, args.output_dir, parameters, args.kernel), 1)
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"  done in {timings[notebook.stem]:.1f} s", flush=True)
    previous = read_metrics(args.output_dir).get("run", {}).get("seconds_per_notebook", {})
    record_metrics(args.output_dir, "run", {"parameters": parameters, "seconds_per_notebook": {**previous, **timings}})
    print(f"all {len(notebooks)} notebooks ran in {sum(timings.values()):.1f} s; outputs in {args.output_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
