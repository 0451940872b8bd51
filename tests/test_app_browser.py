"""The web demo end to end in a real browser: `build_app` on a tiny model served on a free
port, driven by headless Chromium through playwright: type a prompt, click Generate, wait
for a playable <video> whose file is served, save a screenshot.

Chromium: Debian's (`apt-get install -y chromium`, as `.ci/run` does) or any Chrome named
by ``KINEMA_CHROMIUM``; playwright's own download needs internet and is used only if
present. A missing browser fails the test: it is part of the dev setup, not optional.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from model_folders import flow_folder  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SETUP = (
    "apt-get install -y chromium (Debian; as .ci/run does) or set KINEMA_CHROMIUM=/path/to/"
    "chrome; `python -m playwright install chromium` needs internet"
)


def chromium(playwright):
    """Headless Chromium: KINEMA_CHROMIUM, a system Chromium, else playwright's own."""
    path = os.environ.get("KINEMA_CHROMIUM") or next(
        filter(None, map(shutil.which, BROWSERS)), None
    )
    try:
        return playwright.chromium.launch(executable_path=path, headless=True)
    except Exception as e:  # playwright's Error when its own browser was never downloaded
        pytest.fail(f"no Chromium to drive the app ({str(e).splitlines()[0]}): {SETUP}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_generate_in_the_browser(tmp_path, one_thread):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    from kinema.app import build_app

    app = build_app([flow_folder(tmp_path / "flow", text=True)])
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.locator("#prompt textarea").fill("a red ball moves to the left")
            page.locator("#generate").click()
            page.wait_for_function(
                """() => { const v = document.querySelector('#output video');
                           return v && v.src && v.readyState >= 1 && isFinite(v.duration)
                                  && v.duration > 0; }""",
                timeout=180_000,
            )
            src, duration = page.evaluate(
                "() => { const v = document.querySelector('#output video');"
                " return [v.src, v.duration]; }"
            )
            served = page.request.get(src)
            assert served.ok and len(served.body()) > 0, (src, served.status)
            assert src.endswith(".webm") and 0.3 < duration < 1.0  # 5 frames at 10 fps
            assert "5 frames of 32x32 in" in page.locator("#status").inner_text()
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            browser.close()
    finally:
        app.close()
