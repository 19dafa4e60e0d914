"""The integer reference: the quantized model run with numpy integer arithmetic only. It defines
the results; the generated C must reproduce its int32 scores exactly.

Activations are int8 N x H x W x C (channels last, as in the C code); a conv's sums int32, as the C
code's (`quantize` proved they cannot overflow), its bias, requantization and the head in int64.
Images go through in batches of 32, whose tensors stay in the CPU's caches.
"""

from __future__ import annotations

import numpy as np

from tinymnist.export.c.quantize import INT8_MAX, IntConv, IntHead, IntModel, IntPool, IntShortcut


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """round_half_up(acc * m / 2^shift) per channel (last axis): (acc * m + 2^(shift-1)) >> shift,
    an arithmetic (flooring) shift, as in the C code's head."""
    shift = shift.astype(np.int64)
    return (acc.astype(np.int64) * multiplier.astype(np.int64) + (np.int64(1) << (shift - 1))) >> shift


def requantize_high(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The convs' requantization: round_half_up(acc * m / 2^(32+s)) = (p + 2^(31+s)) >> (32+s) with
    p = acc * m, as the C code computes it. Shift 0: the rounded high word (SMMULR). Shift s >= 1:
    hi = p >> 32, the plain high word, then (hi + 2^(s-1)) >> s, which is the same value:
    floor((floor(p / 2^32) + 2^(s-1)) / 2^s) = floor((p + 2^(31+s)) / 2^(32+s)), since adding an
    integer commutes with floor and nested floors of divisions compose."""
    shift = shift.astype(np.int64)
    return (acc.astype(np.int64) * multiplier.astype(np.int64) + (np.int64(1) << (31 + shift))) >> (32 + shift)


def conv(x: np.ndarray, op: IntConv) -> np.ndarray:
    """N x H x W x Cin int8 -> N x Ho x Wo x Cout int8."""
    # int32 sums (half the bytes of int64 to move)
    xz = x.astype(np.int32) - np.int32(op.inq.zero)  # real zero is 0 here, so zero padding is exact
    if op.padding:
        xz = np.pad(xz, ((0, 0), (op.padding,) * 2, (op.padding,) * 2, (0, 0)))
    ho, wo, k, s = op.out_height, op.out_width, op.kernel, op.stride
    w = op.weight.astype(np.int32)  # (out, k, k, in/groups)
    acc = np.zeros((len(x), ho, wo, op.out_channels), dtype=np.int32)
    # A dense tap's channel sums as a float64 matrix product (BLAS; numpy's integer matmul has none):
    # exact, every partial sum being an integer below 255 * 127 * 255 channels, far under 2^53.
    xf = xz.astype(np.float64) if not op.depthwise else None
    for dy in range(k):
        for dx in range(k):
            taps = (slice(None), slice(dy, dy + (ho - 1) * s + 1, s), slice(dx, dx + (wo - 1) * s + 1, s))
            if op.depthwise:
                acc += xz[taps] * w[:, dy, dx, 0]
            else:
                acc += (xf[taps] @ w[:, dy, dx, :].T.astype(np.float64)).astype(np.int32)
    acc = acc.astype(np.int64) + op.bias
    if op.relu_before:
        acc = np.maximum(acc, 0)
    y = op.offset + requantize_high(acc, op.multiplier, op.shift)
    return np.clip(y, op.low, INT8_MAX).astype(np.int8)


def maxpool(x: np.ndarray, op: IntPool) -> np.ndarray:
    h, w = op.height // 2 * 2, op.width // 2 * 2
    x = x[:, :h, :w, :]
    return np.maximum(np.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]), np.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


def shortcut(a: np.ndarray, b: np.ndarray, op: IntShortcut) -> np.ndarray:
    """ReLU(a + b): a the body's int8 output, b the block's int8 input, both N x H x W x C; the sum of
    both terms rounded once, (t + 2^(shift-1)) >> shift (flooring) with t = (a - za) ma + (b - zb) mb."""
    t = (a.astype(np.int64) - op.aq.zero) * op.multiplier_a + (b.astype(np.int64) - op.bq.zero) * op.multiplier_b
    y = op.outq.zero + ((t + (1 << (op.shift - 1))) >> op.shift)
    return np.clip(y, op.outq.zero, INT8_MAX).astype(np.int8)  # the ReLU: the output's zero point is -128


def head(x: np.ndarray, op: IntHead) -> np.ndarray:
    """N x H x W x C int8 -> N x classes int32 scores (logit = score * op.score_unit)."""
    if op.spatial:  # a linear layer on the flattened map (height, width, channel)
        sums = (x.astype(np.int64) - op.inq.zero).reshape(len(x), -1)
    else:
        sums = (x.astype(np.int64) - op.inq.zero).sum((1, 2))  # global average pool, as a sum
    acc = sums @ op.weight.astype(np.int64).T + op.bias
    return requantize(acc, op.multiplier, op.shift).astype(np.int32)


def image_to_int8(images: np.ndarray) -> np.ndarray:
    """uint8 N x 28 x 28 (0 = background, 255 = ink) -> int8 N x 28 x 28 x 1 (pixel - 128)."""
    if images.dtype != np.uint8:
        raise ValueError("images must be uint8, as stored in the MNIST files")
    return (images.astype(np.int16) - 128).astype(np.int8)[..., None]


def scores(model: IntModel, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """int32 scores N x classes for uint8 images N x 28 x 28."""
    starts = {op.start for op in model.ops if isinstance(op, IntShortcut)}
    out = []
    for start in range(0, len(images), batch):
        x = image_to_int8(images[start:start + batch])
        blocks: dict[int, np.ndarray] = {}  # the input of each shortcut's first op
        for i, op in enumerate(model.ops):
            if i in starts:
                blocks[i] = x
            if isinstance(op, IntShortcut):
                x = shortcut(x, blocks[op.start], op)
            elif isinstance(op, IntConv):
                x = conv(x, op)
            elif isinstance(op, IntPool):
                x = maxpool(x, op)
            else:
                x = head(x, op)
        out.append(x)
    return np.concatenate(out) if out else np.zeros((0, model.head.classes), dtype=np.int32)


def predict(model: IntModel, images: np.ndarray) -> np.ndarray:
    """The digit per image: the first class with the highest score (as the C code picks it)."""
    return scores(model, images).argmax(1)
