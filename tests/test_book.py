"""The book (``make book``) in a real browser (``make test-browser``): the built site served over http
on 127.0.0.1, headless Chromium driven by playwright.  Walks every page of the navigation: no console
errors, no failed or off-site requests, every image loaded, every internal link and anchor found;
the notebooks in order (sidebar and footer), search finds a notebook, code cells collapse.
Screenshots go to ``$TWOTOWER_SCREENSHOTS/book`` (``results/browser/book`` from make); the site is
``$TWOTOWER_BOOK`` (``build/book``)."""

import functools
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SITE = Path(os.environ.get("TWOTOWER_BOOK", "build/book"))
SHOTS = Path(os.environ.get("TWOTOWER_SCREENSHOTS", "results/browser")) / "book"
NOTEBOOK_PAGE = re.compile(r"/\d\d_[^/]*\.html$")


def _needs(condition: bool, why: str) -> None:
    if not condition:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site_url():
    """The built book over http on 127.0.0.1 (an ephemeral port): search needs http, not file://."""
    _needs((SITE / "index.html").exists(), f"no book at {SITE}/: run make book first")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    _needs(Path(CHROMIUM).exists(), "chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _needs(False, "playwright is not installed (pip install playwright)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors, uncaught exceptions, failed requests and off-site requests are kept."""

    def __init__(self, browser, site_url: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        host = urlparse(site_url).netloc
        page = self.page
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

        def only_this_site(route):
            url = route.request.url
            if urlparse(url).scheme in ("http", "https") and urlparse(url).netloc != host:
                self.problems.append(f"off-site request: {url}")
                return route.abort()
            return route.continue_()

        page.route("**/*", only_this_site)

    def _failed(self, request) -> None:
        if "ERR_ABORTED" not in (request.failure or ""):  # aborted by leaving the page; a 404 is seen as a response
            self.problems.append(f"failed: {request.url} ({request.failure})")

    def visit(self, url: str) -> None:
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def check(self, where: str) -> None:
        problems, self.problems[:] = list(self.problems), []
        assert not problems, f"{where}: " + "; ".join(problems)


def _nav_pages(page, site_url: str) -> list[str]:
    """The sidebar's page links, in order, as absolute URLs without fragments."""
    hrefs = page.eval_on_selector_all(".md-sidebar--primary a.md-nav__link[href]", "els => els.map(e => e.href)")
    pages = []
    for href in hrefs:
        url = urldefrag(href)[0]
        if url.startswith(site_url) and url.endswith(".html") and url not in pages:
            pages.append(url)
    return pages


def _images(page) -> list[dict]:
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # anything lazy starts loading
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=30_000)
    return page.eval_on_selector_all(
        "article img", "els => els.map(i => ({src: i.src.slice(0, 60), width: i.naturalWidth}))"
    )


def _figures_in_notebook(url: str) -> int:
    """How many image outputs the page's notebook has (the site keeps the .ipynb next to its page)."""
    notebook = SITE / Path(urlparse(url).path).with_suffix(".ipynb").name
    cells = json.loads(notebook.read_text())["cells"]
    return sum(
        1
        for cell in cells
        for output in cell.get("outputs", [])
        if any(kind.startswith("image/") for kind in output.get("data", {}))
    )


def test_every_page_loads_with_its_figures_and_working_links(browser, site_url):
    watched = Watched(browser, site_url)
    page = watched.page
    watched.visit(site_url + "index.html")
    pages = _nav_pages(page, site_url)
    notebooks = [url for url in pages if NOTEBOOK_PAGE.search(url)]
    assert notebooks, "no notebook in the navigation"
    assert site_url + "results.html" in pages
    names = [Path(urlparse(url).path).name for url in notebooks]
    assert names == sorted(names), f"notebooks out of order in the navigation: {names}"

    links: dict[str, set[str]] = {}
    for url in [site_url + "index.html", *pages]:
        watched.visit(url)
        name = Path(urlparse(url).path).stem
        images = _images(page)
        broken = [image for image in images if image["width"] == 0]
        assert not broken, f"{name}: images that did not load: {broken}"
        if url in notebooks:
            expected = _figures_in_notebook(url)
            assert len(images) >= expected, f"{name}: {len(images)} images shown, the notebook has {expected}"
            if expected:  # the first figure in view
                page.locator("article .jp-OutputArea-output img").first.scroll_into_view_if_needed()
            else:
                page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(SHOTS / f"{name}.png"))
            assert page.evaluate("() => !!window.MathJax"), f"{name}: MathJax did not load"
        else:
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            if href.startswith(site_url):
                links.setdefault(href, set()).add(name)
        watched.check(name)
    page.close()

    ids: dict[str, set[str]] = {}
    for href, sources in sorted(links.items()):
        target, fragment = urldefrag(href)
        try:
            with urllib.request.urlopen(target, timeout=10) as answer:
                body = answer.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"broken link {href} (HTTP {error.code}) on {sorted(sources)}") from None
        if fragment and target.endswith(".html"):
            found = ids.setdefault(target, set(re.findall(r'\bid="([^"]+)"', body)))
            assert fragment in found, f"link {href} on {sorted(sources)}: no element with that id"


def test_footer_walks_the_notebooks_in_order(browser, site_url):
    watched = Watched(browser, site_url)
    page = watched.page
    watched.visit(site_url + "index.html")
    notebooks = [url for url in _nav_pages(page, site_url) if NOTEBOOK_PAGE.search(url)]
    walked = []
    page.locator("a.md-footer__link--next").click()
    for _ in notebooks:
        page.wait_for_load_state("load")
        walked.append(urldefrag(page.url)[0])
        page.locator("a.md-footer__link--next").click()
    assert walked == notebooks
    page.wait_for_load_state("load")
    assert page.url.endswith("results.html")  # the results page follows the last notebook
    watched.check("footer navigation")
    page.close()


def test_search_finds_a_notebook(browser, site_url):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the browser fixture checked it is installed

    watched = Watched(browser, site_url)
    page = watched.page
    watched.visit(site_url + "index.html")
    first = next(url for url in _nav_pages(page, site_url) if NOTEBOOK_PAGE.search(url))
    title = page.locator(f'.md-sidebar--primary a.md-nav__link[href$="{Path(urlparse(first).path).name}"]')
    word = max(re.findall(r"[A-Za-z]{5,}", title.first.inner_text()), key=len)  # a word of its title
    box = page.locator("input.md-search__input")  # the header's search box (wide viewport)
    box.click()
    box.press_sequentially(word, delay=30)
    results = page.locator(".md-search-result__item").first
    try:  # the search worker builds its index on first use: a slow machine may need more than one query
        results.wait_for(timeout=30_000)
    except PlaywrightTimeout:
        box.fill("")
        box.press_sequentially(word, delay=30)
        results.wait_for(timeout=60_000)
    targets = page.eval_on_selector_all(".md-search-result__item a", "els => els.map(e => e.href)")
    hits = [t for t in targets if urlparse(t)._replace(query="", fragment="").geturl() == first]
    assert hits, f"search for {word!r} did not find {first}: {targets}"
    page.screenshot(path=str(SHOTS / "search.png"))
    # the results may still be re-rendered for the last typed letter (their links carry the query, ?h=...):
    # click the notebook's result by its address without the query, whichever render is on screen
    page.locator(f'.md-search-result__item a[href^="{first}"]').first.click()
    page.wait_for_load_state("load")
    assert urlparse(page.url)._replace(query="", fragment="").geturl() == first
    watched.check("search")
    page.close()


def test_code_cells_collapse(browser, site_url):
    watched = Watched(browser, site_url)
    page = watched.page
    watched.visit(site_url + "index.html")
    first = next(url for url in _nav_pages(page, site_url) if NOTEBOOK_PAGE.search(url))
    watched.visit(first)
    cells = page.locator(".jupyter-wrapper .jp-CodeCell .jp-Cell-inputWrapper")  # nbconvert nests a cell's div
    details = page.locator("details.tt-code")
    assert details.count() == cells.count() > 0
    code = page.locator("details.tt-code[open] .jp-Cell-inputWrapper").first
    assert code.is_visible()
    page.locator(".tt-code-toggle-all").click()  # hide all code
    assert page.locator("details.tt-code[open]").count() == 0 and not code.is_visible()
    page.locator("details.tt-code > summary").first.click()  # one cell's code back
    assert page.locator("details.tt-code[open]").count() == 1
    page.locator(".tt-code-toggle-all").click()  # show all code
    assert page.locator("details.tt-code[open]").count() == cells.count()
    watched.check("code cells")
    page.close()
