"""The Streamlit UI served for real and used once in headless Chromium (Debian's chromium and
chromedriver, driven by Selenium) against the live API and MLflow. The screenshot is kept as a
test artefact: build/artifacts/ui.png."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlops_dev.stack import free_port, http_ok, wait_for
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

ARTIFACTS = Path(os.environ.get("MLOPS_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "build" / "artifacts"))
WIDTH, HEIGHT = 1280, 1100


@pytest.fixture(scope="module")
def ui_url(api, tmp_path_factory):
    client, _, settings, _ = api
    log = tmp_path_factory.mktemp("ui") / "streamlit.log"
    port = free_port()
    env = os.environ | {
        "MLOPS_API_URL": str(client.base_url).rstrip("/"),
        "MLOPS_MODEL_NAME": settings.model_name,
        "MLOPS_EXPERIMENT": settings.experiment,
    }
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_services.cli", "ui", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: http_ok(f"{url}/_stcore/health"), f"Streamlit (log: {log})", timeout=120, proc=proc)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven through its own chromedriver: nothing is downloaded."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail("chromium / chromedriver not installed: `make services-deps` installs them (apt)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=ChromeService(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def test_ui_renders_in_a_real_browser(ui_url, api, browser):
    champion = api[0].get("/ready").json()["version"]
    browser.get(ui_url)
    # Streamlit builds the page in the browser from its websocket: wait for what the script wrote.
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: "House-price model" in b.find_element(By.TAG_NAME, "body").text)
    tabs = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "[data-testid=stTab]"))
    assert [tab.text for tab in tabs] == ["Predict", "Batch CSV", "Model", "Drift"]
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "[data-testid=stFormSubmitButton] button"))
    # The prediction form is live: submit it and wait for the API's answer and the SHAP chart.
    browser.find_element(By.CSS_SELECTOR, "[data-testid=stFormSubmitButton] button").click()
    # Hidden tabs' elements are in the page too, with no visible text: take the shown price.
    shown = wait.until(lambda b: [e.text for e in b.find_elements(By.CSS_SELECTOR, "[data-testid=stMetricValue]") if e.text])
    assert shown[0].startswith("$") and float(shown[0][1:].replace(",", "")) > 0
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=stException]")
    # The script has finished: Streamlit's running indicator is gone.
    wait.until(lambda b: not b.find_elements(By.CSS_SELECTOR, "[data-testid=stStatusWidgetRunningIcon]"))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "ui.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as image:
        # The viewport: the window less headless Chromium's own frame.
        assert image.width == WIDTH and image.height > HEIGHT * 0.8
        # A blank or error page has a handful of colours; the rendered form, price and chart many more.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50

    # The Model tab reads the champion from MLflow.
    tabs[2].click()
    wait.until(lambda b: f"v{champion}" in b.find_element(By.TAG_NAME, "body").text)
