"""`tinymnist serve`: one page to draw a digit and see the model's answer, plus a small JSON API.

It reuses `tinymnist predict`'s preprocessing and model loading. Safety: loopback by default, a
request size limit, images only (raw image/* bytes, a multipart/form-data file field, or base64 in
JSON), no file-system access driven by requests, errors as JSON with a 4xx status.
"""

import base64
import binascii
import io
import json
import socket
from collections.abc import AsyncGenerator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from tinymnist.checkpoint import model_from_checkpoint
from tinymnist.device import resolve_device
from tinymnist.errors import UserError
from tinymnist.inference import predict_digits, read_checkpoint
from tinymnist.models import count_parameters
from tinymnist.preprocess import load_digit

MAX_BODY_BYTES = 2 * 1024 * 1024  # a drawn digit is a few KiB; a phone photo fits comfortably
FORM_FIELDS = ("file", "image")  # the multipart file fields looked for first, in this order


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

    try:
        form = await MultiPartParser(headers, chunks(), max_files=16, max_fields=16).parse()
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


class _Unsupported(Exception):
    pass


class _BadRequest(UserError):
    """A request the server cannot read (a malformed form, no file field): 400, not 422."""


def create_app(checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu") -> FastAPI:
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).to(resolve_device(device))
    info = {"status": "ok", "model": ckpt["model_name"], "params": count_parameters(model),
            "checkpoint": "bundled pretrained model" if checkpoint is None else Path(checkpoint).name}
    page = resources.files("tinymnist").joinpath("static/index.html").read_text()
    app = FastAPI(title="tinymnist", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

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
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return error(413, f"request too large (limit {MAX_BODY_BYTES // 1024} KiB)")
        body = b""
        async for chunk in request.stream():  # enforce the limit even without a Content-Length
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return error(413, f"request too large (limit {MAX_BODY_BYTES // 1024} KiB)")
        try:
            raw = await image_bytes(request.headers, body)
            digit = load_digit(raw, name="uploaded image")
        except _Unsupported as exc:
            return error(415, f"unsupported content type {exc}; send image/* bytes, a multipart/form-data file "
                         'field named "file", or JSON with a base64 image')
        except _BadRequest as exc:
            return error(400, str(exc))
        except UserError as exc:
            return error(422, str(exc))
        result = predict_digits(model, digit[None], top=3)[0]
        return JSONResponse({**result, "input_png": _png_base64(digit)})

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port, or a one-line UserError (port taken, unknown host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(sock: socket.socket, checkpoint: str | None, on_ready: Callable[[], None] | None = None,
          device: str | torch.device | None = "cpu") -> None:
    """Serve the page and API on a socket from `bind` until interrupted."""
    import uvicorn

    app = create_app(checkpoint, device)  # a bad checkpoint fails here, before anything is announced
    if on_ready:
        on_ready()
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
