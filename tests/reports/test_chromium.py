"""index.html as a browser renders it: headless Chromium runs the page's script, keeps every table row,
decodes every embedded image, and draws a non-blank screenshot.

Needs a Chromium binary (Debian: ``apt-get install -y chromium``); skipped, with that reason, without one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

from tests.reports.conftest import Built
from tests.reports.test_build import ROWS_PER_PAIR, check_page

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((path for name in BROWSERS if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (Debian/Ubuntu: apt-get install -y chromium)"
)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless, sandbox off (CI containers run as root), its own throwaway profile folder."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)


def test_rendered_dom_has_rows_and_png_images(built: Built, tmp_path: Path) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", (built.out / "index.html").as_uri()).stdout
    page = check_page(dom, rows=2 * ROWS_PER_PAIR)
    assert page.body_attrs.get("data-js") == "ready", "the inline script did not run"
    assert len(page.images) == 5
    assert len(page.rows["cells-x86"]) == 10 and len(page.rows["problems"]) == 13


def test_clicking_a_header_sorts_numerically(built: Built, tmp_path: Path) -> None:
    """A copy of the page that clicks "p99 µs" of the all-rows table once (ascending), "variant" twice."""
    html = (built.out / "index.html").read_text()
    click = (
        "<script>function hit(t, name, n) { var th = Array.from(document.querySelectorAll(t + ' th'))"
        ".find(function (h) { return h.textContent === name; }); for (var i = 0; i < n; i++) th.click(); }"
        "hit('#all-rows', 'p99 µs', 1); hit('#cells-x86', 'variant', 2);</script>"
    )
    copy = tmp_path / "clicked.html"
    copy.write_text(html.replace("</body>", click + "</body>"))
    page = check_page(chromium(tmp_path / "profile", "--dump-dom", copy.as_uri()).stdout, 2 * ROWS_PER_PAIR)
    p99 = page.column("all-rows", "p99 µs")
    numbers = [float(v) for v in p99 if v]
    assert numbers == sorted(numbers) and len(numbers) == 2 * 9  # numeric order: 9.0 < 12.6 < 100
    assert p99[len(numbers) :] == [""] * (len(p99) - len(numbers)), "missing values sort last"
    variants = page.column("cells-x86", "variant")
    assert variants == sorted(variants, reverse=True)
    sorted_headers = {h["text"]: h.get("aria-sort") for h in page.headers["cells-x86"] if h.get("aria-sort")}
    assert sorted_headers == {"variant": "descending"}


def test_screenshot_is_a_drawn_page(built: Built, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    chromium(
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1400,2400",
        "--hide-scrollbars",
        (built.out / "index.html").as_uri(),
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1400)
    assert pixels[..., :3].std() > 0.05, "the screenshot is blank"
