"""The web page end to end in real headless Chromium: upload a real aerial photo, wait for the
colour result, swipe, zoom, pan, download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"no Chromium at {CHROMIUM} (scripts/setup-test-env.sh "
                                       "installs the Debian package)")


@pytest.fixture(scope="module")
def requests_seen() -> list[str]:
    return []


@pytest.fixture(scope="module")
def page(web_server, requests_seen):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1000},
                                      accept_downloads=True)
        page = context.new_page()
        page.on("request", lambda r: requests_seen.append(r.url))
        page.goto(web_server)
        yield page
        browser.close()


def split_of(page) -> float:
    return float(page.get_attribute("#viewer", "data-split"))


def test_colorize_compare_download(page, requests_seen, web_server, shared_data, tmp_path):
    source = sorted((shared_data / "old/val/gsi1960s").glob("*.png"))[0]
    page.wait_for_selector("#model option", state="attached")
    page.set_input_files("#file", str(source))
    assert source.name in page.text_content("#file-name")
    page.locator("#saturation").fill("1.5")
    assert page.text_content("#saturation-value") == "1.50"
    page.click("#colorize")
    page.wait_for_selector("#result[data-ready='1']", timeout=60_000)
    assert page.is_hidden("#progress") and page.text_content("#message") == ""
    width = page.evaluate("document.getElementById('after').naturalWidth")
    assert width == page.evaluate("document.getElementById('before').naturalWidth") == 256

    # swipe: drag the divider from the middle to a quarter of the width
    box = page.locator("#viewer").bounding_box()
    middle_y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, middle_y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 4, middle_y, steps=8)
    page.mouse.up()
    assert split_of(page) == pytest.approx(25, abs=1)
    assert "25" in page.get_attribute("#after-layer", "style")
    page.locator("#slider").fill("70")
    assert split_of(page) == pytest.approx(70, abs=0.5)

    # zoom in, then pan by dragging the image away from the divider
    before_zoom = page.text_content("#zoom-level")
    page.click("#zoom-in")
    assert page.text_content("#zoom-level") != before_zoom
    moved_from = page.get_attribute("#after", "style")
    page.mouse.move(box["x"] + 60, middle_y)
    page.mouse.down()
    page.mouse.move(box["x"] + 160, middle_y + 40, steps=5)
    page.mouse.up()
    assert page.get_attribute("#after", "style") != moved_from
    assert split_of(page) == pytest.approx(70, abs=0.5)  # panning leaves the split alone
    page.click("#zoom-fit")
    page.screenshot(path=str(tmp_path / "web-app.png"))
    assert (tmp_path / "web-app.png").stat().st_size > 10_000

    with page.expect_download() as download:
        page.click("#download-png")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"{source.stem}_color.png"
    colour = np.asarray(Image.open(saved))
    assert colour.shape == (256, 256, 3) and colour.std(axis=2).mean() > 1
    assert page.is_hidden("#download-tif")  # a PNG input has no georeference to keep

    # everything the page loaded came from the app itself: it works offline
    assert requests_seen and all(u.startswith(web_server) for u in requests_seen)


def test_bad_file_shows_a_clear_message(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    page.set_input_files("#file", str(fake))
    page.click("#colorize")
    page.wait_for_function("document.body.dataset.state === 'error'")
    assert "unsupported file type" in page.text_content("#message")
