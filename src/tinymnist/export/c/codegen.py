"""C99 source for an integer model: `tinymnist_model.h` (the API, what the model is and needs) and
`tinymnist_model.c` (const weight tables, the int8 runtime from csrc/ - one file per kernel, contracts in tm_runtime.h - and one
call per layer). No malloc, no floating point, no library beyond <stdint.h> and <stddef.h>.

Layers are grouped for the runtime: a 3x3 depthwise conv followed by a 1x1 conv becomes one
separable layer (fused row by row, so the depthwise output never exists as a whole tensor).
Every layer runs in place in one arena; `plan` picks each layer's row order and sizes the buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np

from tinymnist.export.c.quantize import IntConv, IntHead, IntModel, IntPool, SchemeError

HEADER_NAME = "tinymnist_model.h"
SOURCE_NAME = "tinymnist_model.c"
IMAGE_BYTES = 28 * 28


@dataclass(frozen=True)
class Layer:
    """One runtime call: a 3x3 conv and/or a 1x1 conv (fused), a max-pool, or the head."""

    conv: IntConv | None = None  # the 3x3 part (or a lone 1x1 conv, stored here too)
    point: IntConv | None = None  # the 1x1 part of a separable layer
    pool: IntPool | None = None
    head: IntHead | None = None
    bottom_up: bool = False

    @property
    def first(self) -> IntConv:
        assert self.conv is not None
        return self.conv

    @property
    def last(self) -> IntConv:
        return self.point or self.first


@dataclass(frozen=True)
class Plan:
    layers: tuple[Layer, ...]
    arena_bytes: int  # the largest tensor (the 784-byte image included)
    ring_bytes: int  # three padded input rows of the widest layer
    mid_bytes: int  # one depthwise output row of the widest separable layer, as int16 (the SIMD layout)
    head_channels: int
    point_cin: int = 4  # the most input channels of a SIMD 1x1 conv (its weight lanes on the stack)

    @property
    def ram_bytes(self) -> int:
        """Static buffers (the stack comes on top: it is measured, not computed here)."""
        return self.arena_bytes + self.ring_bytes + self.mid_bytes


def plane_bytes(padded_width: int) -> int:
    """Bytes per channel of a planar ring slot (tm_plane_bytes in csrc/tm_layer.c)."""
    return (padded_width + 2 + 3) // 4 * 4


def _planar(op: IntConv, point: IntConv | None) -> bool:
    """Whether the SIMD build runs this 3x3 conv on planar ring rows (`plane` in tm_run_layer):
    one input channel per output, simple requantization, and room for the pixel an odd width
    computes past the row (only the depthwise output row of a separable layer has it)."""
    single = op.kernel == 3 and (op.depthwise or op.in_channels == 1)
    return single and simple(op) and (point is not None or op.out_width % 2 == 0)


def _in_place_order(h: int, w: int, cin: int, k: int, p: int, ho: int, wo: int, cout: int) -> bool:
    """True for bottom-up. Top-down is safe when writing output row y never reaches input rows not
    yet copied (those after y - p + k - 1); bottom-up when it never reaches rows before y - p."""
    top_down = all((y + 1) * wo * cout <= (y - p + k) * w * cin for y in range(ho) if y - p + k < h)
    if top_down:
        return False
    bottom_up = all(y * wo * cout >= (y - p) * w * cin for y in range(ho) if y - p > 0)
    if not bottom_up:
        raise SchemeError(f"a {k}x{k} layer {cin}->{cout} channels at {h}x{w} cannot run in place")
    return True


def plan(model: IntModel) -> Plan:
    layers: list[Layer] = []
    ops = list(model.ops)
    arena, ring, mid, point_cin, i = IMAGE_BYTES, 0, 2, 4, 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, IntPool):
            layers.append(Layer(pool=op))
            i += 1
            continue
        if isinstance(op, IntHead):
            layers.append(Layer(head=op))
            i += 1
            continue
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        point = None
        if op.kernel == 3 and op.depthwise and isinstance(nxt, IntConv) and nxt.kernel == 1:
            point = nxt
            mid = max(mid, 2 * (op.out_width + 1) * op.out_channels)  # + a pixel: tm_conv3_rows
        last = point or op
        if point is not None and simple(op) and simple(point) and point.in_channels % 4 == 0:  # the SIMD 1x1 kernel
            point_cin = max(point_cin, point.in_channels)
        bottom_up = _in_place_order(op.height, op.width, op.in_channels, op.kernel, op.padding, op.out_height,
                                    op.out_width, last.out_channels)
        layers.append(Layer(conv=op, point=point, bottom_up=bottom_up))
        arena = max(arena, op.height * op.width * op.in_channels, op.out_height * op.out_width * last.out_channels)
        slot = (op.width + 2 * op.padding) * op.in_channels
        if _planar(op, point):  # the SIMD build's planar slot
            slot = max(slot, plane_bytes(op.width + 2 * op.padding) * op.in_channels)
        ring = max(ring, 3 * slot)
        i += 2 if point else 1
    return Plan(tuple(layers), arena, ring, mid, model.head.in_channels, point_cin)


# ---------------------------------------------------------------------------------------------
# Rendering


def _templates() -> jinja2.Environment:
    """The C templates (templates/*.j2); rendered text is byte-for-byte what they show."""
    folder = Path(str(resources.files("tinymnist.export.c").joinpath("templates")))
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


def _array(ctype: str, name: str, values: np.ndarray, comment: str, per_line: int = 16) -> str:
    """A const table, flat, `per_line` values a line, right-aligned."""
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    dims = "[" + " * ".join(str(d) for d in np.asarray(values).shape) + "]"
    width = max(len(str(v)) for v in flat) if flat else 1
    rows = [", ".join(f"{v:>{width}}" for v in flat[j:j + per_line]) for j in range(0, len(flat), per_line)]
    return _templates().get_template("array.c.j2").render(ctype=ctype, name=name, dims=dims, rows=rows, comment=comment)


def _folded_bias(op: IntConv) -> np.ndarray:
    """bias - zero * sum(weights): the runtime multiplies raw q values, padding taps hold the zero."""
    sums = op.weight.astype(np.int64).reshape(op.out_channels, -1).sum(1)
    folded = op.bias.astype(np.int64) - op.inq.zero * sums
    if np.abs(folded).max() > 2**31 - 1:
        raise SchemeError("a folded bias does not fit in int32")
    return folded


def _check_addend(op: IntConv) -> None:
    """The runtime adds 2^(s-1) + offset * 2^s (shift s >= 1) or the offset (shift 0) to the high
    word in int32 (see tm_channel_of)."""
    shift = op.shift.astype(np.int64)
    addend = op.offset.astype(np.int64) * (np.int64(1) << shift) + np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    if np.abs(addend).max() > 2**30:
        raise SchemeError("a layer's output offset and shift overflow the runtime's int32 rounding term")


def simple(op: IntConv) -> bool:
    """The SIMD kernels' requantization (tm_requant.simple): shift 0 everywhere, floor -128, no ReLU
    before, so out = saturate_int8(offset + rounded high word of acc * multiplier)."""
    return bool(np.all(op.shift == 0)) and op.low == -128 and not op.relu_before


def _requant_tables(prefix: str, op: IntConv) -> tuple[str, str]:
    """C tables and the tm_requant initializer of one conv's outputs."""
    q = op.outq
    _check_addend(op)
    tables = _array("int32_t", f"{prefix}_BIAS", _folded_bias(op), "accumulator units; input zero point folded in")
    tables += _array("int32_t", f"{prefix}_MULTIPLIER", op.multiplier,
                     "output = offset + round(acc * multiplier / 2^(32 + shift)), see tm_requant")
    tables += _array("int8_t", f"{prefix}_SHIFT", op.shift, "0: the rounded high word; 1..30: rounding right shifts after it")
    affine = bool(np.any(op.offset != q.zero))
    if affine:
        tables += _array("int32_t", f"{prefix}_OFFSET", op.offset, "output zero point + BatchNorm shift")
    init = (f"{{{prefix}_BIAS, {prefix}_MULTIPLIER, {prefix}_SHIFT, {prefix + '_OFFSET' if affine else 'NULL'}, "
            f"{q.zero}, {op.low}, {int(op.relu_before)}, {int(simple(op))}}}")
    return tables, init


def _describe(op: IntConv) -> str:
    kind = "depthwise 3x3" if op.depthwise else f"{op.kernel}x{op.kernel}"
    post = "ReLU -> BatchNorm" if op.relu_before else ("ReLU" if op.relu_after else "no activation")
    return (f"{kind} conv {op.in_channels}->{op.out_channels} at {op.height}x{op.width}, padding {op.padding}, {post}; "
            f"output scale {op.outq.scale:.6g}, zero point {op.outq.zero}")


def _weight_comment(op: IntConv) -> str:
    layout = "[in][3][3]" if op.depthwise else f"[out][{op.kernel}][{op.kernel}][in]"
    ws = op.weight_scale
    return f"int8 weights {layout}; real = q * scale[out], scale {ws.min():.4g}..{ws.max():.4g} (per output channel)"


def _render_layer(index: int, layer: Layer) -> tuple[str, str]:
    """(tables, statement) for one runtime call."""
    if layer.pool is not None:
        p = layer.pool
        return "", f"tm_maxpool({p.height}, {p.width}, {p.channels}); /* layer {index}: 2x2 max-pool */"
    if layer.head is not None:
        h = layer.head
        sums = h.weight.astype(np.int64).sum(1)
        bias = h.bias.astype(np.int64) - h.height * h.width * h.inq.zero * sums
        tables = _array("int8_t", f"L{index}_WEIGHT", h.weight, "int8 weights [classes][channels], per-class scales")
        tables += _array("int32_t", f"L{index}_BIAS", bias, "input zero point folded in")
        tables += _array("int32_t", f"L{index}_MULTIPLIER", h.multiplier, "class weight scale / largest weight scale")
        tables += _array("int8_t", f"L{index}_SHIFT", h.shift, "right shifts")
        text = _templates().get_template("head.c.j2").render(
            index=index, height=h.height, width=h.width, in_channels=h.in_channels, classes=h.classes,
            score_unit=f"{h.score_unit:.6g}", tables=tables)
        return text, f"tm_run_head(&L{index}, scores); /* layer {index}: head */"
    conv, point = layer.first, layer.point
    three = conv.kernel == 3
    prefix = f"L{index}_{'CONV' if three else 'POINT'}"
    tables = _array("int8_t", f"{prefix}_WEIGHT", conv.weight.reshape(conv.out_channels, -1) if conv.depthwise else conv.weight,
                    _weight_comment(conv), per_line=conv.weight[0].size if conv.weight[0].size <= 32 else 16)
    conv_tables, conv_init = _requant_tables(prefix, conv)
    tables += conv_tables
    if point is not None:
        tables += _array("int8_t", f"L{index}_POINT_WEIGHT", point.weight.reshape(point.out_channels, -1),
                         _weight_comment(point), per_line=min(point.in_channels, 32))
        point_tables, point_init = _requant_tables(f"L{index}_POINT", point)
        tables += point_tables
    empty = "{NULL, NULL, NULL, NULL, 0, 0, 0, 0}"
    if three:
        fields = [f"{prefix}_WEIGHT", str(int(conv.depthwise)), str(conv.out_channels), conv_init]
        fields += [f"L{index}_POINT_WEIGHT", str(point.out_channels), point_init] if point else ["NULL", "0", empty]
    else:  # a lone 1x1 conv is the runtime's 1x1 part
        fields = ["NULL", "0", "0", empty, f"{prefix}_WEIGHT", str(conv.out_channels), conv_init]
    text = _templates().get_template("layer.c.j2").render(
        index=index, descriptions=[_describe(conv)] + ([_describe(point)] if point else []),
        order="bottom-up" if layer.bottom_up else "top-down", tables=tables, height=conv.height, width=conv.width,
        in_channels=conv.in_channels, padding=conv.padding if three else 0, zero=conv.inq.zero,
        bottom_up=int(layer.bottom_up), fields=fields)
    return text, f"tm_run_layer(&L{index});"


# The runtime's files in the order the generated model holds them: the contract header (with the DSP
# primitives it includes), the buffers, then each kernel after the kernels it calls.
RUNTIME_HEADERS = ("tm_runtime.h", "tm_dsp.h")
RUNTIME_FILES = ("tm_buffers.c", "tm_requant.c", "tm_rows.c", "tm_rows_m4.c", "tm_conv3_m4.c", "tm_conv3.c",
                 "tm_point_m4.c", "tm_point.c", "tm_layer.c", "tm_pool.c", "tm_head.c", "tm_image.c")


def _runtime_source() -> str:
    """The runtime as one piece of C (TM_AMALGAMATED: every kernel static, so the compiler sees the whole
    model at once): the header with its includes pasted in, then each file without its include line."""
    folder = resources.files("tinymnist.export.c").joinpath("csrc")
    text = {name: folder.joinpath(name).read_text() for name in (*RUNTIME_HEADERS, *RUNTIME_FILES)}
    header = text["tm_runtime.h"].replace('#include "tm_dsp.h"\n', text["tm_dsp.h"])
    parts = [header] + [text[name].replace('#include "tm_runtime.h"\n', "") for name in RUNTIME_FILES]
    return "\n".join(parts)


def render(model: IntModel, meta: dict) -> tuple[str, str]:
    """(header, source) text. `meta`: model, params, float_accuracy, int8_accuracy, source, flash
    (dict or None), version."""
    p = plan(model)
    env = _templates()
    common = {"header_name": HEADER_NAME, "source_name": SOURCE_NAME, "version": meta.get("version", ""),
              "source": meta.get("source", "a checkpoint"), "model_name": meta.get("model", "?"),
              "params": meta.get("params", 0), "classes": model.head.classes}
    header = env.get_template("tinymnist_model.h.j2").render(
        **common, float_accuracy=meta["float_accuracy"], int8_accuracy=meta["int8_accuracy"], flash=meta.get("flash"),
        table_bytes=table_bytes(model), ram_bytes=p.ram_bytes, score_unit=f"{model.head.score_unit:.6g}")
    layers = [dict(zip(("tables", "call"), _render_layer(index, layer), strict=True))
              for index, layer in enumerate(p.layers, start=1)]
    source = env.get_template("tinymnist_model.c.j2").render(
        **common, plan=p, runtime=_runtime_source(), input_zero=model.inq.zero, input_scale=f"{model.inq.scale:.6g}",
        layers=layers)
    return header, source


def table_bytes(model: IntModel) -> int:
    """Bytes of the const tables (weights, biases, multipliers, shifts, offsets)."""
    total = 0
    for op in model.ops:
        if isinstance(op, IntConv):
            affine = np.any(op.offset != op.outq.zero)  # an offset table only where the offsets differ
            total += op.weight.size + op.out_channels * (4 + 4 + 1 + (4 if affine else 0))
        elif isinstance(op, IntHead):
            total += op.weight.size + op.classes * (4 + 4 + 1)
    return total
