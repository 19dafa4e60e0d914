"""Predicted instructions per inference of the int8 C export on a Cortex-M4 and a Cortex-M0 (-O2 and
-Os each), from the model's layer shapes alone: no compiler, no emulator, no trained weights.

Each runtime call of the generated source (codegen.plan's layers) runs kernels of csrc/, chosen as
tm_layer.c chooses them (a layer with a conv is a conv layer first, a pool after it fused; then a
max-pool layer of its own; then the head, as codegen.layer_sources orders them): the image load
(plain, or TM_INPUT_POOL's max-pool as it is loaded, or none: a stride-2 first conv, the stem,
reads the caller's image row by row); the ring rows in the layout the 3x3 kernel reads
(interleaved for the dense 3x3 and a lone 1x1 conv, planar for the SIMD 3x3, biased planar for the
portable one-channel 3x3); the planar SIMD 3x3 conv (depthwise, or a first conv of the 1-channel
image; pixel pairs) or the portable one-channel 3x3 conv (tm_conv3_sums, a Thumb-1 routine on
Cortex-M0: per output), the dense 3x3 conv (TM_DOT2: four int8 lanes a step with SIMD), the SIMD 1x1
conv (tm_point_quads: four output channels a call, its weight split per four input channels, then
per pixel and per four input channels) or the portable 1x1 conv (tm_point_sums, TM_DOT2), the
portable kernels' requantization per output (tm_output_row: the fast path where the shift is 0 and
the clamp -128..127, else the general one; a Thumb-1 routine on Cortex-M0), a residual block's shortcut
in the layer of its body (tm_shortcut_row: per row, per run of bytes - the row at once from interleaved
ring rows, a channel at a time from planar ones - and per output, int8 or biased), the max-pool (tm_pool_rows:
per pooled row and pixel, four channels a word with SIMD, the rest by tm_pool_bytes), fused into a
conv layer's rows or a layer of its own, and the head (global average pool and 1x1 conv, or a linear layer
on the whole map: TM_DOT2 for two classes at a time); then the heaviest trips again, split by which
kernels the model compiles (TM_USES: at -Os GCC's inlining and register use inside tm_run_layer
depend on them, e.g. 20 or 24 instructions per dense dot-product word). `features` counts these loop trips; the
predicted count is their dot product with per-build coefficients, in instructions per trip.

The coefficients are fitted, not written: tools/calibrate_mcu_cost.py exports a set of untrained
PlanNet models (instruction counts of these kernels do not depend on weight values), runs each build
under QEMU (`-icount`, as benchmarks/mcu.py counts) and fits them by least squares
(cost_coefficients.json, with the date, the hash of the kernel sources it measured and the error on
plans held out of the fit). When csrc/ or the templates change, the hash differs and `stale` says
so: rerun the tool. Held-out error of the latest fit (2026-12-07, with the stem and the linear head in
8 and 4 bits; 20 plans held out, 5 of them residual): worst 0.95% / mean 0.24% on Cortex-M4 -O2, 7.7% /
1.2% on Cortex-M4 -Os (the worst a dense 24-channel conv after a 4-filter stem with a linear head: at
-Os GCC inlines such mixes differently), 3.0% / 0.80% on Cortex-M0 -Os, 0.35% / 0.08% on Cortex-M0 -O2.

The kernel a layer runs depends on its requantization being "simple" (codegen.simple: every shift 0,
no ReLU before a BatchNorm). A quantized model says so itself; a plan not yet trained is assumed simple
wherever its structure allows (no conv -> ReLU -> BatchNorm), which holds for trained conv-BN-ReLU
networks (their multipliers lie far above 2^-17, where a shift would be needed).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tinymnist.export.c import codegen
from tinymnist.export.c.quantize import IntConv, IntHead, IntModel, IntPool

COEFFICIENTS = "cost_coefficients.json"
# The builds the model predicts: (cpu, optimization), named "cortex-m4 -O2" etc.
BUILDS = (("cortex-m4", "-O2"), ("cortex-m4", "-Os"), ("cortex-m0", "-Os"), ("cortex-m0", "-O2"))
SIMD_CPUS = ("cortex-m4",)  # the DSP extension: the SIMD kernels (toolchain.TARGETS[cpu].simd)
# The loop trips `features` counts, in a fixed order (the coefficients' order in the JSON file).
FEATURES = (
    "image_plain", "image_pooled",  # one inference with the image loaded as is, or max-pooled as loaded (TM_INPUT_POOL)
    "conv_layers", "conv_rows",  # tm_run_layer: per layer, per output row computed
    "row_fetches", "row_pad_bytes", "row_edge_bytes", "row_bytes",  # interleaved ring rows (tm_load_row)
    "biased_fetches", "biased_pad_bytes", "biased_channel_rows", "biased_bytes",  # biased planar rows (portable 3x3)
    "plane_fetches", "plane_pad_words", "plane_channels", "plane_block_calls", "plane_blocks", "plane_tail",
    "plane_bytes",  # planar ring rows (SIMD 3x3)
    "planar_rows", "planar_channel_rows", "planar_pairs",  # SIMD 3x3, one channel: per row, channel-row, pixel pair
    "single_channel_rows", "single_pixels",  # portable one-channel 3x3 (tm_conv3_sums): per channel-row, per output
    "dense_channel_rows", "dense_pairs", "dense_words", "dense_tail",  # dense 3x3 (TM_DOT2)
    "quad_rows", "quad_calls", "quad_split", "quad_pixels", "quad_inner",  # SIMD 1x1 (tm_point_quads)
    "point_channel_rows", "point_pairs", "point_words", "point_tail",  # portable 1x1 (tm_point_sums, TM_DOT2)
    "out_fast", "out_general",  # tm_output_row, per output: shift 0 and clamp -128..127, or not
    "pool_calls", "pool_rows", "pool_pixels", "pool_words", "pool_byte_calls", "pool_bytes",  # 2x2 max-pool
    # a residual block's shortcut (tm_shortcut_row): per row, per run of bytes, per output from int8 ring rows
    # (interleaved or planar) or from biased ones (q + 128: another loop)
    "shortcut_rows", "shortcut_runs", "shortcut_signed", "shortcut_biased",
    "head_channels", "head_pixels", "head_sums", "head_classes", "head_macs",  # head: channel sums, 1x1 conv
    # the stem (tm_run_stem, a stride-2 first conv of the caller's image): per output row, per image byte copied
    # into its three rows, per channel-row, per output (its requantization is counted in out_fast / out_general)
    "stem_rows", "stem_row_bytes", "stem_channel_rows", "stem_outputs",
    "fc_pairs", "fc_words", "fc_tail",  # a linear head (spatial): per two classes, TM_DOT2 over the whole map
    # a linear head with 4-bit weights (tm_head_pair4): per two classes, per block of 8 (SIMD), per weight
    # otherwise (the portable loop, and the SIMD path's last n % 8)
    "fc4_pairs", "fc4_blocks", "fc4_tail",
)
# The kernels a model compiles (TM_USES) change GCC's inlining and register use inside tm_run_layer,
# at -Os most: the heaviest loops' trips again, split by whether each kernel is compiled or not.
KERNEL_SET = ("dense", "point", "quads", "maxpool", "pooled")
INTERACTING = ("dense_words", "point_words", "out_fast")
FEATURES += tuple(f"{trip}_{side}_{kernel}" for trip in INTERACTING for kernel in KERNEL_SET
                  for side in ("with", "without"))


def build_name(cpu: str, opt: str) -> str:
    return f"{cpu} {opt}"


def _ceil_half(n: int) -> int:
    return (n + 1) // 2


def _dot(counts: dict[str, float], prefix: str, trips: int, n: int, simd: bool) -> None:
    """TM_DOT2 over n int8 lanes, `trips` times: words of four lanes (SIMD) and single lanes."""
    counts[f"{prefix}_words"] += trips * (n // 4 if simd else 0)
    counts[f"{prefix}_tail"] += trips * (n % 4 if simd else n)


def _fetch(counts: dict[str, float], conv: IntConv, kernel: int, pad: int, rows: int, layout: str) -> None:
    """tm_fetch_row: the input rows a layer copies into the ring (rows + kernel - 1 of them), in its
    layout: interleaved (tm_load_row), biased planar (tm_load_biased_row) or planar (tm_load_plane_row)."""
    fetched = rows + kernel - 1
    real = sum(0 <= r < conv.height for r in range(-pad, rows - pad + kernel - 1))
    cin, w = conv.in_channels, conv.width
    padded = w + 2 * pad
    if layout == "rows":
        counts["row_fetches"] += fetched
        counts["row_pad_bytes"] += (fetched - real) * padded * cin
        counts["row_edge_bytes"] += real * pad * cin
        counts["row_bytes"] += real * w * cin
    elif layout == "biased":
        counts["biased_fetches"] += fetched
        counts["biased_pad_bytes"] += (fetched - real) * padded * cin
        counts["biased_channel_rows"] += real * cin
        counts["biased_bytes"] += real * w * cin
    else:
        counts["plane_fetches"] += fetched
        counts["plane_pad_words"] += (fetched - real) * cin * codegen.plane_bytes(padded) // 4
        counts["plane_channels"] += real * cin
        if cin % 4 == 0:
            counts["plane_block_calls"] += real * (w >= 4)
            counts["plane_blocks"] += real * (w // 4) * (cin // 4)
            counts["plane_tail"] += real * (w % 4) * (cin // 4)
        else:
            counts["plane_bytes"] += real * w * cin


def _fast_channels(op: IntConv, simple: Callable[[IntConv], bool] | None) -> int:
    """Output channels whose requantization takes tm_output_row's fast path (shift 0, clamp -128..127
    after tm_channel_of's ReLU folding): from the quantized values, or all channels of a conv that
    `simple` calls simple (a plan not yet trained)."""
    if simple is not None:
        return op.out_channels if simple(op) else 0
    fast = 0
    for c in range(op.out_channels):
        offset, multiplier = int(op.offset[c]), int(op.multiplier[c])
        low, high = op.low, 127
        if op.relu_before and multiplier > 0:
            low = max(offset, low)
        elif op.relu_before:
            high = (min(offset, 127) if offset > low else low)
        fast += int(op.shift[c]) == 0 and low == -128 and high == 127
    return fast


def _outputs(counts: dict[str, float], op: IntConv, rows: int, width: int,
             simple: Callable[[IntConv], bool] | None) -> None:
    """tm_output_row over `rows` rows of `width` outputs of every output channel of `op`."""
    fast = _fast_channels(op, simple)
    counts["out_fast"] += rows * width * fast
    counts["out_general"] += rows * width * (op.out_channels - fast)


def _conv_layer(counts: dict[str, float], layer: codegen.Layer, simd: bool,
                simple: Callable[[IntConv], bool] | None, kernels: set[str]) -> None:
    """One tm_run_layer call, its kernels chosen as tm_layer.c chooses them (a lone 1x1 conv is the
    layer's 1x1 part, on interleaved rows; a pool in the layer is fused: two rows, then one pooled)."""
    is_simple = simple or codegen.simple
    conv = layer.first
    has_conv = conv.kernel == 3
    point = layer.point if has_conv else conv
    kernel, pad = (3, conv.padding) if has_conv else (1, 0)
    out_height, width = conv.out_height, conv.out_width
    rows = out_height // 2 * 2 if layer.pooled else out_height
    mid = conv.out_channels if has_conv else conv.in_channels
    single = has_conv and (conv.depthwise or conv.in_channels == 1)
    plane = simd and codegen.planar(conv, layer.point, is_simple)  # tm_layer.conv_planar
    lanes = simd and codegen.lanes(conv, layer.point, is_simple)  # tm_run_layer's lanes
    layout = "plane" if plane else "biased" if single else "rows"
    counts["conv_layers"] += 1
    counts["conv_rows"] += rows
    _fetch(counts, conv, kernel, pad, rows, layout)
    if has_conv:
        channel_rows, pairs = rows * mid, rows * mid * _ceil_half(width)
        if plane:
            counts["planar_rows"] += rows
            counts["planar_channel_rows"] += channel_rows
            counts["planar_pairs"] += pairs
        elif single:
            kernels.add("single")
            counts["single_channel_rows"] += channel_rows
            counts["single_pixels"] += channel_rows * width
            _outputs(counts, conv, rows, width, simple)
        else:
            kernels.add("dense")
            counts["dense_channel_rows"] += channel_rows
            counts["dense_pairs"] += pairs
            _dot(counts, "dense", 3 * pairs, 3 * conv.in_channels, simd)
            _outputs(counts, conv, rows, width, simple)
    if point is not None:
        cout = point.out_channels
        if lanes:
            kernels.add("quads")
            calls = rows * -(-cout // 4)  # four output channels a call; the last four overlap when cout % 4
            counts["quad_rows"] += rows
            counts["quad_calls"] += calls
            counts["quad_split"] += calls * (mid // 4)
            counts["quad_pixels"] += calls * width
            counts["quad_inner"] += calls * width * (mid // 4)
        else:
            kernels.add("point")
            pairs = rows * cout * _ceil_half(width)
            counts["point_channel_rows"] += rows * cout
            counts["point_pairs"] += pairs
            _dot(counts, "point", pairs, mid, simd)
            _outputs(counts, point, rows, width, simple)
    if layer.shortcut is not None:
        channels = layer.shortcut.channels
        counts["shortcut_rows"] += rows
        counts["shortcut_runs"] += rows * (1 if layout == "rows" else channels)
        counts["shortcut_biased" if layout == "biased" else "shortcut_signed"] += rows * width * channels
    if layer.pooled:
        kernels.add("pooled")
        _pool_rows(counts, rows // 2, width, layer.last.out_channels, simd)


def _stem(counts: dict[str, float], conv: IntConv, simple: Callable[[IntConv], bool] | None) -> None:
    """tm_run_stem: per output row three padded image rows, then per channel a row of sums and its outputs."""
    rows, width = conv.out_height, conv.out_width
    counts["stem_rows"] += rows
    counts["stem_row_bytes"] += rows * 3 * conv.width
    counts["stem_channel_rows"] += rows * conv.out_channels
    counts["stem_outputs"] += rows * width * conv.out_channels
    _outputs(counts, conv, rows, width, simple)


def _pool_rows(counts: dict[str, float], rows: int, width: int, channels: int, simd: bool) -> None:
    """tm_pool_rows `rows` times on rows of `width` pixels: width // 2 outputs, four channels a word
    with SIMD, the rest by tm_pool_bytes."""
    pixels = rows * (width // 2)
    words = channels // 4 if simd else 0
    counts["pool_rows"] += rows
    counts["pool_pixels"] += pixels
    counts["pool_words"] += pixels * words
    counts["pool_byte_calls"] += pixels * (channels > 4 * words)
    counts["pool_bytes"] += pixels * (channels - 4 * words)


def _pool(counts: dict[str, float], pool: IntPool, simd: bool) -> None:
    """tm_maxpool: a max-pool layer of its own."""
    counts["pool_calls"] += 1
    _pool_rows(counts, pool.height // 2, pool.width, pool.channels, simd)


def _head(counts: dict[str, float], head: IntHead, simd: bool) -> None:
    if head.spatial and head.bits == 4:
        pairs, n = -(-head.classes // 2), head.height * head.width * head.in_channels
        counts["fc4_pairs"] += pairs
        counts["fc4_blocks"] += pairs * (n // 8 if simd else 0)
        counts["fc4_tail"] += pairs * (n % 8 if simd else n)
        return
    if head.spatial:
        pairs = -(-head.classes // 2)
        counts["fc_pairs"] += pairs
        _dot(counts, "fc", pairs, head.height * head.width * head.in_channels, simd)
        return
    counts["head_channels"] += head.in_channels
    counts["head_pixels"] += head.height * head.width
    counts["head_sums"] += head.height * head.width * head.in_channels
    counts["head_classes"] += head.classes
    counts["head_macs"] += head.classes * head.in_channels


def structural_simple(op: IntConv) -> bool:
    """Whether a conv's requantization can be simple, from its structure alone (no ReLU before a
    BatchNorm): what a trained conv-BN-ReLU network's layers are (see the module docstring)."""
    return not op.relu_before


def features(model: IntModel, cpu: str, simple: Callable[[IntConv], bool] | None = None) -> dict[str, float]:
    """The loop trips of one inference of `model` on `cpu` (FEATURES). `simple` decides which convs have
    the SIMD kernels' requantization: codegen.simple (the quantized values) unless given."""
    simd = cpu in SIMD_CPUS
    plan = codegen.plan(model)
    counts = dict.fromkeys(FEATURES, 0.0)
    if not plan.stem:
        counts["image_pooled" if plan.input_pool else "image_plain"] = 1.0
    kernels: set[str] = set()  # the kernels compiled (KERNEL_SET)
    for layer in plan.layers:  # as codegen.layer_sources: a conv first (its pool fused), then a pool, the head
        if layer.stem:
            _stem(counts, layer.first, simple)
        elif layer.conv is not None:
            _conv_layer(counts, layer, simd, simple, kernels)
        elif layer.pool is not None:
            kernels.add("maxpool")
            _pool(counts, layer.pool, simd)
        else:
            assert layer.head is not None
            _head(counts, layer.head, simd)
    for trip in INTERACTING:
        for kernel in KERNEL_SET:
            counts[f"{trip}_{'with' if kernel in kernels else 'without'}_{kernel}"] = counts[trip]
    return counts


# ---------------------------------------------------------------------------------------------
# Coefficients


def kernel_sources() -> list[tuple[str, bytes]]:
    """The files whose text decides the instruction counts: the runtime (csrc/) and the templates."""
    root = resources.files("tinymnist.export.c")
    files = []
    for folder in ("csrc", "templates"):
        for entry in sorted(root.joinpath(folder).iterdir(), key=lambda e: e.name):
            if entry.name.endswith((".c", ".h", ".j2")):
                files.append((f"{folder}/{entry.name}", entry.read_bytes()))
    return files


def kernel_hash() -> str:
    """A short SHA-256 of the kernel sources (names and contents)."""
    digest = hashlib.sha256()
    for name, data in kernel_sources():
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Coefficients:
    """Instructions per loop trip, per build, and how they were fitted."""

    builds: dict[str, dict[str, float]]  # build name -> feature -> instructions per trip
    kernel_hash: str  # of the sources they were measured on
    fitted: str  # date
    meta: dict[str, Any]  # the fit's report: plans, holdout errors, compiler, machine

    @property
    def stale(self) -> bool:
        """Whether the kernel sources changed since the fit."""
        return self.kernel_hash != kernel_hash()

    def staleness(self) -> str | None:
        """A sentence when the coefficients were fitted on other kernel sources, else None."""
        if not self.stale:
            return None
        return (f"the instruction cost model was fitted on {self.fitted} on other kernel sources (hash {self.kernel_hash}, "
                f"now {kernel_hash()}): its predictions may be off; rerun tools/calibrate_mcu_cost.py")

    def to_json(self) -> str:
        return json.dumps({"fitted": self.fitted, "kernel_hash": self.kernel_hash, "features": list(FEATURES),
                           "builds": self.builds, **self.meta}, indent=2) + "\n"


def coefficients_path() -> Path:
    return Path(str(resources.files("tinymnist.export.c").joinpath(COEFFICIENTS)))


@cache
def _load(path: str) -> Coefficients:
    raw = json.loads(Path(path).read_text())
    builds = {name: {k: float(v) for k, v in coefs.items()} for name, coefs in raw["builds"].items()}
    meta = {k: v for k, v in raw.items() if k not in ("fitted", "kernel_hash", "features", "builds")}
    return Coefficients(builds, raw["kernel_hash"], raw["fitted"], meta)


def load_coefficients(path: Path | None = None) -> Coefficients:
    """The fitted coefficients (the package's file unless `path`). FileNotFoundError / ValueError when
    missing or unreadable."""
    try:
        return _load(str(path or coefficients_path()))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path or coefficients_path()} is not a cost-coefficients file: {exc}") from None


def today() -> str:
    return datetime.date.today().isoformat()


# ---------------------------------------------------------------------------------------------
# Predictions


def check_build(cpu: str, opt: str) -> str:
    """The build's name; ValueError for a build the model has no coefficients for."""
    if (cpu, opt) not in BUILDS:
        known = ", ".join(build_name(c, o) for c, o in BUILDS)
        raise ValueError(f"no instruction cost model for {cpu} {opt}; known builds: {known}")
    return build_name(cpu, opt)


def predict_features(counts: dict[str, float], cpu: str, opt: str, coefficients: Coefficients | None = None) -> float:
    """Predicted instructions of one inference with these loop trips."""
    coefs = (coefficients or load_coefficients()).builds[check_build(cpu, opt)]
    return float(sum(coefs.get(name, 0.0) * value for name, value in counts.items()))


def predict(model: IntModel, cpu: str = "cortex-m4", opt: str = "-O2", coefficients: Coefficients | None = None,
            simple: Callable[[IntConv], bool] | None = None) -> int:
    """Predicted instructions per inference of a quantized model's C export."""
    return int(round(predict_features(features(model, cpu, simple), cpu, opt, coefficients)))


def shape_model(model: Any) -> IntModel:
    """An IntModel with `model`'s layer shapes and placeholder scales (what the kernel choice and the
    instruction count depend on, with structural_simple). ValueError when it cannot be exported."""
    from tinymnist.export.c.lower import Unsupported, lower
    from tinymnist.export.c.quantize import SchemeError, quantize

    try:
        ops = lower(model)
        return quantize(ops, [(0.0, 1.0)] * len(ops))
    except (Unsupported, SchemeError, ArithmeticError) as exc:
        raise ValueError(str(exc)) from None


def predict_untrained(model: Any, cpu: str = "cortex-m4", opt: str = "-O2", coefficients: Coefficients | None = None) -> int:
    """Predicted instructions of a float model not yet quantized (e.g. a search candidate), from its
    shapes: each conv assumed simple where its structure allows (structural_simple)."""
    return predict(shape_model(model), cpu, opt, coefficients, structural_simple)


def measure_instructions(model: IntModel, cpu: str, opt: str, image: np.ndarray) -> int:
    """QEMU's count of one inference of the model's C export on a build (toolchain.qemu_run: -icount,
    as benchmarks/mcu.py counts) on `image` (uint8 28 x 28). toolchain.ToolError when a tool is missing
    or fails."""
    import tempfile

    from tinymnist.export.c import toolchain

    with tempfile.TemporaryDirectory(prefix="tinymnist-count-") as tmp:
        src = Path(tmp)
        header, source = codegen.render(model, {"model": "count", "source": "the instruction count"})
        (src / codegen.HEADER_NAME).write_text(header)
        (src / codegen.SOURCE_NAME).write_text(source)
        target = toolchain.TARGETS[cpu]
        elf = toolchain.arm_build(src, target, src / "model.elf", opt)
        return int(toolchain.qemu_run(elf, target, np.asarray(image, dtype=np.uint8).reshape(1, 28, 28)).instructions[0])


# ---------------------------------------------------------------------------------------------
# The fit (tools/calibrate_mcu_cost.py)


def fit(rows: list[dict[str, float]], counts: list[float]) -> dict[str, float]:
    """Non-negative instructions per trip that minimize the squared relative error of the predicted
    counts (each row weighted by 1 / its count). Features no row exercises get 0."""
    x = np.array([[row[name] for name in FEATURES] for row in rows], dtype=np.float64)
    y = np.asarray(counts, dtype=np.float64)
    used = np.flatnonzero(np.abs(x).sum(0) > 0)
    a = x[:, used] / y[:, None]
    scale = np.abs(a).max(0)
    solution = nnls(a / scale, np.ones(len(y))) / scale
    coefs = dict.fromkeys(FEATURES, 0.0)
    for j, value in zip(used, solution, strict=True):
        coefs[FEATURES[j]] = float(value)
    return coefs


def nnls(a: np.ndarray, b: np.ndarray, iterations: int = 1000) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= 0 (Lawson and Hanson's active-set method)."""
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    gradient = a.T @ (b - a @ x)
    tolerance = 1e-10 * max(1.0, float(np.abs(gradient).max(initial=0.0)))
    for _ in range(iterations):
        if passive.all() or gradient[~passive].max(initial=-np.inf) <= tolerance:
            break
        j = int(np.argmax(np.where(passive, -np.inf, gradient)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            mask = passive & (z <= 0)
            alpha = float(np.min(x[mask] / (x[mask] - z[mask])))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
            x[~passive] = 0.0
        gradient = a.T @ (b - a @ x)
    return x
