"""`tinymnist serve`: one page to draw a digit and see the model's answer, plus a small JSON API.

It reuses `tinymnist predict`'s preprocessing and model loading. Safety: loopback by default, a
request size limit, images only (raw image/* bytes, a multipart/form-data file field, or base64 in
JSON), no file-system access driven by requests, errors as JSON with a 4xx status.

Under load and against hostile clients (see README, "Reliability"): a body over MAX_BODY_BYTES is
refused with 413 without being kept in memory, on its Content-Length header or on the byte past the
limit of a chunked body (up to DRAIN_BYTES more are dropped so that the client can read its 413, then
the connection is closed); a client has `request_timeout` seconds to send a request's headers and as
long again for its body (slowloris); at most `max_connections` connections are served at once
(uvicorn's limit_concurrency: a request on one more gets 503); images are decoded and predicted one
at a time on a worker thread, so the event loop keeps accepting, timing out and refusing meanwhile;
SIGTERM lets the requests in flight finish and exits with status 0.
"""

import asyncio
import base64
import binascii
import contextlib
import io
import json
import signal
import socket
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from tinymnist.backends.device import resolve_device
from tinymnist.data.preprocess import load_digit
from tinymnist.errors import UserError
from tinymnist.evaluation.predict import predict_digits
from tinymnist.models.zoo import count_parameters
from tinymnist.training.checkpoint import model_from_checkpoint, read_checkpoint

if TYPE_CHECKING:
    import uvicorn

MAX_BODY_BYTES = 2 * 1024 * 1024  # a drawn digit is a few KiB; a phone photo fits comfortably
FORM_FIELDS = ("file", "image")  # the multipart file fields looked for first, in this order
MAX_CONNECTIONS = 100  # connections served at once; a request on one more gets 503 (--max-connections)
REQUEST_TIMEOUT_S = 15  # to send a request's headers, and again its body: 2 MiB at ~140 KB/s (--request-timeout)
DRAIN_BYTES = 16 * 1024 * 1024  # of a body over the limit, read and dropped before answering 413 on an open connection
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this (uvicorn's default)
SHUTDOWN_GRACE_S = 10  # on SIGTERM or Ctrl+C, requests in flight get this long to finish
PREDICT_THREADS = 1  # torch threads of the server: one image at a time needs no more, and two collapse on busy cores
TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
               b"connection: close\r\ncontent-length: 15\r\n\r\nRequest Timeout")


def _png_base64(digit: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, lower case, without its parameters."""
    return content_type.split(";")[0].strip().lower()


async def image_bytes(headers: Headers, body: bytes) -> bytes:
    """The image bytes of a request: raw image/* bytes, a multipart/form-data file field, or JSON
    {"image": base64 or data URL}."""
    content_type = headers.get("content-type", "")
    if media_type(content_type) == "multipart/form-data":
        return await form_image(headers, body)
    return decode_request(content_type, body)


async def form_image(headers: Headers, body: bytes) -> bytes:
    """The bytes of the image file field of a multipart/form-data body (see `pick_file`)."""
    async def chunks() -> AsyncGenerator[bytes, None]:  # the body was already read, within the size limit
        yield body

    parser = MultiPartParser(headers, chunks(), max_files=16, max_fields=16)
    parser.spool_max_size = MAX_BODY_BYTES  # keep the file in memory (starlette spools over 1 MiB to a temporary file)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _BadRequest(f"the multipart/form-data body is malformed ({exc.message.rstrip('.')}); "
                          'send the image as a file field named "file"') from None
    try:
        upload = pick_file(form)
        if upload is None:
            raise _BadRequest('the multipart form has no file field; send the image as a file field named "file" '
                              "(curl -F file=@digit.png)")
        return await upload.read()
    finally:
        await form.close()


def pick_file(form: FormData) -> UploadFile | None:
    """The file field named "file", else "image", else the first file field; None without one."""
    files = [(name, value) for name, value in form.multi_items() if isinstance(value, UploadFile)]
    for wanted in FORM_FIELDS:
        for name, value in files:
            if name == wanted:
                return value
    return files[0][1] if files else None


def decode_request(content_type: str, body: bytes) -> bytes:
    """The image bytes of a request: raw image/* bytes, or JSON {"image": base64 or data URL}."""
    kind = media_type(content_type)
    if kind.startswith("image/"):
        return body
    if kind == "application/json":
        try:
            payload = json.loads(body)
            text = payload["image"]
            if not isinstance(text, str):
                raise TypeError
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise UserError('expected a JSON object {"image": "<base64 PNG or data URL>"}') from None
        if text.startswith("data:"):
            header, _, text = text.partition(",")
            if not header.startswith("data:image/"):
                raise UserError("the data URL is not an image")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UserError("the image field is not valid base64") from None
    raise _Unsupported(kind or "none")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES, timeout: float = REQUEST_TIMEOUT_S) -> bytes:
    """The request body, read as it streams in and within `timeout` seconds, else `_Refused`.

    Over `limit` it is never kept: a Content-Length over it is refused (413) on the header, and uvicorn
    drops the body's bytes as they arrive; a body without one (chunked) is counted up to `limit`, then
    read and dropped for up to DRAIN_BYTES more. Either way the connection stays open when the body
    ends within that, so that the client reads its 413 (a server that closes on a client still sending
    makes its kernel reset the connection, which can lose the answer), and is closed otherwise. A body
    too slow to arrive gets 408; one cut short by the client a 400 that nobody reads; one still arriving
    when the shutdown grace (SHUTDOWN_GRACE_S) ends, 503."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        waits = "100-continue" in request.headers.get("expect", "").lower()  # it sends no body before a 100 Continue
        raise _too_large(limit, close=waits or int(declared) > limit + DRAIN_BYTES)
    loop, chunks, too_large = asyncio.get_running_loop(), request.stream(), False
    deadline = loop.time() + timeout
    try:
        body = await asyncio.wait_for(read_at_most(chunks, limit), timeout)
        if body is not None:
            return body
        too_large = True
        ended = await asyncio.wait_for(drained(chunks, DRAIN_BYTES), max(deadline - loop.time(), 0))
    except asyncio.TimeoutError:
        if not too_large:
            raise _Refused(408, f"the request body took longer than {timeout:g} s to arrive; send it again",
                           close=True) from None
        ended = False
    except ClientDisconnect:  # nobody to answer; without this, starlette logs a traceback for it
        raise _Refused(400, "the client disconnected before sending the whole body", close=True) from None
    except asyncio.CancelledError:  # uvicorn's shutdown grace ran out while the body was still coming: answer, no traceback
        raise _Refused(503, "the server is shutting down; send the request again", close=True) from None
    raise _too_large(limit, close=not ended)


async def read_at_most(chunks: AsyncIterator[bytes], limit: int) -> bytes | None:
    """The bytes of a stream of chunks, or None as soon as they would pass `limit` (the rest is left unread)."""
    body = bytearray()
    async for chunk in chunks:
        if len(body) + len(chunk) > limit:
            return None
        body += chunk
    return bytes(body)


async def drained(chunks: AsyncIterator[bytes], budget: int) -> bool:
    """Read and drop the rest of a stream, up to `budget` bytes: whether it ended within them."""
    async for chunk in chunks:
        budget -= len(chunk)
        if budget < 0:
            return False
    return True


class _Refused(Exception):
    """A request refused while its body was being read: its status, message, and whether to close the connection."""

    def __init__(self, status: int, message: str, close: bool) -> None:
        super().__init__(message)
        self.status, self.close = status, close


def _too_large(limit: int, close: bool) -> _Refused:
    return _Refused(413, f"request too large (limit {limit // 1024} KiB); send a smaller image", close)


class _Unsupported(Exception):
    pass


class _BadRequest(UserError):
    """A request the server cannot read (a malformed form, no file field): 400, not 422."""


def create_app(checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu",
               request_timeout: float = REQUEST_TIMEOUT_S) -> FastAPI:
    """The page and API for a checkpoint (default: the bundled model); `request_timeout` bounds reading a body."""
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).to(resolve_device(device))
    info = {"status": "ok", "model": ckpt["model_name"], "params": count_parameters(model),
            "checkpoint": "bundled pretrained model" if checkpoint is None else Path(checkpoint).name}
    page = resources.files("tinymnist").joinpath("serve/static/index.html").read_text()
    app = FastAPI(title="tinymnist", docs_url=None, redoc_url=None, openapi_url=None)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinymnist-predict")  # one image in memory at a time

    def error(status: int, message: str, close: bool = False) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers={"Connection": "close"} if close else None)

    def answer(raw: bytes) -> dict[str, Any]:
        digit = load_digit(raw, name="uploaded image")
        return {**predict_digits(model, digit[None], top=3)[0], "input_png": _png_base64(digit)}

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:  # never leak a traceback
        return error(500, "internal error")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return info

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            body = await read_body(request, MAX_BODY_BYTES, request_timeout)
        except _Refused as exc:
            return error(exc.status, str(exc), close=exc.close)
        try:
            raw = await image_bytes(request.headers, body)
            result = await asyncio.get_running_loop().run_in_executor(worker, answer, raw)
        except _Unsupported as exc:
            return error(415, f"unsupported content type {exc}; send image/* bytes, a multipart/form-data file "
                         'field named "file", or JSON with a base64 image')
        except _BadRequest as exc:
            return error(400, str(exc))
        except UserError as exc:
            return error(422, str(exc))
        return JSONResponse(result)

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port, or a one-line UserError (port taken, unknown host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # the protocol number makes asyncio set TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(sock: socket.socket, checkpoint: str | None, on_ready: Callable[[], None] | None = None,
          device: str | torch.device | None = "cpu", max_connections: int = MAX_CONNECTIONS,
          request_timeout: float = REQUEST_TIMEOUT_S) -> None:
    """Serve the page and API on a socket from `bind` until SIGTERM (then return) or Ctrl+C (then raise
    KeyboardInterrupt), each after letting the requests in flight finish."""
    import uvicorn

    torch.set_num_threads(PREDICT_THREADS)
    app = create_app(checkpoint, device, request_timeout)  # a bad checkpoint fails here, before anything is announced
    config = uvicorn.Config(app, log_level="warning", http=header_deadline_protocol(request_timeout),
                            limit_concurrency=max_connections + 1,  # uvicorn counts the connection asking too
                            timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    server = uvicorn.Server(config)
    if on_ready:
        on_ready()
    with sigterm_is_a_normal_stop(server):
        server.run(sockets=[sock])


@contextlib.contextmanager
def sigterm_is_a_normal_stop(server: "uvicorn.Server") -> Iterator[None]:
    """While uvicorn runs, it catches SIGTERM and shuts down gracefully; then it restores the handler it
    found and raises the signal again, which by default ends the process with status -15 (143). The
    handler installed here ignores that second SIGTERM, so `serve` returns; one that comes before
    uvicorn has started ends the process at once, with status 0."""
    if threading.current_thread() is not threading.main_thread():  # signals can only be handled there
        yield
        return

    def on_sigterm(signum: int, frame: object) -> None:
        if not server.started:
            sys.exit(0)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def header_deadline_protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, plus a deadline of `timeout` seconds for a request's headers.

    uvicorn closes a keep-alive connection left idle after a response, but not one that never sends a
    request, nor one that sends its headers a byte at a time (slowloris): each would hold a connection
    (and a slot of limit_concurrency) for as long as the client likes. Here a connection that has not
    delivered a whole request line and headers `timeout` seconds after it opened, or after its last
    response, gets a 408 (if it sent part of one) and is closed; so is one still sending, after its
    response, the rest of a body over the limit (uvicorn reads and drops it for as long as it comes)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._start_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._start_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _start_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(timeout, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return  # closing, or the app is reading or answering a request (its body has its own deadline)
            if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:  # part of a request line or headers
                self.transport.write(TIMEOUT_408)
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    return HeaderDeadlineProtocol
