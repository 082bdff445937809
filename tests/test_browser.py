"""Notebook 05's panel in a real browser (``make test-browser``): JupyterLab on 127.0.0.1, headless
Chromium driven by playwright.  Runs all cells, moves the dimension slider, clicks Train and checks
that a second try reaches the table and the curves are redrawn; screenshots go to
``$TWOTOWER_SCREENSHOTS`` (``results/browser`` from make)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.conftest import NOTEBOOKS, real_data_dir

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Small enough for a minute of training in the browser; the panel is the same at any size
SHOTS = Path(os.environ.get("TWOTOWER_SCREENSHOTS", "results/browser"))
SMALL_05 = {"epochs": 1, "sweep_dims": '"8"', "compare_dims": '"8"'}


def _needs(condition: bool, why: str) -> None:
    if not condition:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _small_copy(folder: Path, output_dir: Path) -> Path:
    notebook = nbformat.read(NOTEBOOKS / "05_embedding_dimension.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    lines = []
    for line in cell.source.splitlines():
        name = line.split("=")[0].strip()
        if name in SMALL_05:
            line = f"{name} = {SMALL_05[name]}"
        elif name == "output_dir":
            line = f"output_dir = {str(output_dir)!r}"
        lines.append(line)
    cell.source = "\n".join(lines)
    path = folder / "05_embedding_dimension.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def lab():
    """JupyterLab serving a small copy of notebook 05 (in a folder whose name has no 'pytest' in it:
    the panel tells headless runners from a browser by the kernel's parent command line)."""
    real_data_dir()
    SHOTS.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="twotower-browser-"))
    _small_copy(folder, folder / "results")
    port, token = _free_port(), "twotower-browser-test"
    env = {k: v for k, v in os.environ.items() if k != "TWOTOWER_HEADLESS"}
    # own user settings (the project's overrides.json still applies): every cell drawn, so the panel's DOM exists
    settings = folder / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env.update(JUPYTERLAB_SETTINGS_DIR=str(folder / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(folder / "workspaces"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--allow-root",
         "--KernelManager.transport=ipc"],  # as make lab
        stdout=(log := open(SHOTS / "jupyterlab.log", "w")), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.5)
    yield f"{url}/lab/tree/05_embedding_dimension.ipynb?token={token}", folder
    server.terminate()
    server.wait(30)
    log.close()
    assert "without encryption" not in (SHOTS / "jupyterlab.log").read_text()  # IPC kernels, as make lab starts
    shutil.rmtree(folder, ignore_errors=True)


def _wait_for_idle_kernel(url: str, seconds: int = 120) -> None:
    """Until the notebook's kernel is started, connected to the page and idle (the server's sessions API):
    Run All before that finds no kernel and JupyterLab asks which one to start."""
    import json

    base, token = url.split("/lab/")[0], url.split("token=")[1]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as answer:
            kernels = [s["kernel"] for s in json.load(answer)]
        if kernels and all(k["execution_state"] == "idle" and k["connections"] > 0 for k in kernels):
            time.sleep(2)  # the page has the kernel too
            return
        time.sleep(0.5)
    raise AssertionError("the notebook's kernel did not start")


def _status(page) -> str:
    return page.locator(".jp-OutputArea-output .widget-html-content").first.text_content()


def _wait_for_status(page, text: str, seconds: int = 300) -> None:
    """Until the panel's status line says ``text``; a screenshot of the page when it never does."""
    try:
        page.wait_for_function(
            "text => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes(text))",
            arg=text,
            timeout=seconds * 1000,
        )
    except Exception:
        page.screenshot(path=str(SHOTS / "05_panel_failure.png"))
        raise


def test_the_dimension_panel_trains_a_second_try_in_a_real_browser(lab):
    _needs(Path(CHROMIUM).exists(), "chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _needs(False, "playwright is not installed (pip install playwright)")
    url, _ = lab
    shots = SHOTS
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        _wait_for_idle_kernel(url)
        assert page.get_by_text("official Jupyter news").count() == 0  # the news pop-up is off (make setup)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        _wait_for_status(page, "1 tries below")
        page.wait_for_function(  # Run All has reached the last cell: the kernel is free for the panel's clicks
            "() => /\\[\\d+\\]/.test([...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].pop().textContent)",
            timeout=300_000,
        )
        slider = page.locator(".widget-slider .noUi-handle").first  # the dimension slider
        slider.scroll_into_view_if_needed()  # JupyterLab renders cells out of view lazily
        live = page.locator(".jp-OutputArea-output .widget-output img").first
        before = live.get_attribute("src")
        page.screenshot(path=str(shots / "05_panel_first_try.png"))

        slider.focus()
        slider.press("ArrowLeft")  # one dimension down (the first try used the parameters' 32)
        page.get_by_role("button", name="Train").click()
        _wait_for_status(page, "2 tries below")
        page.wait_for_function(  # the status line is set just before the table is redrawn
            "() => document.querySelectorAll('.widget-output table tbody tr').length === 2", timeout=60_000
        )
        page.locator(".widget-output table").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "05_panel_second_try.png"))
        assert "dim 16" in _status(page)
        assert live.get_attribute("src") != before  # the curves were redrawn for the new try
        rows = page.locator(".widget-output table tbody tr")
        assert rows.count() == 2 and rows.nth(1).locator("td").first.inner_text() == "16"
        browser.close()
