"""End to end: the real Streamlit server on a loopback port, every page in headless Chromium.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python
package (its own browser download is not used: ``executable_path`` points at Debian's).
Screenshots of every page go to ``test-artifacts/`` (git-ignored) for CI to keep. The server
reads a store written by the real ``attnlab demo`` stages (:mod:`tests.support.demo`), so this is
what a user sees after ``attnlab demo``: every page must render figures.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from analyses.cli.commands.dashboard_cmd import app_path, streamlit_command
from probes.models import unwrap
from tests.support import REPO_ROOT
from tests.support.demo import demo_store
from tests.support.heads import heads_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTEFACTS = REPO_ROOT / "test-artifacts"
#: url path -> (page title, whether the demo store gives it plotly charts)
#: A deep link comes first: the server's first session must also be routed through app.py.
PAGES = {"attention": ("Attention", True), "massive": ("Massive activations", True),
         "sae_features": ("SAE features", True), "redundancy": ("Redundancy", True),
         "circuits": ("Circuits", True), "": ("Runs", False)}

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm, organism):
    root, _ = demo_store(tmp_path_factory, minilm, organism)
    with _serve(root, tmp_path_factory) as url:
        yield url


@contextlib.contextmanager
def _serve(root: Path, tmp_path_factory):
    """A Streamlit server of the dashboard over the store ``root``; yields its URL."""
    port = _free_port()
    env = dict(os.environ, ATTNLAB_RUNS=str(root))
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(streamlit_command(app_path(), "127.0.0.1", port), env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found: `apt-get install -y chromium` (Debian) runs this test")
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="`pip install playwright` runs this test")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_every_page_renders_in_chromium(browser, server):  # no chromium: skip before the demo
    ARTEFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    failures = []
    for path, (title, has_charts) in PAGES.items():
        page.goto(f"{server}/{path}", wait_until="domcontentloaded")
        heading = page.locator("h1", has_text=title)
        heading.first.wait_for(timeout=60_000)
        if has_charts:
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        # let the script run finish: the status widget shows while it runs
        page.wait_for_function(
            "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
        if has_charts:  # charts further down the page render after the first one
            try:
                page.wait_for_function(
                    "document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=30_000)
            except Exception:  # noqa: BLE001 - counted below, with the page named
                pass
        page.screenshot(path=str(ARTEFACTS / f"dashboard-{path or 'runs'}.png"), full_page=True)
        n_exc = page.locator('[data-testid="stException"]').count()
        body = page.inner_text("body")
        if n_exc or "attnlab dashboard error" in body or "Traceback" in body:
            failures.append(f"/{path}: {n_exc} exception boxes")
        # a deep link must go through app.py (navigation + sidebar), not a bare page script
        if "Run store:" not in body or "Massive activations" not in page.inner_text(
                '[data-testid="stSidebar"]'):
            failures.append(f"/{path}: not routed through dashboard/app.py")
        if has_charts and page.locator(".js-plotly-plot").count() < 2:
            failures.append(f"/{path}: expected plotly charts")
        # the page's run is the one picked on an earlier page when it holds the page's main
        # table (one run per page), so a hint for another table of that run is expected; a
        # page with no run at all is not
        if "No completed run in the store holds the table" in body:
            failures.append(f"/{path}: a table the demo should write is missing")
        if not has_charts and len(body.strip()) < 100:
            failures.append(f"/{path}: almost no content")
    page.close()
    assert not failures, failures


@pytest.fixture(scope="module")
def heads_server(tmp_path_factory, organism, smollm2):
    root = heads_store(tmp_path_factory.mktemp("heads") / "runs", organism, smollm2)
    with _serve(root, tmp_path_factory) as url:
        yield url


def _settle(page) -> None:
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def test_heads_page_renders_smollm2_and_organism_runs(browser, heads_server, organism, smollm2):
    """The head explorer (Heads page) in Chromium: the SmolLM2 run (newest, preselected), then
    the organism run picked in the page's run selector."""
    ARTEFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{heads_server}/heads", wait_until="domcontentloaded")
    page.locator("h1", has_text="Heads").first.wait_for(timeout=60_000)
    failures = []
    for model in ("smollm2", "organism"):
        if model == "organism":
            page.get_by_test_id("stSelectbox").first.click()
            page.get_by_role("option").filter(has_text="organism").first.click()
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        _settle(page)
        page.screenshot(path=str(ARTEFACTS / f"dashboard-heads-{model}.png"), full_page=True)
        body = page.inner_text("body")
        if page.locator('[data-testid="stException"]').count() or "Traceback" in body:
            failures.append(f"{model}: exception on the page")
        if page.locator(".js-plotly-plot").count() < 2:  # score heatmap + a top prompt
            failures.append(f"{model}: expected plotly charts")
        layers = page.locator(".js-plotly-plot").first.locator(".ytick").count()
        # the layer x head score heatmap: one y tick per layer of the run's model
        n_layers = unwrap({"smollm2": smollm2, "organism": organism}[model]).cfg.n_layers
        if layers != n_layers:
            failures.append(f"{model}: the heatmap has {layers} layers")
    page.close()
    assert not failures, failures


def test_new_views_in_chromium(browser, server):
    """Issue 17's views on the demo store: the page-wide run selector, the all-heads attention
    grid with token hover for a typed prompt, and the feature view (coloured contexts, feature
    links that open the feature from the address)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    ARTEFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    failures = []
    page.goto(f"{server}/attention", wait_until="domcontentloaded")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    _settle(page)
    if page.get_by_test_id("stSelectbox").first.inner_text().find("Run") < 0:
        failures.append("attention: the first widget is not the page's run selector")
    page.get_by_role("button", name="Show attention").click()
    page.get_by_text("Attention patterns of every head in layer 0").first.wait_for(
        timeout=120_000)
    _settle(page)
    grid = page.locator(".js-plotly-plot", has_text="every head in layer 0").first
    if grid.locator(".subplot").count() < 12 and grid.locator(".heatmaplayer").count() < 1:
        failures.append("attention: no all-heads grid")
    page.screenshot(path=str(ARTEFACTS / "dashboard-attention-live.png"), full_page=True)

    page.goto(f"{server}/sae_features?feature=0", wait_until="domcontentloaded")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    _settle(page)
    marked = page.locator(".attnlab-examples span[title^='activation']")
    try:  # the examples' HTML can land after the first chart on a loaded machine
        marked.first.wait_for(timeout=60_000)
    except PlaywrightTimeout:
        pass  # counted below
    if marked.count() < 1:
        failures.append("sae_features: no coloured example tokens")
    elif "rgba(245, 133, 24" not in (marked.first.get_attribute("style") or "").replace(
            ",", ", ").replace(",  ", ", "):
        failures.append("sae_features: example token not coloured")
    page.screenshot(path=str(ARTEFACTS / "dashboard-sae-feature.png"), full_page=True)
    body = page.inner_text("body")
    if page.locator('[data-testid="stException"]').count() or "Traceback" in body:
        failures.append("sae_features: exception on the page")
    page.close()
    assert not failures, failures
