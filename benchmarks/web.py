"""Web export figures for the bundled model (or --checkpoint): the WebAssembly builds against the
Python integer reference and their speed, and the size of the site `tinymnist export --format web`
writes.

For each build - scalar and wasm simd128 (clang's auto-vectorizer), at -Os (what the export ships),
-O2 and -O3: the module's size; mismatches against the integer reference over all 10,000 test images
under Node.js (must be 0) and the int8 accuracy it gives; milliseconds per digit under Node.js and in
headless Chromium (the site opened from a file:// URL, `window.tinymnist.predict` called on test
images in the page; median over many passes of a few hundred digits, each pass timed as a whole).
Then the site's size, file by file, and the page's preprocessing time for a drawn digit.

    python benchmarks/web.py [--data-dir DIR] [--checkpoint CKPT] [--passes 15] [--images 300]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.data.mnist import load_mnist  # noqa: E402
from tinymnist.export.c import reference  # noqa: E402
from tinymnist.export.c.c_export import accuracies, quantize_model, write_files  # noqa: E402
from tinymnist.export.web import build, node, site, web_export  # noqa: E402
from tinymnist.models.bundled import pretrained_path  # noqa: E402
from tinymnist.models.zoo import count_parameters  # noqa: E402
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402

GOALS = {"site_bytes": 50_000, "ms_per_digit": 1.0}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# In the page: time `passes` runs over the images, each run as a whole; the median per digit.
TIME_PAGE = """async ([images64, passes]) => {
  await window.tinymnist.ready;
  const raw = Uint8Array.from(atob(images64), (c) => c.charCodeAt(0)), n = raw.length / 784, times = [];
  for (let i = 0; i < n; i++) window.tinymnist.predict(raw.subarray(i * 784, (i + 1) * 784));  // warm up
  for (let p = 0; p < passes; p++) {
    const start = performance.now();
    for (let i = 0; i < n; i++) window.tinymnist.predict(raw.subarray(i * 784, (i + 1) * 784));
    times.push((performance.now() - start) / n);
  }
  times.sort((a, b) => a - b);
  return {build: window.tinymnist.build, ms: times[Math.floor(times.length / 2)]};
}"""
TIME_PREPROCESS = """(passes) => {
  const c = document.getElementById("canvas"), ctx = c.getContext("2d"), times = [];
  for (let p = 0; p < passes; p++) {
    const start = performance.now();
    const gray = tinymnistPreprocess.rgbaToGray(ctx.getImageData(0, 0, c.width, c.height).data);
    tinymnistPreprocess.toMnist(gray, c.width, c.height);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}"""


def chromium_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])


def page_ms(browser, folder: Path, images: np.ndarray, passes: int) -> tuple[str, float]:
    page = browser.new_page()
    page.goto((folder / "index.html").as_uri())
    result = page.evaluate(TIME_PAGE, [base64.b64encode(images.tobytes()).decode(), passes])
    page.close()
    return result["build"], float(result["ms"])


def preprocess_ms(browser, folder: Path, passes: int) -> float:
    page = browser.new_page()
    page.goto((folder / "index.html").as_uri())
    page.wait_for_function("window.tinymnist.build !== null")
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / 280
    points = [(70, 60), (210, 60), (150, 240)]  # a 7
    page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
    page.mouse.up()
    ms = float(page.evaluate(TIME_PREPROCESS, passes))
    page.close()
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--checkpoint", help="default: the bundled pretrained model")
    parser.add_argument("--passes", type=int, default=15, help="timed passes per build (default 15)")
    parser.add_argument("--images", type=int, default=300, help="test images per timed pass (default 300)")
    parser.add_argument("--json", default="benchmarks/results/web.json")
    args = parser.parse_args()
    web_export.require_toolchain()
    if not node.have_node():
        sys.exit("web.py: error: node not found; install Node.js (Debian: apt-get install nodejs)")
    data = load_mnist(args.data_dir)
    checkpoint = Path(args.checkpoint) if args.checkpoint else pretrained_path()
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).float()
    int_model = quantize_model(model, data.train_images)
    expected = reference.scores(int_model, data.test_images)  # all 10,000, computed once
    meta = {"model": ckpt["model_name"], "params": count_parameters(model), "source": checkpoint.name,
            **accuracies(model, expected.argmax(1), data)}
    timed = data.test_images[: args.images]
    playwright_api = None
    try:
        from playwright.sync_api import sync_playwright

        playwright_api = sync_playwright if Path(CHROMIUM).exists() else None
    except ImportError:
        pass
    if playwright_api is None:
        print("web.py: Chromium or playwright not found; the in-browser columns stay empty", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinymnist-web-") as tmp:
        work = Path(tmp)
        builds = {}
        for opt in ("-Os", "-O2", "-O3"):
            for simd in (False, True):
                wasm = build.compile_model(int_model, meta, simd=simd, opt=opt)
                nrun = node.run_wasm(wasm, data.test_images, repeats=3)
                mismatches = int((nrun.scores != expected).any(1).sum() + (nrun.digits != expected.argmax(1)).sum())
                folder = work / f"{'simd' if simd else 'scalar'}{opt}"
                folder.mkdir()
                write_files(folder, site.assemble(int_model, meta, wasm if not simd else builds[opt], wasm if simd else None))
                builds.setdefault(opt, wasm)
                rows.append({"build": "simd128" if simd else "scalar", "opt": opt, "wasm B": len(wasm),
                             "wasm != ref (10k)": mismatches,
                             "int8 %": round(100.0 * float((nrun.digits == data.test_labels).mean()), 2),
                             "node ms/digit": round(nrun.ms_per_image, 3), "_folder": folder})
        shipped = web_export.build_site(int_model, meta)
        (work / "shipped").mkdir()
        write_files(work / "shipped", shipped)
        prep_ms = None
        if playwright_api is not None:
            with playwright_api() as p:
                browser = chromium_browser(p)
                # Alternate the builds over three rounds, so that the machine's load drifts over all of them alike.
                samples: dict[int, list[float]] = {i: [] for i in range(len(rows))}
                for _ in range(3):
                    for i, row in enumerate(rows):
                        used, ms = page_ms(browser, row["_folder"], timed, args.passes)
                        assert used == row["build"], f"the page ran {used}, not {row['build']}"
                        samples[i].append(ms)
                for i, row in enumerate(rows):
                    row["chromium ms/digit"] = round(statistics.median(samples[i]), 3)
                prep_ms = round(preprocess_ms(browser, work / "shipped", 30), 2)
                version = browser.version
                browser.close()
        else:
            version = None
    for row in rows:
        row.pop("_folder")
    sizes = {name: len(v.encode() if isinstance(v, str) else v) for name, v in shipped.items()}
    print_table(rows, ["build", "opt", "wasm B", "wasm != ref (10k)", "int8 %", "node ms/digit", "chromium ms/digit"])
    print(f"site (scalar -Os{', SIMD' if site.SIMD_WASM in shipped else ''}): {site.size(shipped):,} bytes: "
          + ", ".join(f"{k} {v:,}" for k, v in sorted(sizes.items())))
    if prep_ms is not None:
        print(f"the page's preprocessing of a drawn 7 (280x280 canvas -> 28x28): {prep_ms} ms (median of 30)")
    shipped_row = rows[0]
    chromium_ms = shipped_row.get("chromium ms/digit")
    goals = {
        "wasm == reference on all 10,000 (every build)": all(r["wasm != ref (10k)"] == 0 for r in rows),
        f"site <= {GOALS['site_bytes']:,} bytes": site.size(shipped) <= GOALS["site_bytes"],
        "<= 1 ms per digit in Chromium (shipped build)": chromium_ms is not None and chromium_ms <= GOALS["ms_per_digit"],
    }
    for goal, met in goals.items():
        print(f"{'met    ' if met else 'NOT met'}  {goal}")
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    write_json(args.json, {"machine": {**machine(), "node": node_version, "chromium": version,
                                       "clang": subprocess.run([build.CLANG, "--version"], capture_output=True,
                                                               text=True).stdout.splitlines()[0]},
                           "model": meta, "rows": rows, "site_bytes": site.size(shipped), "site_files": sizes,
                           "preprocess_ms": prep_ms, "passes": args.passes, "images_per_pass": args.images,
                           "goals": goals})


if __name__ == "__main__":
    run(main)
