"""The web export: the model's WebAssembly build (scores bit for bit the integer reference's and the
host C build's, under Node.js), the JavaScript port of the server's preprocessing (the same 28x28 as
Python), the page opened from a file:// URL in headless Chromium, and the command line's errors.
Tests that need clang + wasm-ld, Node.js or Chromium skip, saying which, where they are missing."""

import base64
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import headless_chromium, mouse_stroke, run_cli
from PIL import Image, ImageDraw
from test_deploy import realistic

from tinymnist.data.preprocess import load_digit, to_mnist
from tinymnist.errors import UserError
from tinymnist.export.c import codegen, reference, toolchain
from tinymnist.export.c.c_export import quantize_model, write_files
from tinymnist.export.c.quantize import QuantConfig
from tinymnist.export.web import build, node, site, web_export
from tinymnist.models.bundled import pretrained_path
from tinymnist.models.zoo import create_model, model_kwargs, model_names
from tinymnist.training.checkpoint import load_pretrained, save_atomic

META = {"model": "test", "params": 0, "float_accuracy": 0.0, "int8_accuracy": 0.0}
INSTALL = "(.ci/run installs them with apt: clang lld nodejs chromium)"


def needs_clang():
    if build.missing_tools():
        pytest.skip(f"{' and '.join(build.missing_tools())} not found: the WebAssembly build cannot run {INSTALL}")


def needs_node():
    if not node.have_node():
        pytest.skip(f"Node.js (node) not found: the WebAssembly module cannot run outside a browser {INSTALL}")


def node_eval(script: str, *args: str) -> str:
    return subprocess.run(["node", "-e", script, *args], capture_output=True, text=True, check=True, timeout=120).stdout


# ---------------------------------------------------------------------------------------------
# The module


@pytest.fixture(scope="module")
def pretrained_int(mnist):
    return quantize_model(load_pretrained(), mnist.train_images, QuantConfig(calibration_images=256))


def test_the_module_imports_nothing_and_exports_the_abi(pretrained_int, tmp_path):
    needs_clang()
    needs_node()
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(build.compile_model(pretrained_int, META))
    listing = json.loads(node_eval("const m = new WebAssembly.Module(require('fs').readFileSync(process.argv[1]));"
                                   "console.log(JSON.stringify([WebAssembly.Module.imports(m),"
                                   " WebAssembly.Module.exports(m).map(e => e.name + ':' + e.kind).sort()]))", str(wasm)))
    assert listing == [[], ["memory:memory", "tinymnist_input:function", "tinymnist_output:function",
                            "tinymnist_run:function"]]


@pytest.mark.slow
@pytest.mark.parametrize("simd", [False, True], ids=["scalar", "simd128"])
def test_the_pretrained_module_scores_as_the_reference_and_the_host_c(pretrained_int, simd, mnist, tmp_path):
    needs_clang()
    needs_node()
    images = mnist.test_images[:500]
    run = node.run_wasm(build.compile_model(pretrained_int, META, simd=simd), images)
    expected = reference.scores(pretrained_int, images)
    np.testing.assert_array_equal(run.scores, expected)
    np.testing.assert_array_equal(run.digits, expected.argmax(1))
    header, source = codegen.render(pretrained_int, META)
    write_files(tmp_path, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
    host_scores, _ = toolchain.host_scores(toolchain.host_build(tmp_path, tmp_path / "host"), images)
    np.testing.assert_array_equal(run.scores, host_scores)


@pytest.mark.slow
@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_the_c_export_takes_runs_as_webassembly(name, mnist):
    """Freshly initialised weights (BatchNorm statistics from real images) on a small sample."""
    needs_clang()
    needs_node()
    try:
        int_model = quantize_model(realistic(name, {}, mnist.train_images), mnist.train_images[:512],
                                   QuantConfig(calibration_images=256))
    except UserError as exc:
        pytest.skip(f"the C export does not take {name}: {exc}")
    images = mnist.test_images[:64]
    for simd in (False, True):
        run = node.run_wasm(build.compile_model(int_model, META, simd=simd), images)
        np.testing.assert_array_equal(run.scores, reference.scores(int_model, images))


# ---------------------------------------------------------------------------------------------
# The preprocessing's JavaScript port


def drawings(count: int, seed: int = 0) -> list[np.ndarray]:
    """Grey 280x280 canvases (light ink on black) of random strokes: thin (which the preprocessing
    thickens) to thick, small (read again at full resolution) to large, some running off the edge;
    every fourth a filled disc with a tail (solid ink, which the server partly takes for background)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        image = Image.new("L", (280, 280), 0)
        if i % 4 == 3:
            r, (cx, cy) = int(rng.integers(10, 70)), rng.uniform(100, 180, 2)
            ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            ImageDraw.Draw(image).line([(cx - r, cy + r), (cx + r, cy + r + 20)], fill=255, width=20)
            out.append(np.asarray(image))
            continue
        width, scale = int(rng.choice([2, 4, 8, 20, 30])), float(rng.choice([0.2, 0.4, 0.7, 1.0]))
        cx, cy = rng.uniform(0.3, 0.7, 2) * 280
        points = [(float(cx + (x - 0.5) * 280 * scale), float(cy + (y - 0.5) * 280 * scale))
                  for x, y in rng.uniform(0, 1, (int(rng.integers(2, 6)), 2))]
        ImageDraw.Draw(image).line(points, fill=255, width=width, joint="curve")
        out.append(np.asarray(image))
    return out


def test_the_javascript_preprocessing_gives_the_python_28x28(tmp_path):
    needs_node()
    canvases = drawings(80)
    (tmp_path / "canvases.bin").write_bytes(np.stack(canvases).tobytes())
    script = tmp_path / "preprocess.js"
    script.write_text(site.shipped_script("preprocess.js"))  # as the site carries it
    out = node_eval(f"const pp = require({json.dumps(str(script))});"
                    "const raw = require('fs').readFileSync(process.argv[1]); const n = raw.length / 78400; const res = [];"
                    "for (let i = 0; i < n; i++) { const r = pp.toMnist(raw.subarray(i * 78400, (i + 1) * 78400), 280, 280);"
                    " res.push(r === null ? null : Array.from(r)); } console.log(JSON.stringify(res));",
                    str(tmp_path / "canvases.bin"))
    blank = 0
    for i, (canvas, js) in enumerate(zip(canvases, json.loads(out), strict=True)):
        try:
            python = to_mnist(Image.fromarray(canvas)).ravel().tolist()
        except UserError:  # blank: a stroke drawn wholly off the canvas
            python, blank = None, blank + 1
        assert js == python, f"drawing {i}: the JavaScript 28x28 differs from the Python one"
    assert blank < 5


# ---------------------------------------------------------------------------------------------
# The page in a real browser, opened from a file:// URL


@pytest.fixture(scope="module")
def browser():
    with headless_chromium(INSTALL) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def site_dir(pretrained_int, tmp_path_factory):
    needs_clang()
    out = tmp_path_factory.mktemp("site")
    write_files(out, web_export.build_site(pretrained_int, {**META, "model": "separable", "params": 4910}, simd=True))
    return out


def open_page(browser, site_dir, script: str | None = None):
    page = browser.new_page(viewport={"width": 900, "height": 700})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    if script:
        page.add_init_script(script)
    page.goto((site_dir / "index.html").as_uri())
    page.wait_for_function("window.tinymnist && window.tinymnist.build !== null", timeout=10_000)
    return page, requests, errors


def pointer_stroke(page, points, kind: str):
    """A stroke of synthesized PointerEvents (pointerType touch or pen), in canvas pixels."""
    page.evaluate("""([points, kind]) => {
        const canvas = document.getElementById("canvas"), r = canvas.getBoundingClientRect(), s = r.width / 280;
        const fire = (type, [x, y]) => canvas.dispatchEvent(new PointerEvent(type, {bubbles: true, pointerId: 7,
            pointerType: kind, isPrimary: true, clientX: r.left + x * s, clientY: r.top + y * s}));
        fire("pointerdown", points[0]);
        for (let i = 1; i < points.length; i++)
            for (let t = 1; t <= 8; t++) {
                const [ax, ay] = points[i - 1], [bx, by] = points[i];
                fire("pointermove", [ax + (bx - ax) * t / 8, ay + (by - ay) * t / 8]);
            }
        fire("pointerup", points[points.length - 1]);
    }""", [points, kind])


def page_answer(page) -> dict:
    page.wait_for_function("window.tinymnist.last !== null && !window.tinymnist.busy", timeout=10_000)
    return page.evaluate("window.tinymnist.last")


def canvas_png(page) -> bytes:
    url = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def check_answer(page, pretrained_int, digit: int) -> None:
    """The page's 28x28 is the server's for the same drawing, and its answer the model's for it."""
    last = page_answer(page)
    image = np.array(last["input"], dtype=np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(image, load_digit(canvas_png(page)))  # what `tinymnist serve` makes of the canvas
    expected = reference.scores(pretrained_int, image[None])[0]
    assert last["scores"] == expected.tolist() and last["digit"] == int(expected.argmax()) == digit
    assert page.locator("#answer").text_content().strip() == str(digit)


@pytest.mark.slow
def test_draw_digits_on_the_page_opened_from_a_file(browser, site_dir, pretrained_int):
    page, requests, errors = open_page(browser, site_dir)
    assert page.evaluate("window.tinymnist.build") == "simd128"  # this Chromium has WebAssembly SIMD
    mouse_stroke(page, [(70, 60), (210, 60), (150, 240)])  # a 7: the top bar, then the diagonal
    check_answer(page, pretrained_int, 7)
    page.click("#clear")
    assert page.locator("#answer").text_content().strip() == "–"
    pointer_stroke(page, [(140, 40), (140, 240)], "touch")  # a 1, with a finger
    check_answer(page, pretrained_int, 1)
    page.click("#clear")
    pointer_stroke(page, [(90, 60), (190, 60), (190, 140), (90, 140), (90, 60), (90, 140), (190, 140), (190, 240)], "pen")
    check_answer(page, pretrained_int, 9)  # a 9 drawn with a pen
    assert errors == [] and all(url.startswith("file://") for url in requests), requests
    page.close()


@pytest.mark.slow
def test_the_page_falls_back_to_the_scalar_build_without_simd(browser, site_dir, pretrained_int):
    no_simd = "const validate = WebAssembly.validate; WebAssembly.validate = () => false;"
    page, _, errors = open_page(browser, site_dir, no_simd)
    assert page.evaluate("window.tinymnist.build") == "scalar"
    mouse_stroke(page, [(70, 60), (210, 60), (150, 240)])
    check_answer(page, pretrained_int, 7)
    assert errors == []
    page.close()


@pytest.mark.slow
def test_the_page_works_on_a_phone(browser, site_dir, pretrained_int):
    """A phone's viewport and real touch input (the browser's own touch events, not synthesized
    PointerEvents): the page fits the screen's width, reads a 1, and the finger does not scroll it."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    page.goto((site_dir / "index.html").as_uri())
    page.wait_for_function("window.tinymnist && window.tinymnist.build !== null", timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / 280
    cdp = context.new_cdp_session(page)

    def touch(kind: str, y: float | None) -> None:
        points = [] if y is None else [{"x": box["x"] + 140 * scale, "y": box["y"] + y * scale}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 40)
    for step in range(1, 11):
        touch("touchMove", 40 + 20 * step)
    touch("touchEnd", None)
    check_answer(page, pretrained_int, 1)
    assert page.evaluate("window.scrollY") == 0
    context.close()


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.mark.slow
def test_export_web_cli_writes_a_site_under_50_kb(tmp_path, data_dir):
    needs_clang()
    out = tmp_path / "site"
    result = run_cli("export", pretrained_path(), "--format", "web", "--out", out, "--data-dir", data_dir,
                     "--calibration", "256")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([site.PAGE, site.MODEL_SCRIPT, site.SCALAR_WASM, *site.SCRIPTS])
    assert sum(p.stat().st_size for p in out.iterdir()) <= 50_000
    page = (out / "index.html").read_text()
    assert "http:" not in page and "https:" not in page and "separable, 4,910 parameters" in page
    if node.have_node():
        assert "equal the integer reference's on 256 test images" in result.stdout


def _silu_checkpoint(path: Path) -> Path:
    model = create_model("separable", act="silu")
    save_atomic({"model_name": "separable", "model_args": model_kwargs("separable", {"act": "silu"}),
                 "model": model.state_dict()}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no clang", "unsupported layer", "out is a file", "corrupt checkpoint"])
def test_export_web_bad_input_is_one_line_and_leaves_nothing(case, tmp_path, data_dir):
    ckpt, out, env = pretrained_path(), tmp_path / "out" / "site", None
    if case == "no clang":
        empty = tmp_path / "bin"
        empty.mkdir()
        env = {**os.environ, "PATH": str(empty)}  # the CLI runs as sys.executable, found without PATH
    elif case == "unsupported layer":
        needs_clang()
        ckpt = _silu_checkpoint(tmp_path / "silu.pt")
    elif case == "out is a file":
        needs_clang()
        out = tmp_path / "out"
        out.write_text("keep me")
    else:
        needs_clang()
        ckpt = tmp_path / "broken.pt"
        ckpt.write_bytes(b"\x00" * 100)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = run_cli("export", ckpt, "--format", "web", "--out", out, "--data-dir", data_dir, "--calibration", "64",
                     env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no folder, no file
    expected = {"no clang": "clang", "unsupported layer": "SiLU", "out is a file": "is a file", "corrupt checkpoint": "corrupt"}
    assert expected[case] in result.stderr


def test_a_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    def fail(out, files):
        (out / "index.html").write_text("half")
        raise UserError("cannot write: No space left on device")

    monkeypatch.setattr(web_export, "write_files", fail)
    with pytest.raises(UserError, match="No space left"):
        web_export._write_site(tmp_path / "a" / "b", {"index.html": "x"})
    assert list(tmp_path.iterdir()) == []


def test_the_site_holds_the_page_its_scripts_and_the_model(pretrained_int):
    files = site.assemble(pretrained_int, META, b"\0asm-scalar", b"\0asm-simd")
    assert files[site.SCALAR_WASM] == b"\0asm-scalar" and files[site.SIMD_WASM] == b"\0asm-simd"
    model_js = files[site.MODEL_SCRIPT]
    assert base64.b64encode(b"\0asm-scalar").decode() in model_js and base64.b64encode(b"\0asm-simd").decode() in model_js
    page = files[site.PAGE]
    for script in (site.MODEL_SCRIPT, *site.SCRIPTS):
        assert f'<script src="{script}"></script>' in page
    assert 'name="viewport"' in page and "touch-action: none" in page
    assert site.size(files) == sum(len(v.encode() if isinstance(v, str) else v) for v in files.values())


def test_a_png_round_trip_keeps_the_canvas():
    """load_digit reads the page's canvas PNG; its greys are the canvas's (the check above relies on it)."""
    canvas = drawings(1, seed=3)[0]
    buffer = io.BytesIO()
    Image.fromarray(canvas).convert("RGBA").save(buffer, format="PNG")
    np.testing.assert_array_equal(load_digit(buffer.getvalue()), to_mnist(Image.fromarray(canvas)))


def test_a_compiler_error_is_reported_in_one_line():
    stderr = "In file included from m.c:3:\nm.c:9:5: error: unknown type name 'x'\n    x y;\n    ^\n1 error generated.\n"
    assert build.first_error(stderr) == "m.c:9:5: error: unknown type name 'x'"
    assert build.first_error("") == "no message"
