"""The instruction cost model of the int8 C export (export/c/cost.py) and the Cortex-M4 cycle estimate
(export/c/cycles.py): which kernels a layer's features count, the fit, the shipped coefficients'
accuracy against QEMU on plans outside their fit, and the cycle model on hand-written instruction
sequences whose cycles are counted here by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from tinymnist.data.normalize import normalize
from tinymnist.export.c import cost, cycles, toolchain
from tinymnist.export.c.c_export import quantize_model
from tinymnist.export.c.quantize import QuantConfig
from tinymnist.models.zoo import create_model

# A prediction's largest relative error against QEMU on a plan outside the fit: the held-out worst of
# the shipped fit is 2.1% (Cortex-M4 -Os; the other builds 2% or less; 1.6% on the residual plans), and
# its worst over other draws of the held-out plans about 5%.
TOLERANCE = 0.05
# Not among the calibration's plans (checked below): an input max-pool with widths in fours, channel
# counts not in fours with odd sizes (the portable 1x1 kernel on a Cortex-M4), and shortcuts
# (residual=True) around dense and separable layers.
OUTSIDE = [("M c8 s12 M s16 s16 M s24", False), ("c6 s10 M s12 s9 M s8", False), ("c8 c8 M s12 s12 M s16 s16", True)]

needs_arm = pytest.mark.skipif(not toolchain.have(toolchain.ARM_CC, toolchain.QEMU, cycles.OBJDUMP),
                               reason="arm-none-eabi-gcc / qemu-system-arm not installed (Debian: gcc-arm-none-eabi, "
                                      "libnewlib-arm-none-eabi, qemu-system-arm)")


def plan_model(plan: str, images: np.ndarray | None = None, residual: bool = False) -> nn.Module:
    """PlanNet(plan) as the search builds it, random weights; BatchNorm statistics from `images`."""
    torch.manual_seed(0)
    model = create_model("separable", plan=plan, dw_bn=False, residual=residual)
    if images is not None:
        model.train()
        with torch.no_grad():
            model(torch.from_numpy(normalize(images[:256])).reshape(-1, 1, 28, 28))
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Features: the kernels tm_layer.c chooses


def test_features_count_the_kernels_each_target_runs():
    model = cost.shape_model(plan_model("c8 s16 M s20 s9"))
    m4 = cost.features(model, "cortex-m4", cost.structural_simple)
    m0 = cost.features(model, "cortex-m0", cost.structural_simple)
    # The max-pool runs inside s16's layer (two rows, then a pooled row): its conv parts are counted
    # all the same (a layer with a pool is a conv layer first), and no max-pool layer of its own.
    assert m4["conv_layers"] == m0["conv_layers"] == 4 and m4["pool_calls"] == m0["pool_calls"] == 0
    assert m4["pool_rows"] == m0["pool_rows"] == 14 and m4["image_plain"] == 1 and m4["image_pooled"] == 0
    # Cortex-M4: the first conv (one input channel, even width) and the depthwise parts on planar rows;
    # the 1x1 parts of 8, 16 and 20 input channels four output channels a call (s9: 3 calls, the last
    # overlapping), per pixel and per four input channels.
    assert m4["planar_channel_rows"] == 28 * 8 + 28 * 8 + 14 * 16 + 14 * 20
    assert m4["quad_calls"] == 28 * 4 + 14 * 5 + 14 * 3 and m4["point_pairs"] == 0
    assert m4["quad_inner"] == 28 * 4 * 28 * 2 + 14 * 5 * 14 * 4 + 14 * 3 * 14 * 5
    assert m4["single_channel_rows"] == m4["dense_pairs"] == m4["out_fast"] == m4["biased_fetches"] == 0
    # Cortex-M0: no SIMD, every conv portable (biased planar rows for the 3x3s, tm_conv3_sums per output),
    # every output requantized by tm_output_row (the fast path: shift 0, clamp -128..127); the max-pool
    # a byte at a time.
    assert m0["planar_channel_rows"] == m0["quad_calls"] == m0["plane_fetches"] == 0
    assert m0["single_channel_rows"] == 28 * 8 + 28 * 8 + 14 * 16 + 14 * 20
    assert m0["single_pixels"] == 28 * 28 * 8 + 28 * 28 * 8 + 14 * 14 * 16 + 14 * 14 * 20
    assert m0["point_pairs"] == 28 * 16 * 14 + 14 * 20 * 7 + 14 * 9 * 7
    assert m0["out_fast"] == 28 * 28 * (8 + 8 + 16) + 14 * 14 * (16 + 20 + 20 + 9) and m0["out_general"] == 0
    assert m0["pool_bytes"] == 14 * 14 * 16 and m4["pool_words"] == 14 * 14 * 4
    assert m4["head_macs"] == m0["head_macs"] == 10 * 9
    # the heaviest trips again by the kernels compiled: on the M0 the portable 1x1 and the fused pool,
    # no dense 3x3, no SIMD 1x1, no max-pool layer
    assert m0["out_fast_with_point"] == m0["out_fast_with_pooled"] == m0["out_fast_without_dense"] == m0["out_fast"]
    assert m0["out_fast_without_point"] == m0["out_fast_with_dense"] == m0["out_fast_with_maxpool"] == 0


def test_the_input_pool_and_a_pool_layer_of_its_own():
    m4 = cost.features(cost.shape_model(plan_model("M c8 c8 M s16")), "cortex-m4", cost.structural_simple)
    assert m4["image_pooled"] == 1 and m4["image_plain"] == 0
    # the dense 3x3 conv (interleaved rows) of 8 channels at 14 x 14: 3 x 24 lanes a pixel pair, 6 words each
    assert m4["dense_pairs"] == 14 * 8 * 7 and m4["dense_words"] == 3 * 14 * 8 * 7 * 6 and m4["row_fetches"] == 16
    # the pool after it (fused into the conv, or a layer of its own): 7 pooled rows of 7 pixels, counted once
    assert m4["pool_rows"] == 7 and m4["pool_pixels"] == 49 and m4["pool_words"] == 49 * 2


def test_requantization_with_a_shift_takes_the_general_path():
    model = cost.shape_model(plan_model("c8 s16 M s20"))
    general = cost.features(model, "cortex-m0", lambda op: False)
    assert general["out_fast"] == 0 and general["out_general"] == 28 * 28 * (8 + 8 + 16) + 14 * 14 * (16 + 20)
    m4 = cost.features(model, "cortex-m4", lambda op: False)  # no simple conv: no SIMD kernel on a Cortex-M4
    assert m4["planar_pairs"] == m4["quad_calls"] == 0 and m4["single_channel_rows"] > 0 and m4["point_pairs"] > 0


def test_channels_not_in_fours_run_the_portable_1x1_kernel_on_a_cortex_m4():
    fours = cost.features(cost.shape_model(plan_model("c8 s16 M s20")), "cortex-m4", cost.structural_simple)
    odd = cost.features(cost.shape_model(plan_model("c6 s16 M s20")), "cortex-m4", cost.structural_simple)
    assert fours["point_pairs"] == 0 and fours["quad_inner"] > 0
    assert odd["point_pairs"] == 28 * 16 * 14  # s16 reads 6 channels: portable; s20 reads 16: quads
    assert odd["point_words"] == 28 * 16 * 14 * 1 and odd["point_tail"] == 28 * 16 * 14 * 2  # 6 = one word + 2
    assert odd["quad_calls"] == 14 * 5 and odd["out_fast"] == 28 * 28 * 16


def test_shortcuts_are_counted_in_the_layout_of_their_ring_rows():
    """A shortcut runs per output row of its layer: from interleaved ring rows (around the dense c8) the
    whole row in one run, from planar or biased ones (around the separable s12) a channel at a time."""
    model = cost.shape_model(plan_model("c8 c8 M s12 s12", residual=True))
    plain = cost.shape_model(plan_model("c8 c8 M s12 s12"))
    m4 = cost.features(model, "cortex-m4", cost.structural_simple)
    m0 = cost.features(model, "cortex-m0", cost.structural_simple)
    assert m4["shortcut_rows"] == m0["shortcut_rows"] == 28 + 14
    assert m4["shortcut_runs"] == m0["shortcut_runs"] == 28 + 14 * 12
    assert m4["shortcut_signed"] == 28 * 28 * 8 + 14 * 14 * 12 and m4["shortcut_biased"] == 0  # planar rows
    assert m0["shortcut_signed"] == 28 * 28 * 8 and m0["shortcut_biased"] == 14 * 14 * 12  # biased rows
    # the rest as without the shortcuts (the shortcut costs no ring rows or conv work of its own)
    without = cost.features(plain, "cortex-m4", cost.structural_simple)
    assert {k: v for k, v in m4.items() if not k.startswith("shortcut")} == {k: v for k, v in without.items()
                                                                               if not k.startswith("shortcut")}
    assert cost.predict(model, "cortex-m4", "-O2", simple=cost.structural_simple) > cost.predict(
        plain, "cortex-m4", "-O2", simple=cost.structural_simple)


def test_the_fit_recovers_known_costs():
    rng = np.random.default_rng(0)
    truth = {name: float(rng.integers(1, 50)) for name in cost.FEATURES}
    rows = [{name: float(rng.integers(0, 1000)) for name in cost.FEATURES} for _ in range(3 * len(cost.FEATURES))]
    counts = [sum(truth[k] * v for k, v in row.items()) for row in rows]
    fitted = cost.fit(rows, counts)
    assert all(abs(fitted[k] - truth[k]) < 1e-6 * truth[k] for k in cost.FEATURES)


def test_coefficients_name_their_kernel_sources(tmp_path):
    shipped = cost.load_coefficients()
    assert set(shipped.builds) == {cost.build_name(c, o) for c, o in cost.BUILDS}
    other = cost.Coefficients(shipped.builds, "0123456789abcdef", "2000-01-01", {})
    assert other.stale and "rerun tools/calibrate_mcu_cost.py" in (other.staleness() or "")
    path = tmp_path / "c.json"
    path.write_text(other.to_json())
    assert cost.load_coefficients(path).kernel_hash == "0123456789abcdef"
    with pytest.raises(ValueError, match="no instruction cost model for cortex-m3"):
        cost.predict(cost.shape_model(plan_model("c4 M s4")), "cortex-m3", "-O2")


# ---------------------------------------------------------------------------------------------
# Against QEMU, on plans the coefficients were not fitted on


@pytest.mark.slow
@needs_arm
@pytest.mark.parametrize("plan,residual", OUTSIDE)
def test_predictions_are_close_to_qemu_on_plans_outside_the_fit(plan, residual, mnist):
    coefficients = cost.load_coefficients()
    assert not coefficients.stale, coefficients.staleness()
    fitted = {(p["args"].get("plan"), bool(p["args"].get("residual"))) for p in coefficients.meta["plans"]
              if not p["held_out"]}
    assert (plan, residual) not in fitted
    model = plan_model(plan, mnist.train_images, residual)
    int_model = quantize_model(model, mnist.train_images, QuantConfig(128))
    for cpu, opt in cost.BUILDS:
        measured = cost.measure_instructions(int_model, cpu, opt, mnist.test_images[0])
        # from the quantized model, and from the float model's shapes alone (what the search budgets with)
        for predicted in (cost.predict(int_model, cpu, opt), cost.predict_untrained(model, cpu, opt)):
            assert abs(predicted / measured - 1) <= TOLERANCE, (cpu, opt, predicted, measured)


# ---------------------------------------------------------------------------------------------
# The cycle estimate


def program(lines: list[tuple[int, str, str, str]]) -> dict[int, cycles.Instruction]:
    """Instructions from objdump-like fields: (address, encoding, mnemonic, operands)."""
    return {a: cycles.parse_instruction(a, enc, m, ops) for a, enc, m, ops in lines}


def test_mnemonics_are_classified_with_their_conditions_and_registers():
    p = program([(0, "f813 2b01", "ldrbne.w", "r2, [r3], #1"), (4, "4159", "adcs", "r1, r3"),
                 (6, "d9f0", "bls.n", "0 <x>"), (8, "b570", "push", "{r4, r5, r6, lr}"),
                 (10, "e8bd 80f0", "ldmia.w", "sp!, {r4, r5, r6, r7, pc}"), (14, "fb21 0302", "smlad", "r3, r1, r2, r0"),
                 (18, "bf18", "it", "ne"), (20, "0049", "lsls", "r1, r1, #1"), (22, "fbc0 2301", "smlal", "r2, r3, r0, r1")])
    assert (p[0].mnemonic, p[0].conditional, p[0].kind, p[0].addresses) == ("ldrb", True, "load", {"r3"})
    assert (p[4].mnemonic, p[4].conditional, p[4].kind) == ("adcs", False, "alu")  # flag-setting, not "CS"
    assert (p[6].mnemonic, p[6].conditional, p[6].kind) == ("b", True, "branch")
    assert p[8].registers == 4 and p[10].registers == 5 and p[10].writes_pc
    assert (p[14].kind, p[18].kind, p[20].mnemonic) == ("multiply", "it", "lsls")
    assert p[22].writes == {"r2", "r3"}


def test_cycles_of_a_hand_counted_loop():
    # movs r3, #0 / loop: ldr r2, [r1] / ldr r0, [r1, #4] / adds r3, #1 / str r3, [r1, #8] / adds r1, #4 /
    # ldr r2, [r1] (address just computed: a stall) / cmp r3, #2 / bne loop / pop {r4, pc}
    p = program([(0x0, "2300", "movs", "r3, #0"), (0x2, "680a", "ldr", "r2, [r1, #0]"), (0x4, "6848", "ldr", "r0, [r1, #4]"),
                 (0x6, "3301", "adds", "r3, #1"), (0x8, "608b", "str", "r3, [r1, #8]"), (0xa, "3104", "adds", "r1, #4"),
                 (0xc, "680a", "ldr", "r2, [r1, #0]"), (0xe, "2b02", "cmp", "r3, #2"), (0x10, "d1f7", "bne.n", "2 <loop>"),
                 (0x12, "bd10", "pop", "{r4, pc}")])
    loop = [0x2, 0x4, 0x6, 0x8, 0xa, 0xc, 0xe, 0x10]
    trace = [0x0, *loop, *loop, 0x12]
    est = cycles.estimate(trace, p, cycles.CycleModel(refill=2))
    # movs 1 | ldr 2, ldr 1 (pipelined), adds 1, str 1, adds 1, ldr 2 + 1 (stall), cmp 1, bne taken 1 + 2 = 13 |
    # again, but bne falls through (1): 11 | pop {r4, pc}: 1 + 2 registers + 2 refill = 5
    assert est.cycles == 1 + 13 + 11 + 5 and est.instructions == len(trace)
    assert est.counts == {"alu": 7, "load": 4, "load pipelined": 2, "store": 2, "load/store multiple": 1,
                          "branch taken": 1, "branch not taken": 1}
    assert est.address_stalls == 2 and est.taken_branches == 2
    assert est.at_refill(1) == est.cycles - 2 and est.at_refill(3) == est.cycles + 2


@pytest.mark.slow
@needs_arm
def test_the_trace_holds_exactly_the_instructions_qemu_counts(mnist, tmp_path):
    from tinymnist.export.c import codegen

    int_model = quantize_model(plan_model("M c4 M s8", mnist.train_images), mnist.train_images, QuantConfig(128))
    header, source = codegen.render(int_model, {"model": "m", "params": 0, "float_accuracy": 0, "int8_accuracy": 0})
    (tmp_path / codegen.HEADER_NAME).write_text(header)
    (tmp_path / codegen.SOURCE_NAME).write_text(source)
    target = toolchain.TARGETS["cortex-m4"]
    elf = toolchain.arm_build(tmp_path, target, tmp_path / "m.elf", "-O2")
    counted = int(toolchain.qemu_run(elf, target, mnist.test_images[:1]).instructions[0])
    est = cycles.estimated_cycles(elf, target, mnist.test_images[0])
    # SysTick counts 40 instructions a tick, and the harness subtracts its empty call: within a tick
    assert abs(est.instructions - counted) <= 40 and est.cycles > est.instructions and not est.unknown
    with pytest.raises(ValueError, match="Cortex-M4"):
        cycles.estimated_cycles(elf, toolchain.TARGETS["cortex-m0"], mnist.test_images[0])
