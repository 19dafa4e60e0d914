import base64
import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tinymnist.models import DEFAULT_MODEL  # noqa: E402
from tinymnist.serve import MAX_BODY_BYTES, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app())


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert response.json()["params"] < 5000
    assert response.json()["model"] == DEFAULT_MODEL  # the registry name the bundled model was trained as


def test_page_has_canvas_and_controls(client):
    html = client.get("/").text
    for element in ('id="canvas"', 'id="clear"', 'id="upload"', 'id="bars"', 'id="seen"'):
        assert element in html


def test_predict_raw_png_and_base64(client, mnist):
    digit = mnist.test_images[1]  # a 2
    response = client.post("/api/predict", content=png_bytes(digit), headers={"Content-Type": "image/png"})
    assert response.status_code == 200
    data = response.json()
    assert data["label"] == int(mnist.test_labels[1])
    assert len(data["probabilities"]) == 10 and abs(sum(data["probabilities"]) - 1) < 1e-4
    seen = Image.open(io.BytesIO(base64.b64decode(data["input_png"])))
    assert seen.size == (28, 28)
    url = "data:image/png;base64," + base64.b64encode(png_bytes(digit)).decode()
    again = client.post("/api/predict", json={"image": url})
    assert again.status_code == 200 and again.json()["label"] == data["label"]


@pytest.mark.parametrize("files", [
    lambda png: {"file": ("digit.png", png, "image/png")},  # curl -F file=@digit.png
    lambda png: [("note", ("a.txt", b"not this one", "text/plain")), ("image", ("d.png", png, "application/octet-stream"))],
    lambda png: {"upload": ("digit.png", png, "image/png")},  # no field named file or image: the first file field
], ids=["file", "image", "first-file-field"])
def test_predict_multipart_upload(client, mnist, files):
    digit = mnist.test_images[1]  # a 2
    response = client.post("/api/predict", files=files(png_bytes(digit)), data={"comment": "a text field is ignored"})
    assert response.status_code == 200, response.text
    assert response.json()["label"] == int(mnist.test_labels[1])


def test_multipart_without_a_file_field_names_the_field_to_use(client):
    response = client.post("/api/predict", data={"file": "digit.png"}, files={"x": (None, b"a plain field")})
    assert response.status_code == 400 and '"file"' in response.json()["error"]
    bad = client.post("/api/predict", content=b"--nope", headers={"Content-Type": "multipart/form-data"})  # no boundary
    assert bad.status_code == 400 and "error" in bad.json() and "Traceback" not in bad.text


def test_oversized_multipart_upload_is_refused(client):
    response = client.post("/api/predict", files={"file": ("big.png", b"\0" * MAX_BODY_BYTES, "image/png")})
    assert response.status_code == 413 and "too large" in response.json()["error"]


@pytest.mark.parametrize("content, content_type, status", [
    (b"hello", "text/plain", 415),
    (b"\x89PNG garbage bytes", "image/png", 422),
    (b"", "image/png", 422),
    (b'{"image": "***"}', "application/json", 422),
    (b'{"nope": 1}', "application/json", 422),
    (png_bytes(np.zeros((40, 40), np.uint8)), "image/png", 422),  # blank: no ink
])
def test_bad_requests_are_json_4xx(client, content, content_type, status):
    response = client.post("/api/predict", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert "error" in response.json() and "Traceback" not in response.text


def test_oversized_request_is_refused(client):
    response = client.post("/api/predict", content=b"\0" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and "too large" in response.json()["error"]


def test_no_file_access_from_requests(client):
    assert client.get("/static/../../pyproject.toml").status_code == 404
    assert client.post("/api/predict", json={"image": "/etc/passwd"}).status_code == 422


# ---------------------------------------------------------------------------------------------
# End to end in a real browser: draw a 7 on the canvas, read the answer from the page.

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tinymnist", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        proc.wait(timeout=10)
        with proc.stderr:
            pytest.fail(f"server did not start: {proc.stderr.read().decode()}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    proc.stderr.close()  # else a ResourceWarning (unclosed file) at teardown


def _stroke(page, points):
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / 280
    page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
    page.mouse.up()


def test_draw_a_digit_in_chromium(server, tmp_path):
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (.ci/run installs it with apt)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 900, "height": 640})
        page.goto(server)
        _stroke(page, [(70, 60), (210, 60), (150, 240)])  # a 7: top bar, then the diagonal
        page.wait_for_function("document.querySelector('#answer').textContent !== '–'", timeout=10_000)
        page.wait_for_timeout(500)  # let the last (full-stroke) prediction land
        assert page.locator("#answer").text_content().strip() == "7"
        assert page.locator("#seen").get_attribute("src").startswith("data:image/png;base64,")
        page.screenshot(path=str(tmp_path / "serve.png"))
        shot_dir = os.environ.get("TINYMNIST_SCREENSHOT_DIR")
        if shot_dir:
            page.screenshot(path=os.path.join(shot_dir, "serve.png"))
        page.click("#clear")
        assert page.locator("#answer").text_content().strip() == "–"
        _stroke(page, [(140, 50), (140, 240)])  # a 1
        page.wait_for_function("document.querySelector('#answer').textContent === '1'", timeout=10_000)
        browser.close()
