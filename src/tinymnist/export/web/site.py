"""The static site of a web export: the page (templates/index.html.j2), its scripts (static/: the
drawing and the answer in page.js, the port of the server's preprocessing in preprocess.js), the
model as .wasm files and as base64 in model.js. One folder; nothing is fetched from elsewhere, and
nothing is fetched at all: a page opened from a file:// URL may load scripts, but not fetch files."""

from __future__ import annotations

import base64
from functools import cache
from importlib import resources

import jinja2

from tinymnist.export.c.quantize import IntModel

PAGE, MODEL_SCRIPT = "index.html", "model.js"
SCRIPTS = ("preprocess.js", "page.js")  # static/, copied as they are
SCALAR_WASM, SIMD_WASM = "tinymnist.wasm", "tinymnist-simd.wasm"


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("tinymnist.export.web", "templates"),
                              autoescape=jinja2.select_autoescape(["html.j2"]), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def assemble(model: IntModel, meta: dict, scalar: bytes, simd: bytes | None = None) -> dict[str, str | bytes]:
    """The site's files by name. `meta`: model, params, int8_accuracy, source, version. `simd`: the
    simd128 build, which the page prefers where the browser has WebAssembly SIMD; None leaves it out."""
    meta = {"version": "", "source": "a checkpoint", **meta}
    env = _templates()
    files: dict[str, str | bytes] = {
        PAGE: env.get_template(PAGE + ".j2").render(meta=meta),
        MODEL_SCRIPT: env.get_template(MODEL_SCRIPT + ".j2").render(
            meta=meta, classes=model.head.classes, score_unit=model.head.score_unit,
            scalar=base64.b64encode(scalar).decode(), simd=base64.b64encode(simd).decode() if simd else None),
        SCALAR_WASM: scalar,
    }
    files.update({name: shipped_script(name) for name in SCRIPTS})
    if simd:
        files[SIMD_WASM] = simd
    return files


def shipped_script(name: str) -> str:
    """A script of static/ as the site carries it: without its comment lines and indentation, which
    are a quarter of it and would put the site over its 50 KB budget, under a line that names the
    commented source. (Only whole-line comments go: the scripts hold no multi-line strings.)"""
    text = resources.files("tinymnist.export.web").joinpath("static", name).read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("//")]
    return "\n".join([f"// {name} of tinymnist's web export; with comments: tinymnist/export/web/static/{name}", *lines]) + "\n"


def size(files: dict[str, str | bytes]) -> int:
    """Bytes of the whole site."""
    return sum(len(v.encode() if isinstance(v, str) else v) for v in files.values())
