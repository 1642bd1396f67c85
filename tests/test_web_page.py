"""The web page in a real browser (Debian's headless chromium through its chromedriver): search, see the gallery,
drop a photo, see its tags and the photos that voted, confirm one, reload and see it kept, and a run's chart."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.test_library import make_photos
from tests.test_serve import Server, jpeg

from annot.evaluation.evaluate import evaluate
from annot.library.collection import annotate_photos
from annot.serve.app import create_app

pytestmark = pytest.mark.browser

DROP = """
const [name, data] = arguments;
const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
const zone = document.getElementById("drop");
for (const type of ["dragenter", "dragover", "drop"]) {
  zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
}
"""


@pytest.fixture(scope="module")
def site(built_store: Path, synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("site")
    store = root / "s.annot"
    shutil.copytree(built_store, store)
    make_photos(root / "photos", 8, seed=61)
    annotate_photos(store, [root / "photos"])
    evaluate(store, synthetic["test"])
    with Server(create_app(store)) as server:
        yield server.url


def test_search_drop_confirm_reload(browser: object, site: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)  # type: ignore[arg-type]
    driver.get(site + "/")  # type: ignore[attr-defined]
    box = wait.until(ec.presence_of_element_located((By.ID, "q")))
    box.send_keys("sky")
    driver.find_element(By.CSS_SELECTOR, "#search-form button").click()  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card")) >= 10)
    cards = driver.find_elements(By.CSS_SELECTOR, "#gallery .card")  # type: ignore[attr-defined]
    assert all("sky" in c.text for c in cards[:5])  # the best results show the word among their tags
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#gallery img')].slice(0, 6).every(i => i.complete && i.naturalWidth > 0)"))

    data = base64.b64encode(jpeg(["sea", "sand"], seed=5, size=96)).decode()
    driver.execute_script(DROP, "beach.jpg", data)  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#photo-tags li")) == 5)
    assert driver.find_element(By.ID, "photo").is_displayed()  # type: ignore[attr-defined]
    tags = [li.get_attribute("data-tag") for li in driver.find_elements(By.CSS_SELECTOR, "#photo-tags li")]  # type: ignore[attr-defined]
    assert {"sea", "sand"} & set(tags)
    confidences = driver.find_elements(By.CSS_SELECTOR, "#photo-tags .confidence")  # type: ignore[attr-defined]
    assert all(c.text.endswith("%") for c in confidences)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#voters img')].length > 0 && "
        "[...document.querySelectorAll('#voters img')].every(i => i.complete && i.naturalWidth > 0)"))

    weakest = tags[-1]
    driver.find_element(By.CSS_SELECTOR, f'#photo-tags li[data-tag="{weakest}"] button.confirm').click()  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#photo-tags li[data-tag="{weakest}"][data-source="confirmed"]'))

    driver.refresh()  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#photo-tags li[data-tag="{weakest}"][data-source="confirmed"]'))
    assert driver.find_element(By.ID, "q").get_attribute("value") == "sky"  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card")) >= 10)

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#run-chart svg rect")) == 8)
    assert "F1" in driver.find_element(By.ID, "run-summary").text  # type: ignore[attr-defined]
    assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
