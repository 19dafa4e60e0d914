"""`tinymnist export CKPT --format web --out DIR`: checkpoint -> int8 model (as `--format c`) -> its C
compiled to WebAssembly -> a static site in DIR that draws digits and reads them in the browser.
Every file appears together or not at all, and DIR is created only to receive them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tinymnist.errors import UserError
from tinymnist.export.c import reference
from tinymnist.export.c.c_export import convert, write_files
from tinymnist.export.c.quantize import IntModel, QuantConfig
from tinymnist.export.web import build, node, site

# The page would ship the simd128 build only where it pays. Measured (benchmarks/web.py, bundled model,
# Chromium, 2-core AMD EPYC, three runs): clang's auto-vectorized build gained 0-10% a digit (0.603 vs
# 0.658 ms at best, at -O2), for a second module of 12-19 KB carried twice (file and base64), which
# the 50 KB budget has no room for. So the site holds the scalar build alone; the page still picks
# SIMD when a site has it (site.assemble).
SHIP_SIMD = False
CHECK_IMAGES = 256  # test images the built module must score exactly as the reference, when Node.js is here


def require_toolchain() -> None:
    missing = build.missing_tools()
    if missing:
        raise UserError(f"the web export compiles the model with clang's wasm32 target and wasm-ld, and {' and '.join(missing)} "
                        "cannot be found; install them (Debian/Ubuntu: apt-get install clang lld)")


def build_site(int_model: IntModel, meta: dict[str, Any], simd: bool = SHIP_SIMD) -> dict[str, str | bytes]:
    """The site's files for an integer model (the .wasm compiled here)."""
    try:
        scalar = build.compile_model(int_model, meta)
        fast = build.compile_model(int_model, meta, simd=True) if simd else None
    except build.BuildError as exc:
        raise UserError(f"the generated C does not build for WebAssembly: {exc}") from None
    return site.assemble(int_model, meta, scalar, fast)


def check_module(wasm: bytes, int_model: IntModel, images: np.ndarray) -> None:
    """The module scores `images` exactly as the integer reference (its whole reason to exist)."""
    try:
        run = node.run_wasm(wasm, images)
    except node.NodeError as exc:
        raise UserError(f"could not run the WebAssembly build under Node.js to check it: {build.first_error(str(exc))}") from None
    expected = reference.scores(int_model, images)
    if not np.array_equal(run.scores, expected):
        wrong = int((run.scores != expected).any(1).sum())
        raise UserError(f"the WebAssembly build scores {wrong} of {len(images)} test images differently from the "
                        "integer reference; please report this with the checkpoint")


def export_web(checkpoint: str | Path, out: Path, data_dir: str | Path | None = None,
               config: QuantConfig | None = None) -> dict[str, Any]:
    """Write the site into `out` for the checkpoint's model; returns what was measured."""
    require_toolchain()  # before minutes of work that could not be used
    if out.exists() and not out.is_dir():
        raise UserError(f"cannot write the site into {out}: it is a file; --out takes a directory")
    int_model, meta, data = convert(checkpoint, data_dir, config)  # the same int8 model as `--format c`
    files = build_site(int_model, meta)
    checked = 0
    wasm = files[site.SCALAR_WASM]
    if node.have_node() and isinstance(wasm, bytes):
        check_module(wasm, int_model, data.test_images[:CHECK_IMAGES])
        checked = CHECK_IMAGES
    _write_site(out, files)
    return {**meta, "out": str(out), "files": sorted(files), "bytes": site.size(files), "checked_images": checked,
            "wasm_bytes": len(wasm), "simd": site.SIMD_WASM in files}


def _write_site(out: Path, files: dict[str, str | bytes]) -> None:
    """All files into `out`, creating it; a failure leaves no folder that was not there before."""
    created = out  # the outermost folder this call creates, removed again on failure
    while not created.parent.exists():
        created = created.parent
    fresh = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror or exc}; choose another --out directory") from None
    try:
        write_files(out, files)
    except UserError:
        if fresh:
            shutil.rmtree(created, ignore_errors=True)
        raise
