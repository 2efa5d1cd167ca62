"""The quickstart pipeline's pages as a reviewer sees them, in a real browser.

Runs params/quickstart.yaml through the runner into a temporary outputs folder, then opens
outputs/index.html, the run's index.html and summary.html and every HTML report in headless Chromium (Debian's
chromium driven through its chromedriver, offline) and checks that every image loads (natural
width > 0) and each report shows as many images as its notebook has, every local link resolves to
a file, the console logs no error, and the summary shows its headline and leaderboard. A screenshot of each page goes to
<run>/screenshots/<page>.png so people can look at what the test saw.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from coffee_ml import config, runner

# As the machine notes require: no sandbox as root, and no background connections to Google's
# services, which a closed network refuses (and which would fill the console with errors).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]
SCREENSHOT_MAX_HEIGHT = 8000  # CSS pixels: enough for a long report, bounded for the PNG's sake
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
# Every image decoded (data URIs decode asynchronously), then what the checks need, in one round trip.
PAGE_SCRIPT = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
Promise.all(images.map(img => img.decode().catch(() => null))).then(() => done({
  title: document.title,
  images: images.map(img => ({src: (img.getAttribute('src') || '').slice(0, 60), width: img.naturalWidth})),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => ({href: a.getAttribute('href'), url: a.href})),
}));
"""


def _image_outputs(cell: nbformat.NotebookNode) -> int:
    return sum(1 for out in cell.get("outputs", []) if any(t in out.get("data", {}) for t in IMAGE_TYPES))


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory) -> Path:
    """The run folder of `params/quickstart.yaml`, executed into a temporary outputs folder.

    Module-scoped, so it is set up before the per-test environment of conftest: the outputs folder,
    the store and the absence of a ClickHouse server are set here for the runner and its kernels.
    `COFFEE_ML_BROWSER_RUN=<run folder>` checks that run instead (its screenshots land there).
    """
    existing = os.environ.get("COFFEE_ML_BROWSER_RUN")
    if existing:  # review a run that already exists (e.g. the last `make run`): screenshots land in it
        return Path(existing).resolve()
    outputs = tmp_path_factory.mktemp("outputs-quickstart")
    with pytest.MonkeyPatch.context() as env:
        for var in (
            "CLICKHOUSE_HOST",
            "CLICKHOUSE_PORT",
            "CLICKHOUSE_USER",
            "CLICKHOUSE_PASSWORD",
            "CLICKHOUSE_DATABASE",
        ):
            env.delenv(var, raising=False)
        env.setenv("COFFEE_ML_OUTPUTS", str(outputs))
        env.setenv("COFFEE_ML_STORE", str(outputs / "store"))
        index = Path(runner.run(config.PARAMS_DIR / "quickstart.yaml"))
    assert index.is_relative_to(outputs), f"the run went to {index}, not the temporary outputs {outputs}"
    return index.parent


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with its console log captured."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "headless Chromium not found: needs Debian's chromium and chromium-driver "
            "(/usr/bin/chromium, /usr/bin/chromedriver; .ci/run installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(30)
    yield browser
    browser.quit()


def _screenshot(browser: webdriver.Chrome, path: Path) -> None:
    """The whole page (up to SCREENSHOT_MAX_HEIGHT), not just the window."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], SCREENSHOT_MAX_HEIGHT), "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def _local_target(link: dict) -> Path | None:
    """The file a link points to, or None for web, in-page and mail links."""
    if link["href"].startswith(("http:", "https:", "#", "mailto:")):
        return None
    return Path(unquote(urlsplit(link["url"]).path))


def _check_page(browser: webdriver.Chrome, page: Path, shot: Path, expected_images: int | None) -> list[str]:
    """Open one page; return its problems (and save its screenshot)."""
    browser.get(page.as_uri())
    seen = browser.execute_async_script(PAGE_SCRIPT)
    _screenshot(browser, shot)
    problems = [f"image {img['src']!r}... did not load" for img in seen["images"] if img["width"] <= 0]
    if seen["title"].strip() in ("", "Notebook"):
        problems.append(f"no real <title> (got {seen['title']!r})")
    if expected_images is not None and len(seen["images"]) != expected_images:
        problems.append(f"{len(seen['images'])} image(s), but its notebook has {expected_images}")
    for link in seen["links"]:
        target = _local_target(link)
        if target is not None and not target.exists():
            problems.append(f"link {link['href']!r} points to a missing file")
    problems += [f"console: {entry['message']}" for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    return [f"{page.name}: {p}" for p in problems]


def test_every_page_loads_in_a_real_browser(browser, quickstart_run):
    """outputs/index.html, the run's index.html and every report: images, links, console, screenshots.

    `browser` comes first, so a machine without Chromium skips before running the pipeline.
    """
    images = {
        p.stem: sum(_image_outputs(c) for c in nbformat.read(p, as_version=4).cells)
        for p in quickstart_run.glob("*.ipynb")
    }
    planned = [n["stage"] for n in json.loads((quickstart_run / "manifest.json").read_text())["notebooks"]]
    assert sorted(images) == sorted(planned), f"the run's notebooks {planned}, got {sorted(images)}"
    shots = quickstart_run / "screenshots"
    shots.mkdir(exist_ok=True)
    pages = [
        (quickstart_run.parents[1] / "index.html", "outputs-index", None),
        (quickstart_run / "index.html", "index", None),
    ]
    for page in sorted(quickstart_run.glob("*.html")):
        stem = page.name.removesuffix(".html")
        if stem != "index":
            pages.append((page, stem, images.get(stem.removesuffix(".code"))))
    assert len(pages) >= 2 + 2 * len(images), f"a reviewer and a full report per notebook, got {pages}"
    t0 = time.perf_counter()
    problems = []
    for page, name, expected in pages:
        assert page.is_file(), f"{page} was not written"
        problems += _check_page(browser, page, shots / f"{name}.png", expected)
    print(f"{len(pages)} pages checked in {time.perf_counter() - t0:.1f}s; screenshots in {shots}")
    assert not problems, "\n".join(problems)


def test_summary_shows_its_headline_and_leaderboard(browser, quickstart_run):
    """summary.html, the page a reviewer opens first: the headline and a leaderboard with the naive
    row and every scoring notebook of the run, on screen (its links and console: the test above)."""
    browser.get((quickstart_run / "summary.html").as_uri())
    headline = browser.find_element(By.CSS_SELECTOR, "p.headline")
    board = browser.find_element(By.CSS_SELECTOR, "table.leaderboard")
    assert headline.is_displayed() and "naive" in headline.text, headline.text
    assert board.is_displayed()
    charts = browser.find_elements(By.TAG_NAME, "img")  # the leaderboard's and the production forecast's
    assert len(charts) == 2 and all(c.is_displayed() and c.get_property("naturalWidth") > 400 for c in charts)
    rows = [row.text for row in board.find_elements(By.TAG_NAME, "tr")]
    assert any("naive baseline" in row for row in rows), rows
    stages = [n["stage"] for n in json.loads((quickstart_run / "manifest.json").read_text())["notebooks"]]
    for stage in {"02_training", "03_backtesting", "05_hpo", "06_ensembles"} & set(stages):
        assert board.find_element(By.LINK_TEXT, stage).is_displayed()


def test_the_trading_view_draws_the_production_forecast(browser, quickstart_run):
    """`coffee-ml serve` over the quickstart's outputs: the page at / fetches the API and draws the
    price, the green prediction line and the grey band, and its sidebar says what /api/ml/predict
    says (price, interval, confidence, version, trained date, regime)."""
    import httpx

    from service_server import serve

    outputs = quickstart_run.parent.parent
    with serve(outputs) as (url, _):
        browser.get(f"{url}/?symbol=BTCUSDT")
        deadline = time.monotonic() + 60
        while browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") is None:
            assert time.monotonic() < deadline, "the trading view never finished loading"
            time.sleep(0.2)
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "yes", browser.find_element(
            By.ID, "error"
        ).text
        answer = httpx.get(f"{url}/api/ml/predict/production", params={"symbol": "BTCUSDT"}, timeout=60).json()
        (quickstart_run / "screenshots").mkdir(exist_ok=True)
        _screenshot(browser, quickstart_run / "screenshots" / "trading_view.png")
        lines = {i: browser.find_element(By.ID, i) for i in ("price-line", "prediction-line", "band")}
        assert lines["prediction-line"].get_attribute("stroke") == "#14813a"
        assert len(lines["prediction-line"].get_attribute("points").split()) == len(answer["predictions"]) + 1
        assert len(lines["price-line"].get_attribute("points").split()) == 168
        assert all(el.is_displayed() for el in lines.values())
        last = answer["predictions"][-1]
        shown = {
            i: browser.find_element(By.ID, i).text
            for i in ("price", "interval", "confidence", "version", "model", "regime", "trained")
        }
        assert shown["price"] == f"{last['price']:,.2f}"
        assert shown["interval"] == f"{last['lower']:,.2f} – {last['upper']:,.2f}"
        assert shown["confidence"].startswith(f"{last['confidence']:.1f}%")
        assert shown["version"] == answer["version"] and shown["model"] == answer["model"]
        assert shown["regime"] == f"{answer['regime']['name']} ({answer['regime']['confidence']:.1f}%)"
        assert shown["trained"] == answer["trained_at"].replace("T", " ")[:16] + " UTC"
        severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
