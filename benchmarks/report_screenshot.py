"""A screenshot of the top of a report page, for the README, in headless Chromium.

    .venv/bin/python benchmarks/report_screenshot.py runs/compare-elpv/report.html docs/compare-elpv.png

It stops above the section named by --before (default: the worst-classified images): those are
thumbnails of the data set's own files, and ELPV's licence does not let the repository carry them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def screenshot(page: Path, out: Path, before: str, width: int) -> tuple[int, int]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},1000",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(page.resolve().as_uri())
            height = driver.execute_script(
                "const s = document.getElementById(arguments[0]);"
                "return s ? Math.ceil(s.getBoundingClientRect().top + window.scrollY) : document.body.scrollHeight",
                before,
            )
            driver.set_window_size(width, height)
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--before", default="worst-classified", help="the id of the first section left out")
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args()
    width, height = screenshot(args.page, args.out, args.before, args.width)
    print(f"{args.out}: {width}x{height} px, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
