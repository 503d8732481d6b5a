"""The Dagster UI in a real browser: dagster-webserver on loopback over an instance where the
sample agent was trained, Debian's headless Chromium driven by Selenium, and the webserver's
GraphQL API. Screenshots go to the test's folder, and to $THUNDER_SCREENSHOTS when set."""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.factories import REPO_ROOT, free_port
from tests.processes import BIN, kill_tree, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The design card's assets (../shared/DESIGN.md, "Assets").
DESIGN_CARD = [
    "documents",
    "chunks",
    "training_dataset",
    "tpe_trials",
    "keras_model",
    "onnx_model",
    "deployment",
    "query_log_stats",
    "training_triggers",
    "fine_tuned_model",
    "distilled_model",
]
TRAINED = ["documents", "chunks", "training_dataset", *DESIGN_CARD[3:7]]
# Chromium as root in a sandbox with no network: no sandbox of its own, no GPU, and none of
# the background connections this machine's closed network refuses.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1800,2200",
]


def require_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver; .ci/run does)"
    )
    if os.environ.get("THUNDER_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


ASSET_NODES = """
query {
  assetNodes {
    assetKey { path }
    groupName
    kinds
    description
    assetMaterializations(limit: 1) {
      runId
      partition
      metadataEntries { label __typename }
    }
  }
}
"""


def asset_nodes(url: str) -> dict[str, dict]:
    try:
        nodes = graphql(url, ASSET_NODES)["assetNodes"]
    except (urllib.error.URLError, OSError, AssertionError):
        return {}
    return {"/".join(node["assetKey"]["path"]): node for node in nodes}


@pytest.fixture
def webserver(trained_sample, tmp_path):
    """dagster-webserver on the instance where the session's `thunder demo` trained the sample
    agent."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "webserver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=trained_sample.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "keras_model" in asset_nodes(url), 240, "no asset graph served", log)
        yield url
    finally:
        kill_tree(process.pid)


@pytest.fixture
def browser(tmp_path):
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(
        options=options,
        service=Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")),
    )
    try:
        yield driver
    finally:
        driver.quit()


def dismiss_welcome(driver, wait: float = 5) -> None:
    """The webserver's first visit asks to join its community; skip the dialog if it comes."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        skip = driver.find_elements("xpath", "//button[normalize-space()='Skip']")
        if skip:
            skip[0].click()
            return
        time.sleep(0.5)


def visible_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def wait_in_page(driver, predicate, timeout: float, what: str, shot: Path):
    """wait_for, with a screenshot of the page as it was when the wait failed."""
    try:
        return wait_for(predicate, timeout, f"{what} (the page as it was: {shot})")
    except pytest.fail.Exception:
        driver.save_screenshot(str(shot))
        raise


def test_the_asset_graph_and_a_plot_in_headless_chromium_and_over_graphql(
    webserver, browser, tmp_path
):
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # GraphQL: every asset of the design card, in its group, with kinds and a description;
    # the trained ones materialized for the sample agent, with their tables and plots.
    nodes = asset_nodes(webserver)
    assert set(DESIGN_CARD) <= set(nodes)
    for name in DESIGN_CARD:
        node = nodes[name]
        assert node["groupName"] in {"ingest", "training", "deployment", "feedback", "retraining"}
        assert node["kinds"] and len(node["description"]) > 40, node
    for name in TRAINED:
        (latest,) = nodes[name]["assetMaterializations"]
        assert latest["partition"] == "sample", (name, latest)
    labels = {
        entry["label"]: entry["__typename"]
        for entry in nodes["keras_model"]["assetMaterializations"][0]["metadataEntries"]
    }
    assert labels["loss_curves"] == "MarkdownMetadataEntry"
    search = nodes["tpe_trials"]["assetMaterializations"][0]["metadataEntries"]
    assert {"optimization_history", "trials", "search_steps"} <= {e["label"] for e in search}

    # The asset graph page, its groups expanded (the graph's settings menu): every asset of the
    # design card drawn under its name.
    browser.get(f"{webserver}/asset-groups")
    graph_settings = (
        "//button[.//*[@aria-label='zoom_in']]/following::button[.//*[@aria-label='settings']][1]"
    )
    (settings,) = wait_in_page(
        browser,
        lambda: browser.find_elements("xpath", graph_settings),
        180,
        "the asset graph never drew its settings button",
        shots / "asset-graph-timeout.png",
    )
    dismiss_welcome(browser)
    settings.click()
    (expand,) = wait_in_page(
        browser,
        lambda: browser.find_elements(
            "xpath", "//*[text()='Expand all groups']/ancestor::button[1]"
        ),
        30,
        "the graph's settings menu never offered to expand all groups",
        shots / "asset-graph-timeout.png",
    )
    expand.click()
    wait_in_page(
        browser,
        lambda: all(name in visible_text(browser) for name in DESIGN_CARD),
        60,
        f"the expanded asset graph never showed all of {DESIGN_CARD}",
        shots / "asset-graph-timeout.png",
    )
    browser.save_screenshot(str(shots / "asset-graph.png"))

    # One asset's page: its materialization's metadata, the loss curves drawn from the PNG.
    browser.get(f"{webserver}/assets/keras_model?view=events&partition=sample")
    show = wait_in_page(
        browser,
        lambda: browser.find_elements(
            "xpath", "//td[normalize-space()='loss_curves']/following-sibling::td[1]//a"
        ),
        120,
        "keras_model's page never listed its loss_curves metadata",
        shots / "keras-model-timeout.png",
    )
    dismiss_welcome(browser)
    browser.execute_script("arguments[0].scrollIntoView()", show[0])
    show[0].click()
    (image,) = wait_in_page(
        browser,
        lambda: browser.find_elements("css selector", "img[alt='loss curves']"),
        30,
        "the loss_curves metadata never drew its image",
        shots / "keras-model-timeout.png",
    )
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 200
    browser.save_screenshot(str(shots / "keras-model-loss-curves.png"))
    if os.environ.get("THUNDER_SCREENSHOTS"):
        shutil.copytree(shots, os.environ["THUNDER_SCREENSHOTS"], dirs_exist_ok=True)
