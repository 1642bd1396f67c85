"""The web page in a real browser (Debian's headless chromium through its chromedriver), as a person uses it: browse
the library and its filters, scroll for more, open the viewer (aspect ratio, Esc, arrows, why, similar), review
with the keyboard (reject, undo, accept, add, next, re-score), try a photo without keeping it and then keep it,
the runs page, /docs; at 1280 × 800 and 390 × 844 and in dark mode. Text from data (a tag and a folder written as
HTML) stays text. Screenshots of the main screens go to out/screens/ (ignored)."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.test_library import make_photos
from tests.test_serve import Server, jpeg

import annot
from annot.evaluation.evaluate import evaluate
from annot.library.collection import annotate_photos
from annot.serve.app import create_app

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
SCREENS = ROOT / "out" / "screens"
XSS_TAG = '<img src=x onerror="window.pwned=1">'
XSS_FOLDER = "<b>bold</b> & co"
XSS_FILE = '<svg onload="window.pwned=2">.jpg'
DROP = """
const [name, data] = arguments;
const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
for (const type of ["dragenter", "dragover", "drop"]) {
  document.body.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
}
"""
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def site(built_store: Path, synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, object]]:
    """A library of 75 photos in three folders (one named in HTML), one photo tagged in HTML, one evaluation run."""
    root = tmp_path_factory.mktemp("site")
    store = root / "s.annot"
    shutil.copytree(built_store, store)
    make_photos(root / "photos" / "2024" / "june trip", 40, seed=61)
    make_photos(root / "photos" / "2025", 30, seed=62, prefix="q")
    odd = make_photos(root / "photos" / XSS_FOLDER, 5, seed=63, prefix="r")
    min(odd).rename(min(odd).with_name(XSS_FILE))
    annotate_photos(store, [root / "photos"])
    evaluate(store, synthetic["test"])
    with annot.open_store(store) as api:
        api.correct([annot.Correction(str(min(odd).with_name(XSS_FILE)), XSS_TAG, "add")])
    with Server(create_app(store)) as server:
        yield {"url": server.url, "store": store, "root": root}


@pytest.fixture()
def page(browser: object, site: dict[str, object], request: pytest.FixtureRequest) -> Iterator[object]:
    """The browser at a size (``desktop`` unless the test is parametrized) and colour scheme, on a fresh page."""
    size, scheme = getattr(request, "param", ("desktop", "light"))
    width, height = SIZES[size]
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # type: ignore[attr-defined]
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"})
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",  # type: ignore[attr-defined]
                            {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    browser.get("about:blank")  # type: ignore[attr-defined]  # a new page load, not a change of #fragment
    browser.get(str(site["url"]) + "/#/photos")  # type: ignore[attr-defined]
    yield browser
    logged = browser.get_log("browser")  # type: ignore[attr-defined]
    # no script error; a 4xx is an answer the page shows (a refused upload), not a fault
    assert not [e for e in logged if e["level"] == "SEVERE" and not (e["source"] == "network" and "status of 4" in e["message"])]


def wait_for(driver: object, check, timeout: float = 30):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(check)  # type: ignore[arg-type]


def css(driver: object, selector: str) -> list:  # type: ignore[type-arg]
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)  # type: ignore[attr-defined, no-any-return]


def shot(driver: object, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENS / f"{name}.png"))  # type: ignore[attr-defined]


def no_sideways_scroll(driver: object) -> bool:
    return bool(driver.execute_script(  # type: ignore[attr-defined]
        "return document.documentElement.scrollWidth <= window.innerWidth"))


def api(site: dict[str, object], path: str, **params: object) -> dict[str, object]:
    return httpx.get(str(site["url"]) + path, params=params, timeout=60).json()  # type: ignore[arg-type, no-any-return]


def review_tags(driver: object) -> list[tuple[str, str]]:
    """The review card's tags and their sources, as shown now (read in one go: the list is drawn anew often)."""
    return [tuple(t) for t in driver.execute_script(  # type: ignore[attr-defined]
        "return [...document.querySelectorAll('#review-tags li')].map(li => [li.dataset.tag, li.dataset.source])")]


def keys(driver: object, *pressed: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)  # type: ignore[arg-type]
    for key in pressed:
        chain.send_keys(key)
    chain.perform()


@pytest.mark.parametrize("page", [("desktop", "light"), ("phone", "light"), ("desktop", "dark")], indirect=True,
                         ids=["desktop", "phone", "dark"])
def test_browse_the_library_with_its_filters_and_scroll_for_more(page: object, site: dict[str, object],
                                                                  request: pytest.FixtureRequest) -> None:
    driver = page
    wait_for(driver, lambda d: len(css(d, "#gallery .card")) == 60)  # the library on opening, newest first
    assert "75 photos" in driver.find_element("id", "status").text  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#gallery img')].slice(0, 4).every(i => i.complete && i.naturalWidth)"))
    assert no_sideways_scroll(driver)
    shot(driver, f"photos-{request.node.callspec.id}")
    driver.execute_script("document.getElementById('sentinel').scrollIntoView()")  # type: ignore[attr-defined]
    wait_for(driver, lambda d: len(css(d, "#gallery .card")) == 75)  # the next page, by scrolling
    ids = [c.get_attribute("data-id") for c in css(driver, "#gallery .card")]
    assert len(set(ids)) == 75
    if request.node.callspec.id == "dark":
        background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")  # type: ignore[attr-defined]
        assert sum(int(v) for v in background[background.index("(") + 1 : -1].split(",")[:3]) < 150, background
    driver.execute_script("window.scrollTo(0, 0)")  # type: ignore[attr-defined]
    if request.node.callspec.id == "phone":
        driver.find_element("css selector", "#filters summary").click()  # type: ignore[attr-defined]
    folder = next(b for b in css(driver, ".facet button") if (b.get_attribute("title") or "").endswith("june trip"))
    assert folder.text.split("\n")[-1] == "40"
    folder.click()
    wait_for(driver, lambda d: d.find_element("id", "photos-title").text.endswith("june trip")
             and len(css(d, "#gallery .card")) == 40)
    assert all(c.text.split("\n")[0].startswith("p") for c in css(driver, "#gallery .card"))
    tag = css(driver, ".facet:last-child button")[0]
    word, count = tag.text.split("\n")
    tag.click()
    wait_for(driver, lambda d: f"tagged “{word}”" in d.find_element("id", "photos-title").text)
    wait_for(driver, lambda d: len(css(d, "#gallery .card")) == min(60, int(count)))
    assert all(word in c.text for c in css(driver, "#gallery .card"))


@pytest.mark.parametrize("page", [("desktop", "light"), ("phone", "dark")], indirect=True, ids=["desktop", "phone"])
def test_the_viewer_keeps_the_aspect_ratio_and_moves_with_the_keys(page: object, site: dict[str, object],
                                                                    request: pytest.FixtureRequest) -> None:
    from selenium.webdriver.common.keys import Keys

    driver = page
    wait_for(driver, lambda d: len(css(d, "#gallery .card")) == 60)
    cards = css(driver, "#gallery .card")
    first = cards[3].get_attribute("data-id")
    cards[3].click()
    wait_for(driver, lambda d: d.find_element("id", "viewer").get_attribute("open") is not None
             and d.execute_script("const i = document.getElementById('viewer-image'); "
                                  "return i.complete && i.naturalWidth > 0"))
    photo = api(site, f"/v1/images/{first}")
    box = driver.execute_script(  # type: ignore[attr-defined]
        "const i = document.getElementById('viewer-image'); return [i.naturalWidth, i.naturalHeight]")
    assert box == [photo["width"], photo["height"]]  # never enlarged, never stretched
    assert f"#/photos?photo={first}" in driver.current_url  # type: ignore[attr-defined]
    facts = driver.find_element("id", "viewer-facts").text  # type: ignore[attr-defined]
    assert str(Path(str(photo["path"])).parent) in facts and f"{photo['width']} × {photo['height']}" in facts
    assert no_sideways_scroll(driver)
    driver.find_element("id", "why").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: len(css(d, "#voters button")) > 0)
    shot(driver, f"viewer-{request.node.callspec.id}")
    keys(driver, Keys.ARROW_RIGHT)
    second = cards[4].get_attribute("data-id")
    wait_for(driver, lambda d: d.find_element("id", "viewer-title").text == Path(str(
        api(site, f"/v1/images/{second}")["path"])).name)
    keys(driver, Keys.ARROW_LEFT)
    wait_for(driver, lambda d: f"photo={first}" in d.current_url)
    keys(driver, Keys.ESCAPE)
    wait_for(driver, lambda d: d.find_element("id", "viewer").get_attribute("open") is None)
    assert "photo=" not in driver.current_url  # type: ignore[attr-defined]
    cards[3].click()
    wait_for(driver, lambda d: d.find_element("id", "viewer").get_attribute("open") is not None)
    driver.find_element("id", "why").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: len(css(d, "#voters button")) > 0)
    voter = css(driver, "#voters button")[0]
    voter.click()  # a training photo that voted opens in the viewer too
    wait_for(driver, lambda d: "(training photo)" in d.find_element("id", "viewer-title").text)
    driver.find_element("id", "close").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.find_element("id", "viewer").get_attribute("open") is None)
    cards = css(driver, "#gallery .card")
    cards[3].click()
    wait_for(driver, lambda d: d.find_element("id", "viewer-title").text)
    driver.find_element("id", "similar").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: css(d, "#gallery .card") and css(d, "#gallery .card")[0].get_attribute("data-id") == first)
    assert driver.find_element("id", "photos-title").text == "Photos like this one"  # type: ignore[attr-defined]


@pytest.mark.parametrize("page", [("desktop", "light"), ("phone", "dark")], indirect=True, ids=["desktop", "phone"])
def test_review_with_the_keyboard_teaches_and_undoes(page: object, site: dict[str, object],
                                                     request: pytest.FixtureRequest) -> None:
    from selenium.webdriver.common.keys import Keys

    driver = page
    driver.get(str(site["url"]) + "/#/review")  # type: ignore[attr-defined]
    wait_for(driver, lambda d: css(d, "#review-tags li"))
    left = driver.find_element("id", "review-left").text  # type: ignore[attr-defined]
    assert left.startswith("50 of 50 left")
    photo = int(api(site, "/v1/review", n=1)["photos"][0]["id"])  # type: ignore[index]
    first, second = [tag for tag, _ in review_tags(driver)][:2]
    keys(driver, "r")  # reject the chosen (first) tag
    wait_for(driver, lambda d: first not in dict(review_tags(d)))
    assert first not in {t["tag"] for t in api(site, f"/v1/images/{photo}")["tags"]}  # type: ignore[index]
    keys(driver, "u")  # undo: the tag is back, predicted
    wait_for(driver, lambda d: dict(review_tags(d)).get(first) == "predicted")
    shown = {t["tag"]: t["source"] for t in api(site, f"/v1/images/{photo}")["tags"]}  # type: ignore[index]
    assert shown[first] == "predicted"
    keys(driver, Keys.ARROW_DOWN, "a")  # accept the second tag
    wait_for(driver, lambda d: dict(review_tags(d)).get(second) == "confirmed")
    keys(driver, "t")
    assert driver.switch_to.active_element.get_attribute("id") == "review-tag"  # type: ignore[attr-defined]
    suggestions = driver.execute_script(  # type: ignore[attr-defined]
        "return [...document.querySelectorAll('#vocabulary option')].map(o => o.value)")
    assert "sky" in suggestions
    keys(driver, "holiday", Keys.ENTER)
    wait_for(driver, lambda d: dict(review_tags(d)).get("holiday") == "added")
    assert "teaches" in driver.find_element("id", "status").text  # type: ignore[attr-defined]
    assert no_sideways_scroll(driver)
    shot(driver, f"review-{request.node.callspec.id}")
    keys(driver, Keys.ARROW_RIGHT)
    wait_for(driver, lambda d: d.find_element("id", "review-left").text.startswith("49 of 50 left"))
    driver.find_element("id", "rescore").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.find_element("id", "taught").text.startswith("Re-scored"), timeout=120)


@pytest.mark.parametrize("page", [("desktop", "light"), ("phone", "dark")], indirect=True, ids=["desktop", "phone"])
def test_try_a_photo_without_keeping_it_then_keep_it(page: object, site: dict[str, object],
                                                     request: pytest.FixtureRequest) -> None:
    driver = page
    name = f"Beach day {request.node.callspec.id}.jpg"
    wait_for(driver, lambda d: len(css(d, "#gallery .card")) == 60)
    before = api(site, "/v1/photos", limit=1)["total"]
    data = base64.b64encode(jpeg(["sea", "sand"], seed=len(name), size=96)).decode()
    driver.execute_script(DROP, name, data)  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.find_element("id", "viewer-title").text == f"{name} (not kept)")
    wait_for(driver, lambda d: len(css(d, "#viewer-tags li")) == 5 and css(d, "#voters button"))
    assert not css(driver, "#viewer-tags button")  # nothing to correct: it is not kept
    assert api(site, "/v1/photos", limit=1)["total"] == before  # nothing written
    driver.find_element("id", "keep").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.find_element("id", "viewer-note").text.startswith("Kept in your library as "))
    note = driver.find_element("id", "viewer-note").text  # type: ignore[attr-defined]
    assert note.endswith(f"/uploads/{name}") and no_sideways_scroll(driver)
    assert api(site, "/v1/photos", limit=1)["total"] == before + 1
    assert driver.find_element("id", "viewer-title").text == name  # type: ignore[attr-defined]
    driver.find_element("id", "close").click()  # type: ignore[attr-defined]
    broken = base64.b64encode(b"not a photo at all").decode()
    driver.execute_script(DROP, "notes.jpg", broken)  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.find_element("id", "status").get_attribute("class") == "error")
    said = driver.find_element("id", "status").text  # type: ignore[attr-defined]
    assert said.startswith("notes.jpg: ") and said.count("notes.jpg") == 1, said


def test_markup_in_tags_and_folders_stays_text(page: object, site: dict[str, object]) -> None:
    driver = page
    driver.get(str(site["url"]) + "/#/photos")  # type: ignore[attr-defined]
    wait_for(driver, lambda d: css(d, ".facet button"))
    folder = next(b for b in css(driver, ".facet button") if XSS_FOLDER in (b.get_attribute("title") or ""))
    assert folder.text.split("\n")[0].endswith(XSS_FOLDER) and not css(driver, ".facet b")
    folder.click()
    wait_for(driver, lambda d: len(css(d, "#gallery .card")) == 5)
    card = next(c for c in css(driver, "#gallery .card") if XSS_FILE in c.text)
    assert XSS_TAG in card.text and not css(driver, "#gallery svg")
    card.click()
    wait_for(driver, lambda d: css(d, "#viewer-tags li"))
    assert XSS_TAG in [li.get_attribute("data-tag") for li in css(driver, "#viewer-tags li")]
    assert driver.find_element("id", "viewer-title").text == XSS_FILE  # type: ignore[attr-defined]
    assert not css(driver, 'img[src="x"]') and driver.execute_script("return window.pwned") is None  # type: ignore[attr-defined]
    assert "script-src 'self'" in httpx.get(str(site["url"]) + "/").headers["content-security-policy"]


@pytest.mark.parametrize("page", [("desktop", "light"), ("phone", "dark")], indirect=True, ids=["desktop", "phone"])
def test_the_runs_page_sorts_labelled_words(page: object, site: dict[str, object]) -> None:
    driver = page
    driver.get(str(site["url"]) + "/#/runs")  # type: ignore[attr-defined]
    wait_for(driver, lambda d: len(css(d, "#run-words tbody tr")) == 8)
    assert no_sideways_scroll(driver)
    assert "F1" in driver.find_element("id", "run-summary").text  # type: ignore[attr-defined]
    headers = [h.text.rstrip(" ↓↑") for h in css(driver, "#run-words th")]
    assert headers == ["word", "training images", "P", "R", "F1"]
    next(b for b in css(driver, "#run-words th button") if b.text.startswith("F1")).click()
    wait_for(driver, lambda d: css(d, '#run-words th[aria-sort="descending"]'))
    f1 = [float(r.find_elements("css selector", "td")[4].text.replace("–", "-1")) for r in css(driver, "#run-words tbody tr")]
    assert f1 == sorted(f1, reverse=True)


def test_docs_render_the_openapi_offline(page: object, site: dict[str, object]) -> None:
    driver = page
    driver.get(str(site["url"]) + "/docs")  # type: ignore[attr-defined]
    wait_for(driver, lambda d: len(css(d, ".opblock")) >= 10)
    assert "Unable to render" not in driver.find_element("tag name", "body").text  # type: ignore[attr-defined]
