"""The series as a book: a static HTML site of the executed notebooks and the docs, ``make book``
(``python -m twotower_utils.notebook.book --executed results/executed --output build/book``).

- Stages everything under ``build/book-src/``: the executed notebooks (``results/executed/NN_*.ipynb``
  from ``make run-notebooks``, or ``results/smoke/executed`` from the tests' smoke run), ``docs/*.md``,
  the results page rendered from the same run (``twotower_utils.notebook.docs``), MathJax and the
  page script; then ``mkdocs build`` with the repository's ``mkdocs.yml`` (Material theme, the
  mkdocs-jupyter plugin) and a generated navigation: home, the notebooks in order, results, the
  other docs pages.
- Offline: the build fetches nothing, and the site loads nothing from another host (no web fonts,
  MathJax shipped in the site from the ``jupyter-server-mathjax`` package); the build checks the
  HTML for scripts, styles or images from elsewhere and fails if it finds one.
- Code cells collapse: each cell's code sits in a ``<details>`` (open; papermill's injected
  parameters closed), and a button at the top of a notebook hides or shows all of them.
- Search needs the site served over http: ``python -m http.server -d build/book``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from twotower_utils.notebook.docs import notebook_title, render_results

PROG = "python -m twotower_utils.notebook.book"
REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# MathJax 2.7 from jupyter-server-mathjax draws to MathML (Chromium renders it itself).  This file comes
# first in the page's config list: the combined config's HTML-CSS output, which loads with it, then looks
# for the package's STIX-Web fonts instead of the TeX fonts it lacks, and its placeholder font comes from
# local() instead of url('about:blank') (which Chromium reports as a CORS error).
NATIVE_FONT_FACES = ", ".join(  # the NativeMML output's six @font-face rules name the absent TeX fonts: local()
    f'"@font-face /*{i}*/": {{src: "local(\'{name}\')"}}'
    for i, name in enumerate(("MathJax_Caligraphic", "MathJax_Caligraphic", "MathJax_AMS", "MathJax_Script",
                              "MathJax_Fraktur", "MathJax_Fraktur"), 1)
)  # fmt: skip
MATHJAX_LOCAL_CONFIG = """MathJax.Hub.Config({
  "HTML-CSS": {
    availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
    styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}
  },
  menuSettings: {renderer: "NativeMML", zoom: "None"},
  NativeMML: {minBrowserVersion: {Chrome: 0}, styles: {%s}}
});
MathJax.Ajax.loadComplete("[MathJax]/config/twotower.js");
""".replace("%s", NATIVE_FONT_FACES)

BOOK_CSS = """/* twotower book: collapsible code cells */
.jupyter-wrapper details.tt-code > summary {
  cursor: pointer; font-size: 0.75rem; color: var(--md-default-fg-color--light); margin: 0.2rem 0;
}
.jupyter-wrapper details.tt-code:not([open]) > summary::after { content: " (hidden, click to show)"; }
.tt-code-toggle-all {
  font-size: 0.75rem; padding: 0.2rem 0.6rem; margin: 0 0 0.8rem 0; cursor: pointer;
  border: 1px solid var(--md-default-fg-color--lighter); border-radius: 0.2rem; background: none;
  color: var(--md-typeset-a-color);
}
"""

BOOK_JS = """// twotower book: every notebook code cell's code in a <details> (collapsible), and one button for all
(function () {
  function collapsible() {
    const cells = document.querySelectorAll(".jupyter-wrapper .jp-CodeCell");
    if (!cells.length || document.querySelector(".tt-code-toggle-all")) return;
    let count = 0;
    cells.forEach(function (cell) {
      const input = cell.querySelector(":scope > .jp-Cell-inputWrapper");
      if (!input) return;
      const details = document.createElement("details");
      details.className = "tt-code";
      // papermill's injected parameters are plumbing: closed; every other cell's code shown
      details.open = !cell.classList.contains("celltag_injected-parameters");
      const summary = document.createElement("summary");
      const prompt = cell.querySelector(".jp-InputPrompt");
      summary.textContent = "Code " + (prompt ? prompt.textContent.trim() : "");
      input.parentNode.insertBefore(details, input);
      details.appendChild(summary);
      details.appendChild(input);
      count += 1;
    });
    if (!count) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tt-code-toggle-all";
    button.textContent = "Hide all code";
    button.addEventListener("click", function () {
      const hide = button.textContent === "Hide all code";
      document.querySelectorAll("details.tt-code").forEach(function (d) { d.open = !hide; });
      button.textContent = hide ? "Show all code" : "Hide all code";
    });
    const first = document.querySelector(".jupyter-wrapper");
    first.parentNode.insertBefore(button, first);
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(collapsible);  // Material's page-load stream (instant navigation too)
  } else {
    document.addEventListener("DOMContentLoaded", collapsible);
  }
})();
"""

INDEX_STUB = """# twotower

A Two-Tower retrieval recommender for MovieLens with TensorFlow Recommenders, notebook by notebook.
The notebooks are in the navigation, in order, with the outputs of the run this book was built from;
the results page has the recorded numbers and the command that produced each.
"""


class BookError(RuntimeError):
    """Nothing to build from, or the build failed."""


def executed_notebooks(executed: Path) -> list[Path]:
    return sorted(executed.glob(NOTEBOOK_PATTERN))


def stage_notebook(source: Path, target: Path) -> None:
    """A copy without widget state or widget views (they need a live kernel and a CDN to render)."""
    content = json.loads(source.read_text())
    content.get("metadata", {}).pop("widgets", None)
    for cell in content.get("cells", []):
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    target.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")


def mathjax_folder() -> Path:
    try:
        import jupyter_server_mathjax
    except ImportError as error:
        raise BookError(
            "jupyter-server-mathjax is not installed (it ships MathJax for the site): "
            "pip install -c constraints.txt jupyter-server-mathjax, or make book"
        ) from error
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def stage(executed: Path, results: Path, docs: Path, notebooks_dir: Path, work: Path, site: Path) -> Path:
    """Everything mkdocs reads, under ``work``; the path of the generated mkdocs.yml."""
    notebooks = executed_notebooks(executed)
    if not notebooks:
        raise BookError(f"no executed notebooks in {executed}/: run make run-notebooks first (or pass EXECUTED=)")
    if work.exists():
        shutil.rmtree(work)
    pages = work / "docs"
    if docs.is_dir():
        shutil.copytree(docs, pages, ignore=shutil.ignore_patterns("results.md", ".*"))
    pages.mkdir(parents=True, exist_ok=True)
    if not (pages / "index.md").exists():
        (pages / "index.md").write_text(INDEX_STUB)
    (pages / "results.md").write_text(render_results(results, notebooks_dir, results_label=results.as_posix()))
    for notebook in notebooks:
        stage_notebook(notebook, pages / notebook.name)
    assets = pages / "assets"
    shutil.copytree(mathjax_folder(), assets / "mathjax", ignore=shutil.ignore_patterns("localization", "*.md"))
    (assets / "mathjax" / "config" / "twotower.js").write_text(MATHJAX_LOCAL_CONFIG)
    (assets / "book.css").write_text(BOOK_CSS)
    (assets / "book.js").write_text(BOOK_JS)

    others = sorted(p.name for p in pages.glob("*.md") if p.name not in ("index.md", "results.md"))
    nav: list = [
        {"Home": "index.md"},
        {"Notebooks": [{notebook_title(n): n.name} for n in notebooks]},
        {"Results": "results.md"},
    ]
    if others:
        nav.append({"Guide": others})
    parent = Path(os.path.relpath(REPOSITORY / "mkdocs.yml", work.resolve()))
    config = {
        "INHERIT": parent.as_posix(),
        "docs_dir": "docs",
        "site_dir": str(site.resolve()),
        "nav": nav,
    }
    path = work / "mkdocs.yml"
    path.write_text(
        "# generated by make book: the repository's mkdocs.yml plus this run's pages\n"
        + json.dumps(config, indent=2)
        + "\n"
    )  # JSON is YAML
    return path


def build(config: Path) -> None:
    command = [sys.executable, "-m", "mkdocs", "build", "--clean", "--quiet", "-f", str(config)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BookError(f"mkdocs build failed:\n{done.stdout}{done.stderr}")
    for line in (done.stdout + done.stderr).splitlines():
        print(f"  mkdocs: {line}")


# a script, style, image, frame or media element whose URL is on another host
EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)",
    re.IGNORECASE,
)


def external_assets(site: Path) -> dict[str, list[str]]:
    """``{page: [URL, ...]}`` for every asset a page would load from another host."""
    found = {}
    for page in sorted(site.rglob("*.html")):
        urls = sorted(set(EXTERNAL.findall(page.read_text(errors="replace"))))
        if urls:
            found[page.relative_to(site).as_posix()] = urls
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--executed", type=Path, default=Path("results/executed"), help="the executed notebooks")
    parser.add_argument(
        "--results", type=Path, default=None, help="the run's output folder for the results page (default: its parent)"
    )
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    parser.add_argument("--work", type=Path, default=Path("build/book-src"), help="where the pages are staged")
    parser.add_argument("--output", type=Path, default=Path("build/book"))
    args = parser.parse_args(argv)
    results = args.results or args.executed.parent
    start = time.perf_counter()
    try:
        config = stage(args.executed, results, args.docs, args.notebooks, args.work, args.output)
        build(config)
    except BookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    external = external_assets(args.output)
    if external:
        for page, urls in external.items():
            print(f"error: {page} loads {', '.join(urls)}", file=sys.stderr)
        print("error: the site must load nothing from another host", file=sys.stderr)
        return 1
    missing = sorted(
        {p.name for p in args.notebooks.glob(NOTEBOOK_PATTERN)} - {p.name for p in executed_notebooks(args.executed)}
    )
    if missing:
        print(f"note: not in {args.executed}/ (not in the book): {', '.join(missing)}")
    pages = len(list(args.output.glob("*.html")))
    print(f"built {args.output}/ ({pages} pages) in {time.perf_counter() - start:.1f} s; "
          f"view it with: python -m http.server -d {args.output}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
