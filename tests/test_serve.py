import base64
import http.client
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from helpers import headless_chromium, mouse_stroke
from PIL import Image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tinymnist.models.zoo import DEFAULT_MODEL  # noqa: E402
from tinymnist.serve.server import MAX_BODY_BYTES, create_app  # noqa: E402


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


def test_an_image_field_naming_a_file_is_not_read(client):
    assert client.post("/api/predict", json={"image": "/etc/passwd"}).status_code == 422


# ---------------------------------------------------------------------------------------------
# End to end in a real browser: draw a 7 on the canvas, read the answer from the page.



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(*flags: str) -> tuple[subprocess.Popen, str]:
    """`tinymnist serve` in a subprocess on a free loopback port, once /health answers."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tinymnist", "serve", "--port", str(port), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=10)
    with proc.stderr:
        pytest.fail(f"server did not start: {proc.stderr.read().decode()}")


def _stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=15)
    proc.stderr.close()  # else a ResourceWarning (unclosed file) at teardown


@pytest.fixture(scope="module")
def server_process():
    proc, url = _start_server()
    yield proc, url
    _stop_server(proc)


@pytest.fixture(scope="module")
def server(server_process):
    return server_process[1]


@pytest.mark.slow
def test_draw_a_digit_in_chromium(server, tmp_path):
    import os

    with headless_chromium("(.ci/run installs it with apt)") as browser:
        page = browser.new_page(viewport={"width": 900, "height": 640})
        page.goto(server)
        mouse_stroke(page, [(70, 60), (210, 60), (150, 240)])  # a 7: top bar, then the diagonal
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
        mouse_stroke(page, [(140, 50), (140, 240)])  # a 1
        page.wait_for_function("document.querySelector('#answer').textContent === '1'", timeout=10_000)


# ---------------------------------------------------------------------------------------------
# Hostile clients against a real server: bodies over the limit, slow and idle connections, SIGTERM.

MiB = 2**20


def _address(url: str) -> tuple[str, int]:
    return "127.0.0.1", int(url.rsplit(":", 1)[1])


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict((name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:]))
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _status(url: str, data: bytes | None = None, timeout: float = 5) -> int:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "image/png"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def _headers(content_length: int | None = None, *extra: str) -> bytes:
    length = ["Transfer-Encoding: chunked"] if content_length is None else [f"Content-Length: {content_length}"]
    return "\r\n".join(["POST /api/predict HTTP/1.1", "Host: test", "Content-Type: image/png", *length, *extra,
                        "", ""]).encode()


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written: HTTP clients (httpx, urllib) remove dot segments before sending,
    so a traversal attempt must be written to the socket by hand to reach the server at all."""
    with socket.create_connection(_address(url), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        status, _, body = _read_response(sock)
    return status, body


UP = "../" * 40  # more than enough to climb from whatever folder a server resolves paths in to the root


@pytest.mark.parametrize("template", [
    "/static/{up}{secret}",  # dot segments as written: what a browser or curl would have removed
    "/static/{up_encoded}{secret}",  # ..%2f: one decoding later, a dot segment
    "/static/{up_dots_encoded}{secret}",  # %2e%2e/
    "/{up}{secret}",  # from the root
    "/static//{secret}",  # joined onto a folder, an absolute path replaces the folder
    "/static/%2f{secret}",
    "//{secret}",
], ids=["dots", "encoded-slash", "encoded-dots", "from-root", "absolute", "encoded-absolute", "double-slash"])
def test_no_file_is_served_by_path_traversal(server, tmp_path, template):
    # The target is a file of this test's own, named by its absolute path: a request that escapes any
    # folder a route might serve from reaches it, wherever the package is installed.
    target = tmp_path / "secret.txt"
    target.write_text("tinymnist-traversal-canary")
    path = template.format(up=UP, up_encoded=UP.replace("/", "%2f"), up_dots_encoded=UP.replace("..", "%2e%2e"),
                           secret=urllib.parse.quote(str(target).lstrip("/")))
    assert _raw_get(server, "/health")[0] == 200  # raw requests reach the app
    status, body = _raw_get(server, path)
    assert 400 <= status < 500, (template, status)
    assert b"tinymnist-traversal-canary" not in body


def test_chunked_body_over_the_limit_is_refused_while_streaming(client):
    response = client.post("/api/predict", content=(b"\0" * 65536 for _ in range(40)), headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and "too large" in response.json()["error"]


def test_200_mb_chunked_upload_is_cut_off_at_the_limit(server_process):
    proc, url = server_process
    before = peak = _rss_mb(proc.pid)
    chunk = b"\0" * 65536
    frame, sent = b"%x\r\n%s\r\n" % (len(chunk), chunk), 0
    with socket.create_connection(_address(url), timeout=10) as sock:
        sock.sendall(_headers(None))
        try:
            while sent < 200 * MiB:
                sock.sendall(frame)
                sent += len(chunk)
                if sent % (4 * MiB) == 0:
                    peak = max(peak, _rss_mb(proc.pid))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: its answer is waiting to be read
        status, headers, body = _read_response(sock)
    assert status == 413 and "too large" in json.loads(body)["error"]
    assert headers["connection"] == "close"
    assert sent < 50 * MiB, f"the server read {sent / MiB:.0f} MiB of it"  # 2 MiB, 16 MiB dropped, socket buffers
    assert max(peak, _rss_mb(proc.pid)) - before < 50


def test_content_length_over_the_limit_is_refused_on_the_header(server):
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_headers(200 * MiB))  # and no body at all
        status, headers, _ = _read_response(sock)
        assert status == 413 and headers["connection"] == "close"
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_headers(3 * MiB, "Expect: 100-continue"))  # curl's way for a large upload: no body before 100
        status, headers, _ = _read_response(sock)
        assert status == 413 and headers["connection"] == "close"
    with socket.create_connection(_address(server), timeout=10) as sock:  # a few MiB: answered, and the connection kept
        sock.sendall(_headers(3 * MiB) + b"\0" * (3 * MiB))
        status, headers, _ = _read_response(sock)
        assert status == 413 and "connection" not in headers
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert _read_response(sock)[0] == 200


def test_answers_are_not_held_back_by_nagle(server):
    # uvicorn writes a response's headers and body separately; without TCP_NODELAY on the accepted socket
    # (asyncio sets it only when the listening socket was made with IPPROTO_TCP) the body waits for the
    # client's delayed ACK: 40 ms per request on Linux
    connection = http.client.HTTPConnection(*_address(server), timeout=5)
    times = []
    for _ in range(9):
        started = time.perf_counter()
        connection.request("GET", "/health")
        assert connection.getresponse().read()
        times.append(time.perf_counter() - started)
    connection.close()
    assert sorted(times)[4] < 0.02, f"median {1000 * sorted(times)[4]:.0f} ms"


def test_idle_and_slow_clients_do_not_stop_others(server, mnist):
    address, stop = _address(server), threading.Event()
    idle = [socket.create_connection(address) for _ in range(25)]
    slow = [socket.create_connection(address) for _ in range(25)]

    def slowloris() -> None:  # headers a byte at a time on each slow connection
        for byte in _headers(100):
            for sock in slow:
                if stop.is_set():
                    return
                sock.send(bytes([byte]))
            time.sleep(0.05)

    thread = threading.Thread(target=slowloris, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert _status(server + "/api/predict", png_bytes(mnist.test_images[0])) == 200
        assert _status(server + "/health") == 200
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        thread.join()
        for sock in idle + slow:
            sock.close()


@pytest.mark.slow
def test_connection_limit_and_deadlines():
    proc, url = _start_server("--max-connections", "3", "--request-timeout", "2")
    address, held = _address(url), []
    try:
        held += [socket.create_connection(address, timeout=10) for _ in range(2)]
        assert _status(url + "/health") == 200  # 3 connections open, this one included
        held.append(socket.create_connection(address, timeout=10))
        partial = socket.create_connection(address, timeout=10)
        partial.sendall(b"GET /health HT")
        assert _status(url + "/health") == 503  # one more than 3
        assert partial.recv(100).startswith(b"HTTP/1.1 408 ")  # the headers' deadline, 2 s
        assert all(sock.recv(100) == b"" for sock in held)  # idle ones are just closed
        assert _status(url + "/health") == 200
        with socket.create_connection(address, timeout=10) as sock:  # a body that never arrives
            sock.sendall(_headers(100) + b"abc")
            status, headers, body = _read_response(sock)
            assert status == 408 and "longer than 2 s" in json.loads(body)["error"]
    finally:
        for sock in held:
            sock.close()
        _stop_server(proc)
    assert proc.returncode == 0


@pytest.mark.slow
def test_sigterm_lets_a_request_in_flight_finish_and_exits_0(mnist):
    proc, url = _start_server()
    address, png = _address(url), png_bytes(mnist.test_images[0])  # a 7
    try:
        in_flight = socket.create_connection(address, timeout=10)
        in_flight.sendall(_headers(len(png)) + png[:20])  # headers and part of the body
        idle = socket.create_connection(address, timeout=10)
        partial = socket.create_connection(address, timeout=10)
        partial.sendall(b"POST /api/pre")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=2).close()  # no new connections
        in_flight.sendall(png[20:])
        status, headers, body = _read_response(in_flight)
        assert status == 200 and json.loads(body)["label"] == int(mnist.test_labels[0])
        assert in_flight.recv(100) == b""  # then closed
        assert idle.recv(100) == b"" and partial.recv(100) == b""  # closed, not waited for
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read().decode()
    finally:
        for sock in (in_flight, idle, partial):
            sock.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()
