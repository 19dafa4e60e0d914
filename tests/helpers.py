"""Shared test helpers: run the CLI in a subprocess, serve a directory over HTTP on 127.0.0.1, drive a
headless Chromium."""

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    return subprocess.run([sys.executable, "-m", "tinymnist", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def serve_directory(directory: Path):
    """Serve `directory` on an ephemeral port of 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def mouse_stroke(page, points) -> None:
    """Draw one stroke with the mouse on a page's 280x280 #canvas (Playwright); points in canvas pixels."""
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / 280
    page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
    page.mouse.up()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextlib.contextmanager
def headless_chromium(install_hint: str):
    """A headless Chromium (Playwright) for the pages' browser tests; skips, naming `install_hint`, where
    Chromium or Playwright is missing."""
    import pytest

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} {install_hint}")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()
