"""Integer quantization of a lowered model (the gemmlowp / TFLite integer scheme).

- Input: the raw uint8 image as stored in the MNIST files, read as int8 q = pixel - 128 with zero
  point round(255 * mean) - 128 and scale 1 / (255 * std): MNIST normalization folded in. The float
  model's mean is 33.33 pixel levels, the integer one 33; the constant difference is folded into the
  first layer's bias (exact everywhere except the zero padding at the image border, where it is off
  by a third of one pixel level times the weight).
- Weights: int8, symmetric, one scale per output channel (max |w| -> 127). Biases: int32, in
  units of input scale x weight scale, so they add straight onto the accumulator.
- Activations: int8 with one scale and zero point per tensor, ranges from training images only: the
  99.99th percentile of a tensor's values over the calibration images (and the 0.01th below), not
  their extremes; values beyond saturate.
- Requantization: y = clamp(offset + round_half_up(acc * m / 2^(32 + shift))), per output channel:
  shift 0 and m = round(real * 2^32) when m keeps 16 or more significant bits (the rounded high
  word of the 64-bit product: one SMMULR on a Cortex-M4), else a 31-bit m, the high word, then a
  rounding shift of 1..30 (one rounding overall, proven in reference.py). So every conv's real
  multiplier must lie below 1/2; ReLU is the clamp at the zero point (or max(acc, 0) before an
  affine BatchNorm).
- Max-pool on int8 (order-preserving); global average pool as an int32 sum; the head rescales its
  int32 results to one common unit so that the scores compare across classes.
- An identity shortcut, ReLU(a + b) (a the body's output, requantized to int8 by its last conv as any
  conv's output, b the block's input): out = clamp(zero + floor(((a - za) ma + (b - zb) mb + 2^(s-1))
  / 2^s), zero, 127), one rounding of both terms at once, with ma / 2^s and mb / 2^s the ratios of
  their scales to the output's (the larger multiplier keeps 20 significant bits), in int32: `quantize`
  proves the runtime's partial sums cannot overflow. Its output range is calibrated like a conv's;
  being a ReLU's, it starts at 0, so its zero point is -128 and the ReLU is the int8 saturation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD, normalize
from tinymnist.export.c.lower import FloatConv, FloatHead, FloatOp, FloatPool, FloatShortcut, forward

INT8_MIN, INT8_MAX = -128, 127
INT32_MAX = 2**31 - 1


class SchemeError(ValueError):
    """A model the integer scheme cannot represent (overflowing accumulators, degenerate scales)."""


@dataclass(frozen=True)
class QuantConfig:
    calibration_images: int = 2048  # training images whose activation ranges set the int8 scales
    seed: int = 0  # which training images (a fixed random sample)
    # Each activation's range: the range_quantile-quantile of its calibration values (and the
    # (1 - range_quantile)-quantile below); 1.0 is min/max. A few extreme values would otherwise set a
    # coarser int8 step for every value of the tensor: the 99.99th percentile cut int8/float
    # disagreements by a fifth over 30 trained models (docs/research.md, round Q1).
    range_quantile: float = 0.9999

    def __post_init__(self) -> None:
        if not 0.5 < self.range_quantile <= 1.0:
            raise ValueError("range_quantile must lie in (0.5, 1]")


@dataclass(frozen=True)
class QParams:
    """real value = scale * (q - zero) for an int8 q."""

    scale: float
    zero: int


@dataclass(frozen=True)
class IntConv:
    depthwise: bool
    kernel: int  # 1 or 3
    padding: int  # 0 or 1; padded taps hold the input zero point (real 0)
    height: int  # input size
    width: int
    in_channels: int
    out_channels: int
    weight: np.ndarray  # int8 (out, k, k, in/groups): the C layout
    bias: np.ndarray  # int32 (out,), accumulator units (input scale x weight scale)
    multiplier: np.ndarray  # int32 (out,), may be negative (an affine BatchNorm with negative gamma)
    shift: np.ndarray  # int8 (out,): 0 (the rounded high word of acc * multiplier) or 1..30 (a rounding shift of the high word)
    offset: np.ndarray  # int32 (out,): output zero point plus the affine shift, in output units
    relu_before: bool  # max(acc, 0) before requantization
    relu_after: bool  # the final clamp is a ReLU
    inq: QParams
    outq: QParams
    weight_scale: np.ndarray  # float64 (out,), documentation only
    stride: int = 1  # 2: the stem, a dense 3x3 conv of the image (padding 1) that the runtime runs on its own

    @property
    def low(self) -> int:
        """Clamp floor: the output zero point under a final ReLU, else -128."""
        return self.outq.zero if self.relu_after else INT8_MIN

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class IntPool:
    height: int  # input size
    width: int
    channels: int


@dataclass(frozen=True)
class IntHead:
    height: int
    width: int
    in_channels: int
    classes: int
    weight: np.ndarray  # int8 (classes, in): in channels, or height x width x channels (spatial)
    bias: np.ndarray  # int32 (classes,), in units of the channel sums (or inputs) x weight scale
    multiplier: np.ndarray  # int32 (classes,): weight scale / largest weight scale
    shift: np.ndarray  # int8 (classes,)
    inq: QParams
    score_unit: float  # logit = score * score_unit
    spatial: bool = False  # a linear layer on the whole map (no global average pool)
    bits: int = 8  # 4: every weight lies in -7..7, stored two to a byte (tm_head.packed)


@dataclass(frozen=True)
class IntShortcut:
    """ReLU(a + b) of int8 tensors: a the output of the op before (the block's body), b the input of op
    `start` (its first), both height x width x channels like the output; see the module docstring."""

    start: int
    height: int
    width: int
    channels: int
    multiplier_a: int  # ma: aq.scale / outq.scale * 2^shift, rounded
    multiplier_b: int  # mb: bq.scale / outq.scale * 2^shift, rounded
    shift: int  # 1..30
    aq: QParams
    bq: QParams
    outq: QParams

    @property
    def addend(self) -> int:
        """Every term of the sum but the two products: the rounding, the zero points (a's, b's and the
        output's, times 2^shift: adding it before the shift is adding it after)."""
        return ((1 << (self.shift - 1)) + (self.outq.zero << self.shift) - self.aq.zero * self.multiplier_a
                - self.bq.zero * self.multiplier_b)


IntOp = IntConv | IntPool | IntHead | IntShortcut


@dataclass(frozen=True)
class IntModel:
    ops: tuple[IntOp, ...]
    inq: QParams  # of the int8 image (pixel - 128)

    @property
    def head(self) -> IntHead:
        head = self.ops[-1]
        assert isinstance(head, IntHead)
        return head


def input_qparams() -> QParams:
    return QParams(1.0 / (255.0 * MNIST_STD), int(round(255.0 * MNIST_MEAN)) - 128)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """real ~= m / 2^shift with |m| in [2^30, 2^31) and 1 <= shift <= 62 (m = 0 for real = 0)."""
    if real == 0.0:
        return 0, 1
    mantissa, exponent = np.frexp(abs(real))  # abs(real) = mantissa * 2^exponent, mantissa in [0.5, 1)
    m = int(round(mantissa * 2**31))
    if m == 2**31:
        m, exponent = m // 2, exponent + 1
    shift = 31 - int(exponent)
    if not 1 <= shift <= 62:
        raise SchemeError(f"a requantization factor of {real:.3g} is outside the integer scheme's range")
    return (m if real > 0 else -m), shift


def conv_multiplier(real: float) -> tuple[int, int]:
    """(m, shift) with real ~= m / 2^(32 + shift), for the convs' high-word requantization.
    shift 0 with m = round(real * 2^32) where that keeps at least 16 significant bits (one rounding
    high-word multiply, SMMULR, on a Cortex-M4); else a 31-bit m and a shift of 1..30."""
    short = int(round(abs(real) * 2**32))
    if real == 0.0 or 2**15 <= short < 2**31:
        return (short if real > 0 else -short), 0
    m, shift = quantize_multiplier(real)
    if shift - 32 < 1:
        raise SchemeError("a layer's requantization factor is 1/2 or more (its output range is tiny next to its "
                          "inputs and weights); the int8 scheme needs it below 1/2")
    return m, shift - 32


SHORTCUT_BITS = 20  # significant bits of the larger shortcut multiplier


def shortcut_multipliers(real_a: float, real_b: float) -> tuple[int, int, int]:
    """(ma, mb, shift) with real_a ~= ma / 2^shift and real_b ~= mb / 2^shift (both reals positive), the
    larger multiplier in [2^19, 2^20]; SchemeError unless 1 <= shift <= 30 and the runtime's int32 sum,
    addend + a * ma + b * mb (a, b as stored: -128..127, or 0..255 in a biased ring row, whose zero
    point is 128 higher), stays within int32 for every input."""
    _, exponent = np.frexp(max(real_a, real_b))  # the larger is mantissa * 2^exponent, mantissa in [0.5, 1)
    shift = SHORTCUT_BITS - int(exponent)
    if not 1 <= shift <= 30:
        raise SchemeError(f"a shortcut's scale ratios ({real_a:.3g}, {real_b:.3g}) are outside the integer scheme's range")
    ma, mb = (int(round(r * 2**shift)) for r in (real_a, real_b))
    # |addend| <= 2^(shift-1) + 128 * 2^shift + 128 ma + 255 mb (b's zero point, biased), |a ma| <= 128 ma,
    # |b mb| <= 255 mb, every partial sum included
    if (1 << (shift - 1)) + (128 << shift) + 256 * ma + 510 * mb > INT32_MAX:
        raise SchemeError("a shortcut's int32 sum could overflow (its output range is tiny next to its inputs')")
    return ma, mb, shift


def activation_qparams(low: float, high: float) -> QParams:
    """Asymmetric int8 parameters covering [low, high] and real zero exactly."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low < 1e-12:
        return QParams(1.0, INT8_MIN)
    scale = (high - low) / 255.0
    zero = int(np.clip(round(INT8_MIN - low / scale), INT8_MIN, INT8_MAX))
    return QParams(scale, zero)


def _weights_per_channel(weight: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """b-bit weights (as int8) and their per-output-channel scales (first axis): the symmetric grid
    max |w| -> 2^(b-1) - 1, the one models/quant.py trains layers of fewer bits on."""
    top = 2 ** (bits - 1) - 1
    flat = weight.reshape(len(weight), -1)
    scale = np.abs(flat).max(1) / top
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.round(weight / scale.reshape(-1, *[1] * (weight.ndim - 1))), -top, top)
    return q.astype(np.int8), scale


def _quantize_conv(op: FloatConv, inq: QParams, outq: QParams, size: tuple[int, int], in_channels: int,
                   input_offset: float) -> IntConv:
    wq, ws = _weights_per_channel(op.weight)
    # A constant added to every real input (the normalization mean rounded to whole pixel levels)
    # is a constant per output channel: fold it into the bias.
    bias = op.bias + input_offset * op.weight.sum((1, 2, 3))
    acc_scale = inq.scale * ws
    bias_q = np.round(bias / acc_scale)
    a = op.scale if op.scale is not None else np.ones(op.out_channels)
    d = op.shift if op.shift is not None else np.zeros(op.out_channels)
    pairs = [conv_multiplier(float(v)) for v in acc_scale * a / outq.scale]
    offset = outq.zero + np.round(d / outq.scale)
    # Worst-case accumulator: every |x - zero| at its largest (255), plus the bias; with room for the
    # C runtime's partial sums, which start from the bias with the zero point folded in (up to
    # 128 sum|w| more) and in the portable depthwise kernel take inputs offset by 128 (up to 256
    # sum|w| more): 512 sum|w| in all.
    worst = np.abs(wq.astype(np.int64)).reshape(len(wq), -1).sum(1) * 512 + np.abs(bias_q)
    if worst.max() > INT32_MAX or np.abs(offset).max() > INT32_MAX:
        raise SchemeError("a layer's int32 accumulator could overflow; its weights or biases are too large")
    return IntConv(
        depthwise=op.depthwise, kernel=op.kernel, padding=op.padding, height=size[0], width=size[1],
        in_channels=in_channels, out_channels=op.out_channels,
        weight=np.ascontiguousarray(wq.transpose(0, 2, 3, 1)), bias=bias_q.astype(np.int32),
        multiplier=np.array([m for m, _ in pairs], dtype=np.int32), shift=np.array([s for _, s in pairs], dtype=np.int8),
        offset=offset.astype(np.int32), relu_before=op.relu_before, relu_after=op.relu_after, inq=inq, outq=outq, weight_scale=ws,
        stride=op.stride)


def _quantize_head(op: FloatHead, inq: QParams, size: tuple[int, int], channels: int) -> IntHead:
    if op.bits not in (4, 8):
        raise SchemeError(f"the head's weights are trained for {op.bits} bits; the runtime stores 8 or 4")
    if op.bits == 4 and not op.spatial:
        raise SchemeError("4-bit head weights only in a linear head on the whole map (head='fc4')")
    wq, ws = _weights_per_channel(op.weight, op.bits)
    # Global average pool: acc_k = sum_c w_q[k, c] * S_c + B_k with S_c = sum over pixels of (q - zero),
    # in units of inq.scale * ws[k] / pixels per logit. Spatial: acc_k = sum_j w_q[k, j] * (q_j - zero)
    # + B_k, in units of inq.scale * ws[k]. Rescale every class to the largest weight scale.
    pixels = 1 if op.spatial else size[0] * size[1]
    if op.spatial and op.weight.shape[1] != size[0] * size[1] * channels:
        raise SchemeError("the linear head's inputs are not the last map's height x width x channels")
    bias_q = np.round(op.bias * pixels / (inq.scale * ws))
    pairs = [quantize_multiplier(float(v)) for v in ws / ws.max()]
    worst = np.abs(wq.astype(np.int64)).sum(1) * 255 * pixels + np.abs(bias_q)
    # the 4-bit kernel's SIMD path sums 16 times the products before dividing (tm_head_pair4)
    if worst.max() * (16 if op.bits == 4 else 1) > INT32_MAX:
        raise SchemeError("the head's int32 accumulator could overflow")
    return IntHead(height=size[0], width=size[1], in_channels=channels, classes=op.weight.shape[0],
                   weight=wq, bias=bias_q.astype(np.int32), multiplier=np.array([m for m, _ in pairs], dtype=np.int32),
                   shift=np.array([s for _, s in pairs], dtype=np.int8), inq=inq,
                   score_unit=float(inq.scale * ws.max() / pixels), spatial=op.spatial, bits=op.bits)


def calibration_index(train_count: int, config: QuantConfig) -> np.ndarray:
    """Which of `train_count` training images calibrate: a fixed random sample, sorted."""
    n = min(config.calibration_images, train_count)
    return np.sort(np.random.default_rng(config.seed).choice(train_count, size=n, replace=False))


def calibration_images(train_images: np.ndarray, config: QuantConfig) -> np.ndarray:
    """A fixed random sample of training images (uint8 N x 28 x 28); never test images."""
    return train_images[calibration_index(len(train_images), config)]


def activation_ranges(ops: list[FloatOp], images: np.ndarray, batch: int = 512,
                      quantile: float = 1.0) -> list[tuple[float, float]]:
    """(low, high) of every op's float output over `images` (uint8 N x 28 x 28): the (1 - quantile)-
    and quantile-quantiles of all its values (exact order statistics; quantile 1 gives min and max)."""
    # Per op, the `keep` largest and smallest values seen so far, sorted from the extreme inward:
    # exact when `keep` is the final rank from either end, known from the first batch on (the values
    # per image times the number of images: every image has the same shape).
    tails: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(ops)
    for start in range(0, len(images), batch):
        x = torch.from_numpy(normalize(images[start:start + batch])).double().unsqueeze(1)
        record: list[torch.Tensor] = []
        with torch.no_grad():
            forward(ops, x, record)
        for i, y in enumerate(record):
            top = bottom = y.reshape(-1)
            keep = _tail_size(quantile, len(images) * (top.numel() // len(x)))
            if (kept := tails[i]) is not None:
                top, bottom = torch.cat([kept[0], top]), torch.cat([kept[1], bottom])
            tails[i] = (torch.topk(top, min(keep, top.numel())).values,
                        -torch.topk(-bottom, min(keep, bottom.numel())).values)
    ranges = []
    for kept in tails:  # the last kept value at each end is the order statistic wanted
        assert kept is not None, "no calibration images"
        ranges.append((float(kept[1][-1]), float(kept[0][-1])))
    return ranges


def _tail_size(quantile: float, n: int) -> int:
    """How many values lie at or beyond the quantile's order statistic, counted from the end: the
    high end is the value of ascending rank ceil(quantile * n) (1-based)."""
    return max(1, n - math.ceil(quantile * n - 1e-9) + 1)


def quantize(ops: list[FloatOp], ranges: list[tuple[float, float]], image_size: tuple[int, int] = (28, 28)) -> IntModel:
    """The integer model for lowered `ops`, given each op's calibrated output range."""
    inq = input_qparams()
    # real input = (q - zero) * scale + input_offset, q = pixel - 128 (see the module docstring)
    input_offset = (inq.zero + 128 - 255.0 * MNIST_MEAN) * inq.scale
    q, size, channels = inq, image_size, 1
    inputs: list[QParams] = []  # of each op, for the shortcuts
    out: list[IntOp] = []
    for op, (low, high) in zip(ops, ranges, strict=True):
        inputs.append(q)
        if isinstance(op, FloatPool):
            out.append(IntPool(size[0], size[1], channels))
            size = (size[0] // 2, size[1] // 2)
        elif isinstance(op, FloatHead):
            out.append(_quantize_head(op, q, size, channels))
        elif isinstance(op, FloatShortcut):
            outq, bq = activation_qparams(low, high), inputs[op.start]
            assert outq.zero == INT8_MIN  # a ReLU's range starts at 0: the runtime's saturation is the ReLU
            ma, mb, shift = shortcut_multipliers(q.scale / outq.scale, bq.scale / outq.scale)
            out.append(IntShortcut(op.start, size[0], size[1], channels, ma, mb, shift, q, bq, outq))
            q = outq
        else:
            outq = activation_qparams(low, high)
            conv = _quantize_conv(op, q, outq, size, channels, input_offset)
            out.append(conv)
            input_offset = 0.0  # consumed by the first conv (a max-pool before it keeps the constant)
            q, size, channels = outq, (conv.out_height, conv.out_width), conv.out_channels
        if min(size) < 1:
            raise SchemeError("the feature map shrinks to nothing before the head")
    return IntModel(tuple(out), inq)
