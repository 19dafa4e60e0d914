"""Microcontroller deployment: lowering, the integer scheme, the integer reference, and the generated
C - compiled with the host gcc (every registered model) and cross-compiled for Cortex-M0 / M4 and run
under QEMU - reproducing the reference's int32 scores exactly."""

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from helpers import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tinymnist.data.normalize import normalize
from tinymnist.errors import UserError
from tinymnist.export.c import codegen, reference, toolchain
from tinymnist.export.c.c_export import quantize_model, write_files
from tinymnist.export.c.lower import Unsupported, forward, lower
from tinymnist.export.c.quantize import (
    IntShortcut,
    QuantConfig,
    SchemeError,
    conv_multiplier,
    quantize,
    quantize_multiplier,
    shortcut_multipliers,
)
from tinymnist.models.bundled import pretrained_path
from tinymnist.models.zoo import Residual, create_model, model_kwargs, model_names
from tinymnist.training.checkpoint import load_pretrained, save_atomic

# residual=True: identity shortcuts, each inside the layer of its body, reading the body's input from
# the ring rows of its 3x3 part
RESIDUAL = [("tiny2k", {"residual": True}),  # around separable layers: planar rows with SIMD, biased without
            # around a dense 3x3 conv (interleaved rows); BN after the depthwise conv; odd sizes and channel
            # counts not in fours (the SIMD build's portable 1x1 kernel)
            ("separable", {"plan": "c6 c6 M s10 s10 s10 M s9 s9", "residual": True, "dw_bn": True}),
            ("separable", {"plan": "c8 M s8 s8 M s12 s12", "residual": True})]  # in a layer with a fused pool
EXTRA = [("separable", {"dw_bn": True}), ("separable", {"dw_bn": True, "dw_affine": False}),
         ("stepped", {"plan": "v8 M c12 t10 s16 M c12"}),  # padding 0, a lone 1x1 conv, BN after depthwise
         ("separable", {"plan": "c6 s10 M s12 s9 M s8"}),  # SIMD: channels not in fours, odd counts and widths
         # the image max-pooled as it is loaded; pools fused into the convs before them, at odd sizes too
         ("separable", {"plan": "M c8 s12 M s16 s24 M s32", "dw_bn": False}),
         # a ReLU between the depthwise and pointwise halves: after a BatchNorm without affine parameters
         # (folded into the depthwise weights), or straight after the depthwise conv
         ("tiny1k", {"dw_bn": True, "dw_affine": False, "dw_act": True}), ("tiny2k", {"dw_act": True}),
         # shared weights ("r"): each use folds its own BatchNorm, so the C holds each use's weights
         ("tiny2k", {"plan": "c8 s12 s12 r M s16 s16 r M r"}),
         # the stem (a stride-2 first conv that reads the caller's image): before a separable layer, before a
         # max-pool layer of its own (odd channel counts), before a dense 3x3 conv
         ("mcu-tiny", {"plan": "d8 s12 M s16 s16 M s24 s24"}), ("separable", {"plan": "d5 M s10 M s9", "dw_bn": False}),
         ("separable", {"plan": "d6 c7 M s8", "dw_bn": False}),
         # a linear head on the whole last map (head="fc"): after the stem's plan, and for an odd number of
         # classes (the kernel takes two classes at a time) on a map whose size is not a multiple of four
         ("mcu-tiny", {"plan": "d8 s8 M s16 s16 M s24 s12", "head": "fc"}),
         ("separable", {"plan": "c6 M s10 M s9", "head": "fc", "num_classes": 9, "dw_bn": False}),
         # the linear head with 4-bit weights (head="fc4"): 108 weights a class (13 blocks of 8 and 4 more),
         # 441 for an odd number of classes (a last block of one), 392 (whole blocks only)
         ("mcu-tiny", {"plan": "d8 s8 M s16 s16 M s24 s12", "head": "fc4"}),
         ("separable", {"plan": "c6 M s10 M s9", "head": "fc4", "num_classes": 9, "dw_bn": False}),
         ("separable", {"plan": "c8 M s8 M s8", "head": "fc4", "dw_bn": False}), *RESIDUAL]
MODELS = [(name, {}) for name in model_names()] + EXTRA


def realistic(name: str, args: dict, images: np.ndarray, seed: int = 0) -> nn.Module:
    """A freshly initialised model whose BatchNorm statistics come from real images (so that
    activations have the ranges a trained model's have), in eval mode."""
    torch.manual_seed(seed)
    model = create_model(name, **args)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a plain average over the batches below
            if m.affine:
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        for start in range(0, 1024, 256):
            model(torch.from_numpy(normalize(images[start:start + 256])).unsqueeze(1))
    return model.eval()


@pytest.fixture(scope="module")
def pretrained_int(mnist):
    model = load_pretrained()
    return model, quantize_model(model, mnist.train_images)


@pytest.fixture(scope="module")
def trained_residual(mnist, tmp_path_factory):
    """The default model with shortcuts (residual=True), trained briefly (4,000 images, two epochs:
    about 93%): its checkpoint and the model."""
    from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint
    from tinymnist.training.config import TrainConfig
    from tinymnist.training.trainer import train

    out = tmp_path_factory.mktemp("residual")
    train(TrainConfig(model="separable", model_args={"residual": True}, train_subset=4000, test_subset=500, epochs=2,
                      threads=1, engine="eager"), mnist, out)
    return out / "last.pt", model_from_checkpoint(load_checkpoint(out / "last.pt")).float().eval()


def compile_host(int_model, tmp_path, simd: bool = False):
    header, source = codegen.render(int_model, {"model": "test", "params": 0, "float_accuracy": 0.0, "int8_accuracy": 0.0})
    write_files(tmp_path, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
    return toolchain.host_build(tmp_path, tmp_path / f"host{'-simd' if simd else ''}", simd=simd)


# ---------------------------------------------------------------------------------------------
# Lowering and the integer scheme


@pytest.mark.slow
@pytest.mark.parametrize("name,args", MODELS)
def test_lowered_ops_compute_the_model(name, args, mnist):
    model = realistic(name, args, mnist.train_images).double()
    x = torch.from_numpy(normalize(mnist.test_images[:64])).double().unsqueeze(1)
    with torch.no_grad():
        assert torch.allclose(forward(lower(model), x), model(x), atol=1e-9)


@pytest.mark.parametrize("args,what", [({"act": "silu"}, "SiLU"),
                                       ({"plan": "c1 c8", "residual": True}, "Residual: a shortcut around the input image"),
                                       ({"plan": "c8 d12 M s16"}, "stride-2 conv runs only as the first layer")])
def test_layers_without_an_integer_kernel_are_refused_by_name(args, what):
    with pytest.raises(Unsupported, match=what):
        lower(create_model("separable", **args))


def test_a_stride_2_conv_runs_only_as_the_stem():
    with pytest.raises(Unsupported, match="stride-2 conv runs only as the first layer"):
        lower(create_model("separable", plan="c8 d12 M s16"))
    lone = create_model("separable", plan="d8").eval()  # nothing for the runtime's layer loop to run
    with pytest.raises(SchemeError, match="needs a conv layer after it"):
        codegen.plan(quantize(lower(lone), [(0.0, 1.0)] * 2))


@pytest.mark.slow
@pytest.mark.parametrize("simd", [False, True], ids=["portable", "simd"])
def test_host_c_runs_a_stem_with_general_requantization(simd, mnist, tmp_path):
    """conv -> ReLU -> BatchNorm (the article's order): the stem's outputs take the general requantization
    (a ReLU before an affine BatchNorm), not the simple one trained conv-BN-ReLU stems take."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(6),
                          nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 10, 1), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten())
    with torch.no_grad():
        model[2].weight.uniform_(-1.5, 1.5)  # negative scales too
        model.train()(torch.from_numpy(normalize(mnist.train_images[:512])).unsqueeze(1))
    int_model = quantize_model(model.eval(), mnist.train_images, QuantConfig(512))
    assert int_model.ops[0].stride == 2 and int_model.ops[0].relu_before and not codegen.simple(int_model.ops[0])
    exe = compile_host(int_model, tmp_path, simd)
    images = mnist.test_images[:100]
    assert np.array_equal(toolchain.host_scores(exe, images)[0], reference.scores(int_model, images))


def test_shortcuts_run_only_around_one_runtime_layer():
    body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), Residual(body, nn.ReLU()), nn.Conv2d(8, 10, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(Unsupported, match="only around one 3x3 conv"):
        lower(model)


@settings(max_examples=300)
@given(st.floats(min_value=2.0**-12, max_value=8.0), st.floats(min_value=2.0**-12, max_value=8.0))
def test_shortcut_multipliers_keep_20_bits_and_int32(real_a, real_b):
    """Both ratios ~= m / 2^shift within 2^-20 of the larger; the runtime's worst partial sum (a and b at
    their extremes, b biased by 128, the output zero point -128) within int32, or the pair refused: only
    where both ratios are small, never for a ReLU's sum, whose range is at most the inputs' together (the
    larger ratio is 1/2 or more)."""
    try:
        ma, mb, shift = shortcut_multipliers(real_a, real_b)
    except SchemeError:
        assert max(real_a, real_b) < 2**-3
        return
    assert 2**19 <= max(ma, mb) <= 2**20 and 1 <= shift <= 30
    assert max(abs(ma / 2**shift - real_a), abs(mb / 2**shift - real_b)) <= max(real_a, real_b) * 2.0**-20
    addend = 2 ** (shift - 1) + 128 * 2**shift + 128 * ma + 255 * mb
    assert addend + 128 * ma + 255 * mb <= 2**31 - 1


@given(st.floats(min_value=2.0**-31, max_value=2.0**29, allow_nan=False))
def test_multiplier_is_a_31_bit_mantissa_and_a_shift(real):
    m, shift = quantize_multiplier(real)
    assert 2**30 <= m < 2**31 and 1 <= shift <= 62
    assert abs(m / 2.0**shift - real) <= real * 2.0**-30


@given(st.floats(min_value=2.0**-31, max_value=0.4999, allow_nan=False), st.booleans())
def test_conv_multiplier_takes_shift_0_while_16_bits_remain(real, negative):
    """Shift 0 (one SMMULR on a Cortex-M4) exactly when round(real * 2^32) keeps 16 bits; either way
    m / 2^(32 + shift) is real within 2^-15 of it, with real's sign."""
    m, shift = conv_multiplier(-real if negative else real)
    assert (shift == 0) == (round(real * 2**32) >= 2**15) and 0 <= shift <= 30
    assert abs(abs(m) / 2.0 ** (32 + shift) - real) <= real * 2.0**-15 and (m < 0) == negative


@pytest.mark.parametrize("real", [1e-12, 2.0**31])
def test_multipliers_out_of_range_are_refused(real):
    with pytest.raises(SchemeError):
        quantize_multiplier(real)


@settings(max_examples=300)
@given(st.integers(-(2**31), 2**31 - 1), st.integers(2**15, 2**31 - 1), st.integers(0, 30), st.booleans())
def test_high_word_requantization_is_one_rounding(acc, m, s, negative):
    """(((acc * m) >> 32) + 2^(s-1)) >> s (shift s >= 1), or (acc * m + 2^31) >> 32 (SMMULR, shift 0),
    == floor(acc * m / 2^(32+s) + 1/2), exactly."""
    m = -m if negative else m
    a, mult, shift = np.array([acc]), np.array([m]), np.array([s], dtype=np.int8)
    exact = (acc * m + 2 ** (31 + s)) // 2 ** (32 + s)  # Python integers: no overflow, flooring
    as_c = ((acc * m + 2**31) >> 32) if s == 0 else (((acc * m) >> 32) + 2 ** (s - 1)) >> s  # tm_output's steps
    assert int(reference.requantize_high(a, mult, shift)[0]) == exact == as_c


def test_a_requantization_factor_the_scheme_cannot_hold_is_refused(mnist):
    model = realistic("reference", {}, mnist.train_images)
    ops = lower(model)
    from tinymnist.export.c.quantize import activation_ranges, quantize
    ranges = activation_ranges(ops, mnist.train_images[:256])
    ranges[0] = (0.0, 1e-4)  # an output range far too small for its inputs and weights
    with pytest.raises(SchemeError, match="below 1/2"):
        quantize(ops, ranges)


@pytest.mark.parametrize("quantile", [1.0, 0.9999, 0.999, 0.9])
def test_activation_ranges_are_the_quantiles_of_the_calibration_values(mnist, quantile):
    """Exact order statistics (kept as running top-k across batches), against a full sort: the high
    end is the value of ascending rank ceil(q n), the low end its mirror; q = 1 gives min and max."""
    import math

    from tinymnist.data.normalize import normalize
    from tinymnist.export.c.lower import forward
    from tinymnist.export.c.quantize import activation_ranges

    ops = lower(realistic("tiny1k", {}, mnist.train_images))
    images = mnist.train_images[:300]
    ranges = activation_ranges(ops, images, batch=128, quantile=quantile)  # three batches, the last short
    record: list[torch.Tensor] = []
    with torch.no_grad():
        forward(ops, torch.from_numpy(normalize(images)).double().unsqueeze(1), record)
    for (low, high), y in zip(ranges, record, strict=True):
        values = np.sort(y.numpy().ravel())
        rank = math.ceil(quantile * len(values) - 1e-9)
        assert (low, high) == (values[len(values) - rank], values[rank - 1])
    assert all(low >= lo and high <= hi for (low, high), (lo, hi) in
               zip(ranges, activation_ranges(ops, images, quantile=1.0), strict=True))


def test_the_range_quantile_is_checked():
    with pytest.raises(ValueError, match="range_quantile"):
        QuantConfig(range_quantile=0.4)
    with pytest.raises(ValueError, match="range_quantile"):
        QuantConfig(range_quantile=1.5)


def test_calibration_never_sees_test_images(mnist, monkeypatch):
    from tinymnist.export.c import c_export
    seen = []
    real = c_export.activation_ranges
    monkeypatch.setattr(c_export, "activation_ranges", lambda ops, images, **k: seen.append(images) or real(ops, images, **k))
    quantize_model(load_pretrained(), mnist.train_images, QuantConfig(calibration_images=300))
    train_rows = {row.tobytes() for row in mnist.train_images.reshape(len(mnist.train_images), -1)}
    assert len(seen) == 1 and len(seen[0]) == 300
    assert all(img.tobytes() in train_rows for img in seen[0].reshape(300, -1))


@pytest.mark.slow
def test_int8_pretrained_model_stays_within_a_tenth_of_a_point(pretrained_int, mnist):
    """On 2,000 test images: int8 accuracy within 0.1 points of float (the benchmark checks all 10,000)."""
    from tinymnist.evaluation.logits import logits_for
    model, int_model = pretrained_int
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    float_pred = logits_for(model, torch.from_numpy(np.array(images))).argmax(1).numpy()
    int_pred = reference.predict(int_model, images)
    assert abs((float_pred == labels).mean() - (int_pred == labels).mean()) <= 0.001
    assert (float_pred == int_pred).mean() >= 0.997


@pytest.mark.slow
def test_int8_residual_model_stays_close_to_float(trained_residual, mnist):
    """Shortcuts quantized (the sum of two int8 tensors of their own scales, rounded once): on 2,000 test
    images int8 accuracy within half a point of float, 99% of the predictions the same."""
    from tinymnist.evaluation.logits import logits_for
    _, model = trained_residual
    int_model = quantize_model(model, mnist.train_images)
    assert sum(isinstance(op, IntShortcut) for op in int_model.ops) == 3
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    float_pred = logits_for(model, torch.from_numpy(np.array(images))).argmax(1).numpy()
    int_pred = reference.predict(int_model, images)
    assert (float_pred == labels).mean() > 0.85  # trained enough for the comparison to mean something
    assert abs((float_pred == labels).mean() - (int_pred == labels).mean()) <= 0.005
    assert (float_pred == int_pred).mean() >= 0.99


def test_scores_are_scaled_logits(pretrained_int, mnist):
    from tinymnist.evaluation.logits import logits_for
    model, int_model = pretrained_int
    logits = logits_for(model, torch.from_numpy(np.array(mnist.test_images[:200]))).numpy()
    scores = reference.scores(int_model, mnist.test_images[:200]) * int_model.head.score_unit
    # Activations beyond the calibrated ranges (the 99.99th percentile) saturate, so a few images'
    # scores may stray further; the scale itself shows in all but the extreme ones.
    error = np.abs(scores - logits).max(1)
    assert np.percentile(error, 95) < 0.05 * np.abs(logits).max() and (scores.argmax(1) == logits.argmax(1)).mean() > 0.98


# ---------------------------------------------------------------------------------------------
# Generated C on the host


@pytest.mark.slow
@pytest.mark.parametrize("simd", [False, True], ids=["portable", "simd"])
@pytest.mark.parametrize("name,args", MODELS)
def test_host_c_reproduces_the_reference_bit_for_bit(name, args, simd, mnist, tmp_path):
    """Both kernel sets: the portable C, and the SIMD kernels with the DSP instructions emulated."""
    int_model = quantize_model(realistic(name, args, mnist.train_images), mnist.train_images, QuantConfig(512))
    exe = compile_host(int_model, tmp_path, simd)  # -std=c99 -Wall -Wextra -pedantic -Werror
    images = mnist.test_images[:150]
    scores, digits = toolchain.host_scores(exe, images, int_model.head.classes)
    expected = reference.scores(int_model, images)
    assert np.array_equal(scores, expected)
    assert np.array_equal(digits, expected.argmax(1))


@pytest.mark.slow
@pytest.mark.parametrize("simd", [False, True], ids=["portable", "simd"])
def test_host_c_of_the_pretrained_model_on_a_sample(pretrained_int, simd, mnist, tmp_path):
    _, int_model = pretrained_int
    exe = compile_host(int_model, tmp_path, simd)
    images = mnist.test_images[np.random.default_rng(1).choice(10000, 1000, replace=False)]
    scores, _ = toolchain.host_scores(exe, images)
    assert np.array_equal(scores, reference.scores(int_model, images))


def test_the_pretrained_model_runs_on_the_simd_kernels(pretrained_int):
    """Every conv of the default model qualifies for the SIMD kernels (shift 0, no ReLU before BN),
    so a Cortex-M4 build runs none of it on the portable fallbacks."""
    convs = [op for op in pretrained_int[1].ops if hasattr(op, "kernel")]
    assert convs and all(codegen.simple(op) for op in convs)
    assert all(op.in_channels % 4 == 0 for op in convs if op.kernel == 1)


def test_generated_c_is_self_contained(pretrained_int, tmp_path):
    header, source = codegen.render(pretrained_int[1], {"model": "m", "params": 1, "float_accuracy": 1, "int8_accuracy": 1})
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    assert re.findall(r"#include\s*[<\"]([^>\"]+)", code) == ["stddef.h", "stdint.h", codegen.HEADER_NAME]
    for word in ("float", "double", "malloc", "free", "printf"):
        assert not re.search(rf"\b{word}\b", code), word
    assert "int tinymnist_predict(const uint8_t image[784]);" in header
    assert "void tinymnist_scores(const uint8_t image[784], int32_t scores[10]);" in header
    assert len(re.findall(r"^static const \w+ \w+\[", code, flags=re.M)) > 30  # the tables: const, in flash
    # One translation unit: the two API functions are its only external symbols, and its only RAM the
    # runtime's three static buffers (-fno-pic: position-independent code would put the layer
    # descriptors, which hold pointers, in relocated data instead of read-only data).
    write_files(tmp_path, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
    obj = tmp_path / "model.o"
    subprocess.run(["gcc", *toolchain.WARNINGS, "-O2", "-fno-pic", "-c", str(tmp_path / codegen.SOURCE_NAME), "-o", str(obj)],
                   check=True)
    nm = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout
    symbols = [line.split()[-2:] for line in nm.splitlines()]
    assert sorted(name for kind, name in symbols if kind.isupper() and kind != "U") == ["tinymnist_predict",
                                                                                       "tinymnist_scores"]
    assert {name for kind, name in symbols if kind in "bBdDcC"} == {"tm_arena", "tm_ring", "tm_mid"}


def test_in_place_plan_fits_the_buffers(pretrained_int):
    plan = codegen.plan(pretrained_int[1])
    assert plan.arena_bytes == 28 * 28 * 16  # the largest tensor: 16 channels at 28 x 28
    assert plan.ram_bytes < 16 * 1024
    # A build compiles only the kernels the model runs: with SIMD no portable conv kernel at all.
    assert plan.kernels_simd == codegen.K_PLANAR3 | codegen.K_LANES | codegen.K_MAXPOOL


def test_pools_are_fused_where_that_saves_static_ram(mnist):
    """c4 at 28 x 28 then a pool: fused, its 28 x 28 x 4 output never exists; likewise s12 then M.
    The arena is then the largest pooled or unpooled-and-kept tensor (14 x 14 x 8)."""
    model = realistic("separable", {"plan": "c4 M s8 s12 M s16", "dw_bn": False}, mnist.train_images)
    plan = codegen.plan(quantize_model(model, mnist.train_images, QuantConfig(256)))
    assert [(layer.pooled, layer.pool is not None) for layer in plan.layers] == [(True, True), (False, False), (True, True),
                                                                               (False, False), (False, False)]
    assert plan.arena_bytes == 14 * 14 * 8 and plan.pool_bytes == 2 * 14 * 12
    assert plan.ram_bytes < 28 * 28 * 4 + plan.ring_bytes + plan.mid_bytes  # the unfused arena alone


def test_a_shortcut_needs_no_buffer_of_its_own(mnist):
    """A shortcut runs inside the layer of its body, on each output row while the ring still holds the
    input row: the static RAM is the plan's without shortcuts, and a pool can still be fused into the
    layer (layer 3: s8's shortcut, then the pool)."""
    plain, residual = (codegen.plan(quantize_model(realistic("separable", {"plan": "c8 M s8 s8 M s12 s12", "residual": r},
                                                             mnist.train_images), mnist.train_images, QuantConfig(256)))
                       for r in (False, True))
    assert residual.ram_bytes == plain.ram_bytes
    assert [(layer.shortcut is not None, layer.pooled) for layer in residual.layers] == [
        (False, True), (True, False), (True, True), (False, False), (True, False), (False, False)]
    assert residual.kernels_simd & residual.kernels_portable & codegen.K_SHORTCUT
    assert not (plain.kernels_simd | plain.kernels_portable) & codegen.K_SHORTCUT


def test_a_first_max_pool_is_done_as_the_image_is_loaded(mnist):
    model = realistic("separable", {"plan": "M c8 s12", "dw_bn": False}, mnist.train_images)
    plan = codegen.plan(quantize_model(model, mnist.train_images, QuantConfig(256)))
    assert plan.input_pool and plan.layers[0].first.height == 14 and plan.arena_bytes == 14 * 14 * 12


# ---------------------------------------------------------------------------------------------
# Cross-compiled, bare metal under QEMU

ARM_TOOLS = (toolchain.ARM_CC, toolchain.ARM_SIZE, toolchain.QEMU)
needs_arm = pytest.mark.skipif(not toolchain.have(*ARM_TOOLS),
                               reason="arm-none-eabi-gcc / qemu-system-arm not installed (Debian: gcc-arm-none-eabi, "
                                      "libnewlib-arm-none-eabi, qemu-system-arm)")


@pytest.mark.slow
@needs_arm
@pytest.mark.parametrize("cpu", sorted(toolchain.TARGETS))
@pytest.mark.parametrize("name", ["separable", "reference", "odd", "wide", "pooled", "residual", "residual-pooled", "stem",
                                  "fc4"])
def test_cortex_m_under_qemu_gives_the_same_scores(cpu, name, pretrained_int, mnist, tmp_path):
    if name == "separable":
        int_model = pretrained_int[1]
    else:
        # "odd": the SIMD kernels' edge cases (channels not in fours, odd widths) on the real instructions;
        # "wide": ring slots too far apart for the Thumb-2 3x3 routine's LDR offsets (64 channels at
        # 28 x 28): its C specification runs on the M4 instead; "pooled": the pooled image load and
        # fused pools; "residual": shortcuts around dense and separable layers (interleaved rows, and planar
        # rows on the M4, biased ones on the M0), odd sizes; "residual-pooled": one in a layer with a fused pool;
        # "stem": a stride-2 first conv reading the caller's image, and a linear head; "fc4": that head with
        # 4-bit weights (whole blocks and a last one of four).
        name, args = {"odd": ("separable", EXTRA[3][1]), "pooled": ("separable", EXTRA[4][1]),
                      "wide": ("separable", {"plan": "c8 s64 s16 M s16"}), "residual": RESIDUAL[1],
                      "residual-pooled": RESIDUAL[2],
                      "stem": ("mcu-tiny", {"plan": "d8 s8 M s16 s16 M s24 s12", "head": "fc"}),
                      "fc4": ("mcu-tiny", {"plan": "d8 s8 M s16 s16 M s24 s12", "head": "fc4"})}.get(name, (name, {}))
        int_model = quantize_model(realistic(name, args, mnist.train_images), mnist.train_images, QuantConfig(512))
    header, source = codegen.render(int_model, {"model": name, "params": 0, "float_accuracy": 0, "int8_accuracy": 0})
    write_files(tmp_path, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
    target = toolchain.TARGETS[cpu]
    elf = toolchain.arm_build(tmp_path, target, tmp_path / "model.elf")  # -Werror, no libc: -nostdlib -lgcc
    images = mnist.test_images[-12:]
    run = toolchain.qemu_run(elf, target, images)
    assert np.array_equal(run.scores, reference.scores(int_model, images))
    assert (run.instructions > 100_000).all() and run.stack_bytes > 0


@needs_arm
def test_model_object_has_no_floating_point_and_fits(pretrained_int, tmp_path):
    header, source = codegen.render(pretrained_int[1], {"model": "m", "params": 1, "float_accuracy": 1, "int8_accuracy": 1})
    write_files(tmp_path, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
    for cpu, target in toolchain.TARGETS.items():
        obj = tmp_path / f"{cpu}.o"
        subprocess.run([toolchain.ARM_CC, *target.flags, *toolchain.WARNINGS, "-Os", "-c", str(tmp_path / codegen.SOURCE_NAME),
                        "-o", str(obj)], check=True)
        undefined = subprocess.run([shutil.which("arm-none-eabi-nm") or "arm-none-eabi-nm", "-u", str(obj)],
                                   capture_output=True, text=True, check=True).stdout.split()
        symbols = {s for s in undefined if s != "U"}
        # Only the compiler's own helpers: 64-bit multiply/shifts (Cortex-M0), block copy and fill.
        assert symbols <= {"__aeabi_lmul", "__aeabi_lasr", "__aeabi_llsl", "memcpy", "memset"}, symbols
        size = toolchain.model_size(tmp_path, target)
        assert size.flash <= 12 * 1024 and size.bss == codegen.plan(pretrained_int[1]).ram_bytes


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.mark.slow
def test_export_c_cli_writes_both_files(tmp_path, data_dir):
    out = tmp_path / "mcu"
    result = run_cli("export", pretrained_path(), "--format", "c", "--out", out, "--data-dir", data_dir,
                     "--calibration", "256")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [codegen.SOURCE_NAME, codegen.HEADER_NAME]
    header = (out / codegen.HEADER_NAME).read_text()
    assert re.search(r"float 99\.\d\d%, int8 99\.\d\d%", header) and "4,910 parameters" in header
    assert "separable" in header and "RAM" in header and "flash" in header


@pytest.mark.slow
def test_export_c_cli_exports_a_residual_model(trained_residual, tmp_path, data_dir, mnist):
    """A residual model's checkpoint through `tinymnist export --format c`: its three shortcuts in the
    source, which built on the host gives the integer reference's scores."""
    ckpt, model = trained_residual
    out = tmp_path / "mcu"
    result = run_cli("export", ckpt, "--format", "c", "--out", out, "--data-dir", data_dir, "--calibration", "256",
                     "--range-quantile", "1")  # min/max ranges, as the expected scores below
    assert result.returncode == 0, result.stderr
    header, source = (out / codegen.HEADER_NAME).read_text(), (out / codegen.SOURCE_NAME).read_text()
    assert re.search(r"float \d\d\.\d\d%, int8 \d\d\.\d\d%", header) and "flash" in header
    assert source.count(".shortcut = {") == 3
    exe = toolchain.host_build(out, tmp_path / "host")
    images = mnist.test_images[:200]
    expected = reference.scores(quantize_model(model, mnist.train_images, QuantConfig(256, range_quantile=1.0)), images)
    assert np.array_equal(toolchain.host_scores(exe, images)[0], expected)
    for bad in ("0.5", "1.01", "x"):
        refused = run_cli("export", ckpt, "--format", "c", "--out", tmp_path / "no", "--range-quantile", bad)
        assert refused.returncode == 2 and "--range-quantile" in refused.stderr and "Traceback" not in refused.stderr
        assert not (tmp_path / "no").exists()


def _silu_checkpoint(path):
    model = create_model("separable", act="silu")
    save_atomic({"model_name": "separable", "model_args": model_kwargs("separable", {"act": "silu"}),
                 "model": model.state_dict()}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unsupported layer", "out is a file", "corrupt checkpoint"])
def test_export_c_bad_input_is_one_line_and_writes_nothing(case, tmp_path, data_dir):
    ckpt, out = pretrained_path(), tmp_path / "out"
    if case == "unsupported layer":
        ckpt = _silu_checkpoint(tmp_path / "silu.pt")
    elif case == "out is a file":
        out.write_text("keep me")
    else:
        ckpt = tmp_path / "broken.pt"
        ckpt.write_bytes(b"\x00" * 100)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = run_cli("export", ckpt, "--format", "c", "--out", out, "--data-dir", data_dir, "--calibration", "64")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert set(after) - set(before) <= {"out"} and not any(out.iterdir() if out.is_dir() else [])
    if case == "unsupported layer":
        assert "SiLU" in result.stderr
    if case == "out is a file":
        assert out.read_text() == "keep me"


def test_a_failed_write_keeps_the_files_already_there(tmp_path, monkeypatch):
    (tmp_path / "b.c").write_text("an earlier export")

    def fail(self, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_text", fail)
    with pytest.raises(UserError, match="No space left"):
        write_files(tmp_path, {"a.h": "x", "b.c": "y"})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.c"] and (tmp_path / "b.c").read_text() == "an earlier export"
