"""C99 source for an integer model: `tinymnist_model.h` (the API, what the model is and needs) and
`tinymnist_model.c`, one self-contained file: the runtime's buffer sizes, the int8 runtime of csrc/
(one kernel per file, every file pasted in unchanged), the model's const tables with one descriptor
per layer, and the API. No malloc, no floating point, no library beyond <stdint.h> and <stddef.h>.
The C text lives in the Jinja2 templates of templates/; this module computes what they print.

Layers are grouped for the runtime: a 3x3 depthwise conv followed by a 1x1 conv becomes one
separable layer (fused row by row, so the depthwise output never exists as a whole tensor), and a
residual block's shortcut becomes part of the layer of its body (added to each output row while the
input row is still in the ring, so the block's input needs no buffer of its own).
Every layer runs in place in one arena; `plan` picks each layer's row order and sizes the buffers.
A 3x3 part that the SIMD builds run on planar rows (`planar`) keeps one weight table, and its
requantization twice, under `#if TM_SIMD`: {bias, multiplier} pairs, which that kernel loads with
one instruction, or the plain tables the portable kernels read; each build compiles one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

import jinja2
import numpy as np

from tinymnist.export.c.quantize import IntConv, IntHead, IntModel, IntPool, IntShortcut, SchemeError

HEADER_NAME = "tinymnist_model.h"
SOURCE_NAME = "tinymnist_model.c"
IMAGE_BYTES = 28 * 28
# The runtime (csrc/) in the order it is pasted into the generated source: tm_runtime.h (the contract,
# with the headers it includes) first, then one file per concern, each kernel before its caller.
RUNTIME_HEADER = "tm_runtime.h"
RUNTIME_FILES = ("tm_buffers.c", "tm_requant.c", "tm_output_row_m0.c", "tm_rows.c", "tm_plane_blocks_m4.c",
                 "tm_conv3x3.c", "tm_conv3_sums_m0.c", "tm_conv3x3_planar.c", "tm_conv3_rows_m4.c", "tm_conv1x1.c",
                 "tm_point_sums_m0.c", "tm_conv1x1_lanes.c", "tm_point_quads_m4.c", "tm_shortcut.c", "tm_layer.c",
                 "tm_stem.c", "tm_maxpool.c", "tm_head.c")
SYSTEM_HEADERS = ("stddef.h", "stdint.h")  # the only library headers; the generated source includes them once


@dataclass(frozen=True)
class Layer:
    """One runtime call: a 3x3 conv and/or a 1x1 conv (fused), a max-pool, or the head."""

    conv: IntConv | None = None  # the 3x3 part (or a lone 1x1 conv, stored here too)
    point: IntConv | None = None  # the 1x1 part of a separable layer
    pool: IntPool | None = None  # a max-pool of its own, or (with conv) the one fused into the conv's output rows
    head: IntHead | None = None
    bottom_up: bool = False
    shortcut: IntShortcut | None = None  # a residual block's, whose body this conv layer is

    @property
    def first(self) -> IntConv:
        assert self.conv is not None
        return self.conv

    @property
    def last(self) -> IntConv:
        return self.point or self.first

    @property
    def pooled(self) -> bool:
        """A conv layer whose output rows are max-pooled in pairs as they are made (tm_layer.pool)."""
        return self.conv is not None and self.pool is not None

    @property
    def stem(self) -> bool:
        """The stride-2 first conv, run by tm_run_stem from the caller's image (no ring, no arena input)."""
        return self.conv is not None and self.conv.stride == 2


@dataclass(frozen=True)
class Plan:
    layers: tuple[Layer, ...]
    arena_bytes: int  # the largest tensor (the image included: 784 bytes, or 196 pooled on load, or 0 with a stem)
    ring_bytes: int  # three padded input rows of the widest layer
    mid_bytes: int  # one depthwise output row of the widest separable layer, as int16 (the SIMD layout)
    head_channels: int
    point_cin: int = 4  # the most input channels of a SIMD 1x1 conv (four channels' weight lanes on the stack)
    input_pool: bool = False  # the model starts with a max-pool, done as the image is loaded
    pool_bytes: int = 0  # two output rows of the widest layer with a fused max-pool
    stem: bool = False  # the model starts with a stride-2 conv that reads the caller's image (tm_run_stem)

    @property
    def kernels_portable(self) -> int:
        """TM_KERNELS_PORTABLE: the kernels a build without SIMD runs."""
        return kernels(self.layers, simd=False)

    @property
    def kernels_simd(self) -> int:
        """TM_KERNELS_SIMD."""
        return kernels(self.layers, simd=True)

    @property
    def ram_bytes(self) -> int:
        """Static buffers (the stack comes on top: it is measured, not computed here)."""
        return self.arena_bytes + self.ring_bytes + self.mid_bytes + self.pool_bytes


def plane_bytes(padded_width: int) -> int:
    """Bytes per channel of a planar ring slot (tm_plane_bytes in csrc/tm_rows.c)."""
    return (padded_width + 2 + 3) // 4 * 4


def planar(op: IntConv, point: IntConv | None, is_simple: Callable[[IntConv], bool] | None = None) -> bool:
    """Whether the SIMD build runs this 3x3 conv on planar ring rows (tm_layer.conv_planar, which
    tm_run_layer follows): one input channel per output, simple requantization (`is_simple`, else
    `simple`) with one offset for every channel (the zero point: a BatchNorm shift comes only after
    a ReLU, which is not simple), and room for the pixel an odd width computes past the row (only
    the depthwise output row of a separable layer has it)."""
    single = op.kernel == 3 and op.stride == 1 and (op.depthwise or op.in_channels == 1)
    return (single and (is_simple or simple)(op) and not _affine(op)
            and (point is not None or op.out_width % 2 == 0))


def lanes(op: IntConv, point: IntConv | None, is_simple: Callable[[IntConv], bool] | None = None) -> bool:
    """Whether the SIMD build runs a separable layer's 1x1 part on the depthwise row's int16 lanes
    (`lanes` in tm_run_layer): input channels in fours, output channels four at a time (`is_simple`
    as in `planar`)."""
    return (point is not None and planar(op, point, is_simple) and (is_simple or simple)(point)
            and point.in_channels % 4 == 0 and point.out_channels >= 4)


def _writes_are_safe(op: IntConv, cout: int, pooled: bool, bottom_up: bool) -> bool:
    """Whether running the layer in place in this row order never overwrites an input row before it
    is copied into the ring: tm_run_layer's order of row copies and writes, replayed. Output row y
    needs input rows y - p .. y - p + k - 1; the first output row's other rows are copied first,
    then one new row before each output row. A fused pool computes an even number of rows and
    writes pooled row j once rows 2j and 2j + 1 are made."""
    h, w, k, p = op.height, op.width, op.kernel, op.padding
    rows = op.out_height // 2 * 2 if pooled else op.out_height
    order = range(rows - 1, -1, -1) if bottom_up else range(rows)
    if bottom_up:
        copies = [[order[0] - p + n for n in range(1, k)] + [y - p] for y in order]
    else:
        copies = [[order[0] - p + n - 1 for n in range(1, k)] + [y - p + k - 1] for y in order]
    copies[1:] = [c[-1:] for c in copies[1:]]  # the window's other rows only before the first output row
    row_in, row_out = w * op.in_channels, (op.out_width // 2 if pooled else op.out_width) * cout
    for step, y in enumerate(order):
        if pooled and step % 2 == 0:
            continue  # the pair's first row goes to the pool rows
        written = y // 2 if pooled else y
        later = {r for c in copies[step + 1:] for r in c if 0 <= r < h}
        if any(written * row_out < (r + 1) * row_in and r * row_in < (written + 1) * row_out for r in later):
            return False
    return True


def _in_place_order(op: IntConv, cout: int, pooled: bool = False) -> bool | None:
    """True for bottom-up, False for top-down; None where neither order is safe with a fused pool
    (the pool then runs on its own); SchemeError where neither is safe without one."""
    for bottom_up in (False, True):
        if _writes_are_safe(op, cout, pooled, bottom_up):
            return bottom_up
    if pooled:
        return None
    raise SchemeError(f"a {op.kernel}x{op.kernel} layer {op.in_channels}->{cout} channels at {op.height}x{op.width} "
                      "cannot run in place")


# The kernel bits of csrc/tm_runtime.h (TM_K_*): which code a model's build compiles.
(K_DENSE3, K_SINGLE3, K_PLANAR3, K_POINT, K_LANES, K_ROWS, K_MAXPOOL, K_POOLED, K_SHORTCUT, K_STEM,
 K_FC, K_FC4) = (1 << b for b in range(12))


def kernels(layers: tuple[Layer, ...], simd: bool) -> int:
    """The TM_K_* bits of the kernels these layers run in one kernel set: tm_run_layer's choices."""
    used = 0
    for layer in layers:
        if layer.conv is None:
            used |= K_MAXPOOL if layer.pool is not None else 0
            if layer.head is not None and layer.head.spatial:
                used |= K_FC4 if layer.head.bits == 4 else K_FC
            continue
        if layer.stem:
            used |= K_STEM
            continue
        op, point = layer.first, layer.point
        single = op.kernel == 3 and (op.depthwise or op.in_channels == 1)
        plane, on_lanes = simd and planar(op, point), simd and lanes(op, point)
        if op.kernel == 3:
            used |= K_PLANAR3 if plane else K_SINGLE3 if single else K_DENSE3
        if point is not None or op.kernel == 1:
            used |= K_LANES if on_lanes else K_POINT
        used |= K_ROWS if not plane and not single else 0  # else planar rows (signed, or biased for the portable kernel)
        used |= K_POOLED if layer.pooled else 0
        used |= K_SHORTCUT if layer.shortcut is not None else 0
    return used


def _units(ops: list, first: int) -> list[Layer]:
    """The runtime calls of ops[first:] before any pool is fused: a conv layer (a separable pair
    grouped, with the shortcut of the residual block it is the body of), a max-pool, the head."""
    units: list[Layer] = []
    starts: list[int] = []  # the index in ops of each unit's first op
    i = first
    while i < len(ops):
        op, nxt = ops[i], ops[i + 1] if i + 1 < len(ops) else None
        if isinstance(op, IntShortcut):
            if not units or units[-1].conv is None or units[-1].shortcut is not None or starts[-1] != op.start:
                raise SchemeError("a shortcut runs only around one conv layer")
            units[-1] = replace(units[-1], shortcut=op)
            i += 1
            continue
        starts.append(i)
        if isinstance(op, IntPool):
            units.append(Layer(pool=op))
        elif isinstance(op, IntHead):
            units.append(Layer(head=op))
        elif op.kernel == 3 and op.depthwise and isinstance(nxt, IntConv) and nxt.kernel == 1:
            units.append(Layer(conv=op, point=nxt))
            i += 1
        else:
            units.append(Layer(conv=op))
        i += 1
    return units


def _fused(units: list[Layer], fuse: set[int]) -> list[Layer]:
    """The layers with the pools after units `fuse` fused into them, and each conv's row order."""
    layers: list[Layer] = []
    for i, unit in enumerate(units):
        if unit.conv is None:
            if i - 1 not in fuse:
                layers.append(unit)
            continue
        pool = units[i + 1].pool if i in fuse else None
        if unit.stem:  # reads the caller's image: nothing in the arena to keep
            layers.append(unit)
            continue
        bottom_up = _in_place_order(unit.first, unit.last.out_channels, pooled=pool is not None)
        layers.append(replace(unit, pool=pool, bottom_up=bool(bottom_up)))
    return layers


def _buffers(layers: list[Layer], input_pool: bool) -> tuple[int, int]:
    """(arena, pool rows) bytes of these layers."""
    stem = bool(layers) and layers[0].stem  # the image stays where the caller keeps it
    arena, pool_rows = IMAGE_BYTES // 4 if input_pool else 0 if stem else IMAGE_BYTES, 0
    for layer in layers:
        if layer.conv is None:
            continue
        op, cout = layer.first, layer.last.out_channels
        out_pixels = (op.out_height // 2) * (op.out_width // 2) if layer.pooled else op.out_height * op.out_width
        arena = max(arena, 0 if layer.stem else op.height * op.width * op.in_channels, out_pixels * cout)
        if layer.pooled:
            pool_rows = max(pool_rows, 2 * op.out_width * cout)
    return arena, pool_rows


def plan(model: IntModel) -> Plan:
    """The runtime calls and buffer sizes. A model that starts with a max-pool has it done as the
    image is loaded. A max-pool after a conv layer is fused into it where that can run in place and
    the static RAM (arena + the two pool rows) is smallest that way: fusing saves a pass over the
    tensor and shrinks the arena when the conv's output is the largest tensor, but its rows cost
    RAM of their own."""
    ops = list(model.ops)
    input_pool = bool(ops) and isinstance(ops[0], IntPool)
    units = _units(ops, int(input_pool))
    fusable = [i for i, unit in enumerate(units[:-1]) if unit.conv is not None and not unit.stem
               and units[i + 1].pool is not None and _in_place_order(unit.first, unit.last.out_channels, pooled=True) is not None]
    choices = [{i for b, i in enumerate(fusable) if mask >> b & 1} for mask in range(1 << len(fusable))]
    fuse = min(choices, key=lambda c: (sum(_buffers(_fused(units, c), input_pool)), -len(c)))
    layers = _fused(units, fuse)
    arena, pool_rows = _buffers(layers, input_pool)
    ring, mid, point_cin = 0, 2, 4
    for layer in layers:
        if layer.conv is None or layer.stem:
            continue
        op, point = layer.first, layer.point
        if point is not None:
            mid = max(mid, 2 * (op.out_width + 1) * op.out_channels)  # + a pixel: tm_conv3_rows
        if lanes(op, point):
            point_cin = max(point_cin, op.out_channels)  # the SIMD 1x1 kernel's weight lanes
        slot = (op.width + 2 * op.padding) * op.in_channels
        if planar(op, point):  # the SIMD build's planar slot
            slot = max(slot, plane_bytes(op.width + 2 * op.padding) * op.in_channels)
        ring = max(ring, 3 * slot)
    stem = bool(layers) and layers[0].stem
    if stem and not ring:
        raise SchemeError("a stride-2 first conv needs a conv layer after it (the runtime has no layer to run)")
    return Plan(tuple(layers), arena, ring, mid, model.head.in_channels, point_cin, input_pool, pool_rows, stem)


# ---------------------------------------------------------------------------------------------
# The runtime, pasted into one translation unit

_INCLUDE = re.compile(r'^#include ([<"])([^>"]+)[>"][^\n]*\n', re.M)


def runtime_source() -> str:
    """csrc/'s files as one text, in RUNTIME_FILES order after RUNTIME_HEADER: each quoted include
    replaced by the header's text where it first appears and dropped after; the system includes
    dropped (the generated source includes SYSTEM_HEADERS itself, before the runtime)."""
    csrc = resources.files("tinymnist.export.c").joinpath("csrc")
    pasted: set[str] = set()

    def paste(name: str) -> str:
        pasted.add(name)

        def include(m: re.Match[str]) -> str:
            if m[1] == "<":
                if m[2] not in SYSTEM_HEADERS:
                    raise ValueError(f"csrc/{name} includes <{m[2]}>: the generated C may use only {', '.join(SYSTEM_HEADERS)}")
                return ""
            return "" if m[2] in pasted else paste(m[2])

        return _INCLUDE.sub(include, csrc.joinpath(name).read_text())

    text = "\n".join(paste(name) for name in (RUNTIME_HEADER, *RUNTIME_FILES))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


# ---------------------------------------------------------------------------------------------
# What the templates print


@dataclass(frozen=True)
class Table:
    """One const array: `static const ctype name[size] = {rows};`."""

    ctype: str
    name: str
    size: str  # the length, in the layer's named constants
    rows: tuple[str, ...]  # the values, formatted and aligned, one line each
    comment: str


@dataclass(frozen=True)
class BuildTables:
    """Tables that differ between the builds: `simd` under #if TM_SIMD, `portable` under #else."""

    simd: tuple[Table, ...]
    portable: tuple[Table, ...]


@dataclass(frozen=True)
class Requant:
    """A tm_requant initializer: its tables are PREFIX_BIAS, _MULTIPLIER, _SHIFT (and _OFFSET)."""

    prefix: str
    offset: bool  # an offset table; else NULL, every channel's offset is the zero point
    zero: int
    low: int
    relu_before: int
    simple: int


@dataclass(frozen=True)
class Part:
    """The 3x3 or the 1x1 part of a conv layer (tm_layer's conv_* or point_* fields)."""

    weight: str
    out: str  # the named constant of its output channels
    depthwise: int
    requant: Requant
    planar: str | None = None  # a 3x3 part the SIMD builds run on planar rows: its {bias, multiplier} table


@dataclass(frozen=True)
class LayerSource:
    """One layer of the generated source: its comment, shape constants, tables and runtime call."""

    index: int
    kind: str  # "conv", "pool" or "head"
    notes: tuple[str, ...]  # the comment above it, line by line
    constants: tuple[tuple[str, int, str], ...]  # (name, value, comment)
    tables: tuple[Table | BuildTables, ...]
    call: str  # the statement in tinymnist_scores
    shape: str  # input -> output, H x W x C
    padding: int = 0
    zero: int = 0  # the input zero point (conv: the padding value)
    bottom_up: int = 0
    pool: int = 0  # a fused 2x2 max-pool
    conv: Part | None = None
    point: Part | None = None
    shortcut: IntShortcut | None = None  # tm_layer.shortcut's values: multipliers, addend, shift
    spatial: int = 0  # head: a linear layer on the whole map (tm_head.spatial)
    packed: int = 0  # head: its weights 4-bit, packed (tm_head.packed)

    @property
    def name(self) -> str:
        return f"L{self.index}"


def _table(ctype: str, name: str, size: tuple[str, int], values: np.ndarray, comment: str, per_line: int = 16) -> Table:
    """size: the length as the C expression and its value."""
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    if len(flat) != size[1]:
        raise AssertionError(f"{name}: {len(flat)} values for [{size[0]}] = {size[1]}")
    width = max(len(str(v)) for v in flat) if flat else 1
    rows = tuple(", ".join(f"{v:>{width}}" for v in flat[j:j + per_line]) for j in range(0, len(flat), per_line))
    return Table(ctype, name, size[0], rows, comment)


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


def _affine(op: IntConv) -> bool:
    """Whether the output offsets differ between channels (from the zero point): an offset table."""
    return bool(np.any(op.offset != op.outq.zero))


def simple(op: IntConv) -> bool:
    """The SIMD kernels' requantization (tm_requant.simple): shift 0 everywhere, floor -128, no ReLU
    before, so out = saturate_int8(offset + rounded high word of acc * multiplier)."""
    return bool(np.all(op.shift == 0)) and op.low == -128 and not op.relu_before


def _requant(prefix: str, op: IntConv, out: tuple[str, int]) -> tuple[list[Table], Requant]:
    """The tables and the tm_requant initializer of one conv's outputs."""
    _check_addend(op)
    tables = [_table("int32_t", f"{prefix}_BIAS", out, _folded_bias(op), "accumulator units; input zero point folded in"),
              _table("int32_t", f"{prefix}_MULTIPLIER", out, op.multiplier,
                     "output = offset + round(acc * multiplier / 2^(32 + shift)), see tm_requant"),
              _table("int8_t", f"{prefix}_SHIFT", out, op.shift,
                     "0: the rounded high word; 1..30: rounding right shifts after it")]
    affine = _affine(op)
    if affine:
        tables.append(_table("int32_t", f"{prefix}_OFFSET", out, op.offset, "output zero point + BatchNorm shift"))
    return tables, Requant(prefix, affine, op.outq.zero, op.low, int(op.relu_before), int(simple(op)))


def _describe(op: IntConv) -> str:
    kind = "depthwise 3x3" if op.depthwise else f"{op.kernel}x{op.kernel}" + (f" stride {op.stride}" if op.stride > 1 else "")
    post = "ReLU -> BatchNorm" if op.relu_before else ("ReLU" if op.relu_after else "no activation")
    return (f"{kind} conv {op.in_channels}->{op.out_channels} at {op.height}x{op.width}, padding {op.padding}, {post}; "
            f"output scale {op.outq.scale:.6g}, zero point {op.outq.zero}")


def _weight_comment(op: IntConv) -> str:
    layout = "[in][3][3]" if op.depthwise else f"[out][{op.kernel}][{op.kernel}][in]"
    ws = op.weight_scale
    return f"int8 weights {layout}; real = q * scale[out], scale {ws.min():.4g}..{ws.max():.4g} (per output channel)"


def _conv_part(name: str, op: IntConv, cin: str) -> tuple[tuple[str, int, str], list[Table], Part]:
    """The output-channel constant, tables and tm_layer fields of a conv layer's 3x3 part (NAME_CONV_*)
    or 1x1 part (NAME_POINT_*); `cin` names the constant of its input channels."""
    prefix = f"{name}_{'CONV' if op.kernel == 3 else 'POINT'}"
    out = f"{prefix}_OUT"
    constant = (out, op.out_channels, f"output channels of the {op.kernel}x{op.kernel} conv")
    weights = op.weight.reshape(op.out_channels, -1)  # one output channel per row
    size = " * ".join([out] + ["3 * 3"] * (op.kernel == 3) + [cin] * (not op.depthwise))
    row = weights.shape[1]
    tables = [_table("int8_t", f"{prefix}_WEIGHT", (size, weights.size), weights, _weight_comment(op),
                     per_line=row if row <= 32 else 16)]
    requant_tables, requant = _requant(prefix, op, (out, op.out_channels))
    return constant, tables + requant_tables, Part(f"{prefix}_WEIGHT", out, int(op.depthwise), requant)


def _planar_tables(prefix: str, op: IntConv, out: str, tables: list[Table]) -> tuple[list[Table | BuildTables], str]:
    """A planar 3x3 part's tables, from its plain ones (weights, bias, multiplier, shift): the weights
    for every build, a byte longer with SIMD (the kernel's word load of the last channel's last row
    reaches one past them), then {bias, multiplier} per channel with SIMD or the plain requantization
    tables without. Also the name of the pairs' table."""
    weights, plain = tables[0], tuple(tables[1:])
    padded = replace(weights, size=f"{weights.size} + TM_SIMD",
                     comment=weights.comment + "; + TM_SIMD: a byte for the planar SIMD kernel's word loads")
    pairs = np.stack([_folded_bias(op), op.multiplier.astype(np.int64)], axis=1)
    both = _table("int32_t", f"{prefix}_BIAS_MULTIPLIER", (f"2 * {out}", pairs.size), pairs,
                  "{bias, multiplier} per output channel: bias in accumulator units, input zero point folded in; "
                  "output = zero point + round(acc * multiplier / 2^32)",
                  per_line=2)
    return [padded, BuildTables((both,), plain)], both.name


def _conv_layer(index: int, layer: Layer) -> LayerSource:
    conv, point = layer.first, layer.point
    name = f"L{index}"
    constants = [(f"{name}_HEIGHT", conv.height, "input rows"), (f"{name}_WIDTH", conv.width, "input columns"),
                 (f"{name}_CHANNELS", conv.in_channels, "input channels")]
    first_out, conv_tables, first = _conv_part(name, conv, f"{name}_CHANNELS")
    constants.append(first_out)
    tables: list[Table | BuildTables] = list(conv_tables)
    if planar(conv, point):
        tables, pairs = _planar_tables(f"{name}_CONV", conv, first_out[0], conv_tables)
        first = replace(first, planar=pairs)
    second = None
    if point is not None:
        point_out, point_tables, second = _conv_part(name, point, first_out[0])
        constants.append(point_out)
        tables += point_tables
    last = ";" if point or layer.pooled or layer.shortcut else "."
    notes = [_describe(conv) + (";" if point else last)] + ([f"then {_describe(point)}{last}"] if point else [])
    if layer.shortcut:
        what, scales = _describe_shortcut(layer.shortcut)
        notes += [what, scales + (";" if layer.pooled else ".")]
    if layer.pooled:
        notes.append("then a 2x2 max-pool, stride 2, of each pair of output rows as they are made.")
    if layer.stem:
        notes.append("The stem: reads the caller's image, writes the arena.")
    else:
        notes.append(f"Runs {'bottom-up' if layer.bottom_up else 'top-down'} in place.")
    ho, wo = (conv.out_height // 2, conv.out_width // 2) if layer.pooled else (conv.out_height, conv.out_width)
    shape = f"{conv.height}x{conv.width}x{conv.in_channels} -> {ho}x{wo}x{layer.last.out_channels}"
    three = conv.kernel == 3  # else a lone 1x1 conv: the runtime's 1x1 part
    call = f"tm_run_stem(&{name}, image);" if layer.stem else f"tm_run_layer(&{name});"
    return LayerSource(index, "conv", tuple(notes), tuple(constants), tuple(tables), call, shape,
                       padding=conv.padding if three else 0, zero=conv.inq.zero, bottom_up=int(layer.bottom_up),
                       pool=int(layer.pooled), conv=first if three else None, point=second if three else first,
                       shortcut=layer.shortcut)


def _describe_shortcut(s: IntShortcut) -> tuple[str, str]:
    return ("then the residual block's shortcut, ReLU(this + the layer's input) (tm_shortcut): saturate_int8((addend + "
            "this * ma + input * mb) >> shift)",
            f"with ma / 2^shift = {s.aq.scale:.6g} / {s.outq.scale:.6g}, mb / 2^shift = {s.bq.scale:.6g} / "
            f"{s.outq.scale:.6g}; output scale {s.outq.scale:.6g}, zero point {s.outq.zero}")


def _pool_layer(index: int, p: IntPool) -> LayerSource:
    name = f"L{index}"
    constants = ((f"{name}_HEIGHT", p.height, "input rows"), (f"{name}_WIDTH", p.width, "input columns"),
                 (f"{name}_CHANNELS", p.channels, "channels"))
    return LayerSource(index, "pool", ("2x2 max-pool, stride 2, in place.",), constants, (),
                       f"tm_maxpool({name}_HEIGHT, {name}_WIDTH, {name}_CHANNELS);",
                       f"{p.height}x{p.width}x{p.channels} -> {p.height // 2}x{p.width // 2}x{p.channels}")


def pack4(weight: np.ndarray) -> np.ndarray:
    """4-bit weights (int8 classes x n, each in -8..7) packed as tm_head.packed lays them out: per class,
    blocks of 8 in four bytes, byte j holding weight 8b + j in its low nibble and 8b + 4 + j in its high
    one, the last block padded with zeros. Returned as int8 (the bytes' two's complement values)."""
    classes, n = weight.shape
    blocks = -(-n // 8)
    nibbles = np.zeros((classes, blocks * 8), dtype=np.int64)
    nibbles[:, :n] = weight
    nibbles = (nibbles & 0xF).reshape(classes, blocks, 2, 4)  # [class][block][low/high half][byte]
    packed = nibbles[:, :, 0, :] | (nibbles[:, :, 1, :] << 4)
    return packed.reshape(classes, blocks * 4).astype(np.uint8).view(np.int8)


def _head_layer(index: int, h: IntHead) -> LayerSource:
    name = f"L{index}"
    sums = h.weight.astype(np.int64).sum(1)
    bias = h.bias.astype(np.int64) - (1 if h.spatial else h.height * h.width) * h.inq.zero * sums
    classes, channels = (f"{name}_CLASSES", h.classes), (f"{name}_CHANNELS", h.in_channels)
    constants = ((f"{name}_HEIGHT", h.height, "input rows"), (f"{name}_WIDTH", h.width, "input columns"),
                 (channels[0], h.in_channels, "input channels"), (classes[0], h.classes, "scores"))
    weight = h.weight
    if h.bits == 4:
        weight = pack4(h.weight)
        size = (f"{classes[0]} * ((({name}_HEIGHT * {name}_WIDTH * {channels[0]}) + 7) / 8 * 4)", weight.size)
        layout = ("4-bit weights -7..7 [classes][height][width][channels], per-class scales, packed in blocks of 8 "
                  "(tm_head.packed)")
    elif h.spatial:
        size = (f"{classes[0]} * {name}_HEIGHT * {name}_WIDTH * {channels[0]}", h.weight.size)
        layout = "int8 weights [classes][height][width][channels], per-class scales"
    else:
        size, layout = (f"{classes[0]} * {channels[0]}", h.weight.size), "int8 weights [classes][channels], per-class scales"
    tables = (_table("int8_t", f"{name}_WEIGHT", size, weight, layout, per_line=16 if h.spatial else 32),
              _table("int32_t", f"{name}_BIAS", classes, bias, "input zero point folded in"),
              _table("int32_t", f"{name}_MULTIPLIER", classes, h.multiplier, "class weight scale / largest weight scale"),
              _table("int8_t", f"{name}_SHIFT", classes, h.shift, "right shifts"))
    if h.spatial:
        what = (f"head - a linear layer on the whole {h.height}x{h.width}x{h.in_channels} map to {h.classes} scores"
                + (", 4-bit weights." if h.bits == 4 else "."))
    else:
        what = (f"head - global average pool (as an int32 sum over {h.height}x{h.width} pixels) and a 1x1 conv "
                f"{h.in_channels}->{h.classes}.")
    notes = (what, f"Score unit: logit = score * {h.score_unit:.6g}.")
    return LayerSource(index, "head", notes, constants, tables, f"tm_run_head(&{name}, scores);",
                       f"{h.height}x{h.width}x{h.in_channels} -> {h.classes} scores", zero=h.inq.zero,
                       spatial=int(h.spatial), packed=int(h.bits == 4))


def layer_sources(model: IntModel) -> list[LayerSource]:
    """What the generated source holds for each runtime call of the model, in order."""
    out = []
    for index, layer in enumerate(plan(model).layers, start=1):
        if layer.conv is not None:
            out.append(_conv_layer(index, layer))
        elif layer.pool is not None:
            out.append(_pool_layer(index, layer.pool))
        else:
            assert layer.head is not None
            out.append(_head_layer(index, layer.head))
    return out


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("tinymnist.export.c", "templates"), autoescape=False,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def render(model: IntModel, meta: dict) -> tuple[str, str]:
    """(header, source) text. `meta`: model, params, float_accuracy, int8_accuracy, source, flash
    (dict or None), version. Without the accuracies (a build made only to be counted or profiled,
    whose weights were never evaluated) the header leaves out its accuracy line."""
    context = {"meta": {"version": "", "source": "a checkpoint", "model": "?", "params": 0, "flash": None,
                        "float_accuracy": None, "int8_accuracy": None, **meta},
               "header_name": HEADER_NAME, "source_name": SOURCE_NAME, "plan": plan(model), "model": model,
               "head": model.head, "tables_bytes": table_bytes(model), "layers": layer_sources(model),
               "runtime": runtime_source()}
    env = _templates()
    return env.get_template(HEADER_NAME + ".j2").render(context), env.get_template(SOURCE_NAME + ".j2").render(context)


def table_bytes(model: IntModel, simd: bool = True) -> int:
    """Bytes of the const tables (weights, biases, multipliers, shifts, offsets) in a build with SIMD
    (a Cortex-M4's: a planar 3x3 part's weights a byte longer, its {bias, multiplier} pairs and no
    shifts) or without."""
    pairs = {id(layer.first) for layer in plan(model).layers
             if simd and layer.conv is not None and planar(layer.first, layer.point)}
    total = 0
    for op in model.ops:
        if isinstance(op, IntConv) and id(op) in pairs:
            total += op.weight.size + 1 + op.out_channels * (4 + 4)
        elif isinstance(op, IntConv):  # an offset table only where the offsets differ
            total += op.weight.size + op.out_channels * (4 + 4 + 1 + (4 if _affine(op) else 0))
        elif isinstance(op, IntHead):
            total += op.weight.size + op.classes * (4 + 4 + 1)
    return total
