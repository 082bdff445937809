"""Committed notebooks carry no outputs: ``python -m twotower_utils.notebook.hygiene [--fix] NB.ipynb ...``.

Used by ``make lint``, the pre-commit hook and the tests.  Outputs in git make diffs unreadable,
grow the repository and show numbers that the code at that commit may no longer produce; the
numbers a reader should see come from running the notebook (``make run-notebooks``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat


def leftovers(notebook) -> list[str]:
    """What a committed notebook should not have: ``"cell 3: outputs"``, ``"cell 3: execution count"``."""
    found = []
    for index, cell in enumerate(notebook.cells, 1):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index}: outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution count")
    return found


def clear(notebook) -> None:
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twotower_utils.notebook.hygiene", description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--fix", action="store_true", help="clear the outputs instead of failing")
    args = parser.parse_args(argv)
    dirty = 0
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        found = leftovers(notebook)
        if not found:
            continue
        if args.fix:
            clear(notebook)
            nbformat.write(notebook, path)
            print(f"{path}: cleared {len(found)} output(s)")
        else:
            dirty += 1
            print(f"{path}: {', '.join(found[:5])}{' ...' if len(found) > 5 else ''}", file=sys.stderr)
    if dirty:
        print(f"{dirty} notebook(s) carry outputs; clear them with --fix (or Edit > Clear Outputs)", file=sys.stderr)
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
