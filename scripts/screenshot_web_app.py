"""Retake docs/web-app.png: the web page in headless Chromium with the bundled model, after
colorizing a gray aerial photo (by default the bundled NEON sample).

    python scripts/screenshot_web_app.py [--image GRAY] [--out docs/web-app.png]

Needs Chromium (scripts/setup-test-env.sh installs it) and Playwright (the test extras).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    sample = Path(str(resources.files("aerocolor") / "samples" / "neon_osbs_029_gray.tif"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=None, help=f"gray photo to upload (default: {sample.name}, bundled)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "web-app.png"))
    args = ap.parse_args()
    image = Path(args.image) if args.image else sample
    if not image.is_file():
        sys.exit(f"{image}: no such image; give one with --image")

    from playwright.sync_api import sync_playwright

    from aerocolor.web.launch import served

    with tempfile.TemporaryDirectory() as tmp, served(["--device", "cpu"], Path(tmp) / "server.log") as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector("#model option", state="attached")
            page.set_input_files("#file", str(image))
            page.click("#colorize")
            page.wait_for_selector("#result[data-ready='1']", timeout=120_000)
            page.locator("#slider").fill("50")
            page.screenshot(path=args.out)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
