"""The HTML report in a real browser: Debian's headless Chromium, driven by Playwright (never a downloaded
browser), renders it with no console errors, its main sections visible, every inline image decoded, and a
screenshot that is not blank. Skipped with a message where /usr/bin/chromium or playwright is missing
(.ci/run installs both, so CI runs it)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECTIONS = ("summary", "metrics", "effects", "sweep", "latents", "samples", "roc", "provenance")

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser "
                "test; .ci/run does", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def page_result(tmp_path_factory):
    """Render the synthetic report once, load it from file:// with all network requests refused, and collect
    console errors, page errors and failed requests."""
    from ldbench.report.html import render_report
    from tests.unit.test_report_html import report_inputs

    root = tmp_path_factory.mktemp("report")
    report = root / "report.html"
    report.write_text(render_report(report_inputs()), encoding="utf-8")
    profile = root / "profile"  # an empty, throwaway user-data-dir
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            # Self-contained means no request leaves the file: anything but the report itself and data: URIs
            # is refused, and counted.
            external: list[str] = []

            def route(r):
                url = r.request.url
                if url.startswith(("file://", "data:")):
                    r.continue_()
                else:
                    external.append(url)
                    r.abort()

            page.route("**/*", route)
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            info = {
                "visible": {s: page.locator(f"section#{s}").is_visible() for s in SECTIONS},
                "heights": {s: page.locator(f"section#{s}").bounding_box()["height"] for s in SECTIONS},
                "images": page.evaluate(
                    "Array.from(document.images).map(i => [i.closest('section').id, i.naturalWidth, i.naturalHeight])"),
                "pwned": page.evaluate("window.__pwned === undefined ? null : window.__pwned"),
                "title": page.title(),
                "summary_rows": page.locator("#summary-table tbody tr").count(),
                "screenshot": page.screenshot(full_page=False),
                "sweep_shot": page.locator("section#sweep").screenshot(),
                "external": external,
            }
        finally:
            context.close()
    return info, problems


def test_no_console_errors_or_external_requests(page_result):
    info, problems = page_result
    assert problems == []
    assert info["external"] == []


def test_main_sections_visible(page_result):
    info, _ = page_result
    assert info["visible"] == {s: True for s in SECTIONS}
    assert all(h > 20 for h in info["heights"].values()), info["heights"]
    assert info["summary_rows"] > 0


def test_every_image_decoded(page_result):
    info, _ = page_result
    sections = {s for s, _, _ in info["images"]}
    assert {"sweep", "latents", "samples", "roc"} <= sections
    assert all(w > 0 and h > 0 for _, w, h in info["images"]), info["images"]


def test_escaped_text_runs_no_script(page_result):
    info, _ = page_result
    assert info["pwned"] is None
    assert info["title"] == "ldbench report: synthetic"


def _gray(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def test_screenshots_are_not_blank(page_result):
    info, _ = page_result
    top = _gray(info["screenshot"])
    assert top.shape == (900, 1280)
    assert top.std() > 5 and (top < 128).mean() > 0.002  # dark text on a white page, not an empty canvas
    sweep = _gray(info["sweep_shot"])
    assert sweep.std() > 5 and (sweep < 200).mean() > 0.01  # the δ-sweep figure was painted

