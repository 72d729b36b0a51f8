"""The HTML report as a real browser shows it: headless Chromium, no console errors.

The control tests first prove that `tests.browser` sees what it must (an uncaught exception, a
console.error, a failed load, a blocked script, an alert), so that "no errors" on the report
means something.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeopt.host import report
from tests.browser import ConsoleMessage, Rendered, chromium_path, render
from tests.host.test_report import CASES, META, case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium: these tests need a real browser (Debian: apt-get install chromium, "
            "as root)"
        )
    return path


def show(tmp_path: Path, name: str, page: str, executable: str) -> Rendered:
    path = tmp_path / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    return render(path, width=800, height=600, timeout=90, executable=executable)


def screenshot(rendered: Rendered) -> np.ndarray:
    assert rendered.screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(rendered.screenshot)) as image:
        return np.asarray(image.convert("RGB"))


# --- the helper sees errors --------------------------------------------------------------------


def test_control_uncaught_exception_is_an_error(tmp_path: Path, chromium: str) -> None:
    page = (
        "<!DOCTYPE html><title>t</title><p>hello</p>"
        "<script>console.log('just saying'); throw new Error('boom')</script>"
    )
    rendered = show(tmp_path, "boom", page, chromium)
    assert rendered.messages[0] == ConsoleMessage("log", "console", "just saying")
    [error] = rendered.errors
    assert error.source == "exception"
    assert error.text.startswith("Error: boom")


def test_control_console_error_and_failed_load(tmp_path: Path, chromium: str) -> None:
    page = (
        "<!DOCTYPE html><html><head><title>t</title>"
        "<script>console.error('told you')</script></head><body>"
        '<img src="missing.png" alt=""></body></html>'
    )
    rendered = show(tmp_path, "errors", page, chromium)
    # The two come in either order.
    assert sorted((m.source, m.text.split(" (")[0]) for m in rendered.errors) == [
        ("console", "told you"),
        ("network", "Failed to load resource: net::ERR_FILE_NOT_FOUND"),
    ]
    assert rendered.images == [
        {"src": "missing.png", "complete": True, "naturalWidth": 0, "naturalHeight": 0}
    ]


def test_control_script_blocked_by_the_policy(tmp_path: Path, chromium: str) -> None:
    # What the report's policy would do to a script that slipped through escaping.
    page = (
        "<!DOCTYPE html><html><head><title>t</title><meta http-equiv=Content-Security-Policy "
        "content=\"default-src 'none'\"></head><body><script>alert(1)</script></body></html>"
    )
    rendered = show(tmp_path, "blocked", page, chromium)
    [error] = rendered.errors
    assert error.source == "security"
    assert "violates the following Content Security Policy directive" in error.text


def test_control_alert_is_seen_and_answered(tmp_path: Path, chromium: str) -> None:
    rendered = show(tmp_path, "alert", "<title>t</title><script>alert(1)</script>", chromium)
    assert rendered.errors == [ConsoleMessage("error", "dialog", "alert: 1")]


def test_control_clean_page_has_no_messages(tmp_path: Path, chromium: str) -> None:
    rendered = show(tmp_path, "clean", "<!DOCTYPE html><title>t</title><p>hello</p>", chromium)
    assert rendered.messages == []
    image = screenshot(rendered)
    assert image.shape == (600, 800, 3)


# --- the report --------------------------------------------------------------------------------


def test_report_renders_without_errors(tmp_path: Path, chromium: str) -> None:
    path = tmp_path / "bench.html"
    report.write_html(CASES, path, "Benchmark of mobilenetv2-12", META)
    rendered = render(path, width=1280, height=2000, timeout=90, executable=chromium)
    (tmp_path / "screenshot.png").write_bytes(rendered.screenshot)
    assert rendered.messages == [], rendered.messages
    # The embedded PNG was decoded at its full size.
    assert len(rendered.images) == 1
    assert rendered.images[0]["src"].startswith("data:image/png;base64,")
    assert rendered.images[0]["naturalWidth"] == 1200
    assert rendered.images[0]["naturalHeight"] == 1400
    image = screenshot(rendered)
    assert image.shape[1] == 1280 and image.shape[0] >= 2000  # the whole page
    assert image.std() > 30
    assert len({tuple(p) for p in image.reshape(-1, 3)[::5]}) > 300
    # The plot is on screen: its bars' colours, over large areas (fp32 blue, int8-static red).
    for rgb in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)):
        assert (np.abs(image.astype(int) - rgb).sum(axis=2) < 10).sum() > 5000, rgb
    # The failed row's pink background (tr.failed) is painted too.
    assert (np.abs(image.astype(int) - (0xFD, 0xEC, 0xEA)).sum(axis=2) < 4).sum() > 5000


def test_report_with_hostile_names_stays_inert(tmp_path: Path, chromium: str) -> None:
    evil = "<script>alert(1)</script>"
    cases = [
        case(evil, "fp32", p50=10.0, speedup=1.0, flags=['"><img src=x onerror=alert(2)>']),
        case(evil, "int8-static", p50=5.0, speedup=2.0),
        case("pi5", "fp16", "failed", error="<iframe src=javascript:alert(3)>"),
    ]
    path = tmp_path / "evil.html"
    report.write_html(cases, path, f"Benchmark {evil}", {evil: evil})
    rendered = render(path, timeout=90, executable=chromium)
    assert rendered.messages == [], rendered.messages  # no dialog, no blocked script
    assert len(rendered.images) == 1


def test_report_of_nothing_ok_renders(tmp_path: Path, chromium: str) -> None:
    path = tmp_path / "none.html"
    report.write_html([case("pi5", "fp32", "failed", error="boom")], path, "t", {})
    rendered = render(path, timeout=90, executable=chromium)
    assert rendered.messages == []
    assert rendered.images[0]["naturalWidth"] == 1200
    assert rendered.images[0]["naturalHeight"] == 300
