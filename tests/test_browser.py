"""The demo Space in a real headless Chromium: upload, labels, a screenshot for CI, a bad upload, then a good one.

Needs the Debian packages `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`) and the
`playwright` Python package; CI installs both, so their absence is a failure, not a skip.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from test_space import EXAMPLES, ROOT, copy_with_results, running_space

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # A synthetic camera (a moving test pattern, no face) granted without a prompt, for the streaming tab.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
SCREENSHOT = ROOT / "artifacts" / "space_screenshot.png"
WAIT_MS = 60_000

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium chromium-driver`.")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The playwright Python package is missing: install it with `pip install playwright`.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def space_url(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    model_dir = copy_with_results(tiny_model_dir, folder / "synthetic-tiny")
    with running_space(model_dir, folder / "server.log") as url:
        yield url


def upload(page, path: Path) -> None:
    page.locator("#photo-input input[type=file]").set_input_files(str(path))


def clear_photo(page) -> None:
    """Empty the photo input (its clear button) so the next upload starts from a fresh widget."""
    page.locator("#photo-input").get_by_role("button", name="Remove Image").click()
    page.wait_for_selector("#photo-input input[type=file]", state="attached", timeout=WAIT_MS)


def status_text(page) -> str:
    return page.locator("#photo-status").inner_text()


def test_upload_labels_faces_and_survives_a_bad_file(browser, space_url, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    foreign = []
    page.on("request", lambda request: foreign.append(request.url)
            if urlparse(request.url).hostname not in ("127.0.0.1", "localhost") and
            not request.url.startswith(("data:", "blob:")) else None)
    # Not "networkidle": the page keeps a heartbeat connection to the server open.
    page.goto(space_url, wait_until="load", timeout=WAIT_MS)
    page.wait_for_selector("#header", timeout=WAIT_MS)
    assert "Model:" in page.locator("#header").inner_text()

    upload(page, EXAMPLES / "astronaut_collage.jpg")
    page.wait_for_function(
        "() => document.querySelector('#photo-status')?.innerText.includes('faces found')", timeout=WAIT_MS
    )
    expect(page.locator("#face-1")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#face-3")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#face-4")).to_be_hidden(timeout=WAIT_MS)
    page.locator("#annotated img").wait_for(timeout=WAIT_MS)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and SCREENSHOT.stat().st_size > 10_000

    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is a text file with an image's name")
    clear_photo(page)
    upload(page, bad)
    page.wait_for_function(
        "() => document.querySelector('#photo-status')?.innerText.includes('is not an image')", timeout=WAIT_MS
    )
    assert "'holiday.jpg' is not an image" in status_text(page)

    clear_photo(page)
    upload(page, EXAMPLES / "astronaut.jpg")
    page.wait_for_function(
        "() => document.querySelector('#photo-status')?.innerText.includes('1 face found')", timeout=WAIT_MS
    )
    expect(page.locator("#face-1")).to_be_visible(timeout=WAIT_MS)
    assert foreign == [], f"the page reached outside localhost: {foreign}"
    page.close()


def test_webcam_stream_shows_live_frames_and_the_frame_rate(browser, space_url):
    from playwright.sync_api import expect

    context = browser.new_context(permissions=["camera"], viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(space_url, wait_until="load", timeout=WAIT_MS)
    page.wait_for_selector("#header", timeout=WAIT_MS)
    page.get_by_role("tab", name="Webcam stream").click()
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_text("Record", exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#stream-speed')?.innerText.includes('frames/s')", timeout=WAIT_MS
    )
    expect(page.locator("#live-labels img")).to_have_count(1, timeout=WAIT_MS)
    context.close()
