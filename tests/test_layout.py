"""The package's layout: imports point down (import-linter's contracts in pyproject.toml), no import of the
package hidden inside a function to dodge a circle, and no product text that points at work items."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "twotower_utils"
WORK_ITEM = re.compile(r"\b(issue ?#?\d+|the issue'?s?\b|issues? asked)", re.IGNORECASE)
PRODUCT_FILES = [
    *PACKAGE.rglob("*.py"),
    *(ROOT / "notebooks").glob("*.ipynb"),
    *(ROOT / "benchmarks").glob("*.py"),
    ROOT / "Makefile",
    ROOT / "README.md",
    *(ROOT / "docs").glob("*.md"),
]


def test_imports_point_down():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed in this environment (make setup installs it)")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def deferred_package_imports(path: Path) -> list[str]:
    """``from twotower_utils...`` / ``import twotower_utils...`` inside a function body, unless the line or the
    one above says why with a ``# deferred: ...`` comment (e.g. keeping TensorFlow out of a command's start)."""
    found = []
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            names = []
            if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("twotower_utils"):
                names = [inner.module]
            elif isinstance(inner, ast.Import):
                names = [a.name for a in inner.names if a.name.startswith("twotower_utils")]
            if not names:
                continue
            said = " ".join(lines[max(inner.lineno - 2, 0) : inner.end_lineno])
            if "# deferred:" not in said:
                found += [f"{path.relative_to(ROOT)}:{inner.lineno} {name}" for name in names]
    return found


def test_no_package_import_is_deferred():
    # __init__ imports runtime when TensorFlow is first imported (its import hook), which is no circle
    allowed = {"twotower_utils/__init__.py"}
    found = [
        hit
        for path in PACKAGE.rglob("*.py")
        if str(path.relative_to(ROOT)) not in allowed
        for hit in deferred_package_imports(path)
    ]
    assert found == []


def test_product_text_names_no_work_items():
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
        for path in PRODUCT_FILES
        if path.exists()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if WORK_ITEM.search(line) and not re.search(r"TFRS (issue )?#|github\.com", line)
    ]
    assert hits == []
