"""Weights trained for 4 bits (models/quant.py) and how the int8 C export stores them (codegen.pack4)."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from tinymnist.export.c import codegen, reference
from tinymnist.export.c.c_export import quantize_model
from tinymnist.export.c.quantize import QuantConfig
from tinymnist.models import layers as L
from tinymnist.models.fold import fold_batchnorm
from tinymnist.models.quant import QuantLinear, quant_layers, quantized, rounded_in_place
from tinymnist.models.zoo import PlanNet


def test_rounded_weights_lie_on_each_rows_grid_of_15_levels():
    torch.manual_seed(0)
    w = torch.randn(6, 40)
    w[5] = 0.0
    q = quantized(w, 4)
    for row, qrow in zip(w[:5], q[:5], strict=True):
        step = row.abs().max() / 7
        levels = qrow / step
        assert torch.allclose(levels, levels.round(), atol=1e-5) and levels.abs().max().round() == 7
        assert (qrow - row).abs().max() <= step / 2 + 1e-6
    assert torch.equal(q[5], w[5])


def test_the_gradient_passes_straight_through_the_rounding():
    torch.manual_seed(0)
    layer = QuantLinear(12, 3)
    x = torch.randn(4, 12)
    layer(x).sum().backward()
    assert torch.allclose(layer.weight.grad, torch.ones(3, 1) * x.sum(0))  # d/dW of sum(x W^T): as unrounded
    assert torch.allclose(layer(x), x @ quantized(layer.weight, 4).T + layer.bias)
    with pytest.raises(ValueError, match="weight_bits"):
        QuantLinear(4, 2, weight_bits=9)


def test_folding_gives_a_plain_linear_layer_with_the_rounded_weights_and_draws_nothing():
    torch.manual_seed(0)
    model = PlanNet("c4 M s8 M s8", dw_bn=False, head="fc4").eval()
    assert [layer.bits for layer in L.describe(model) if isinstance(layer, L.Linear)] == [4]
    state = torch.get_rng_state()
    folded, _ = fold_batchnorm(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert type(folded[-1]) is nn.Linear
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_rounding_in_place_puts_the_float_weights_back():
    model = PlanNet("c4 M s8 M s8", dw_bn=False, head="fc4")
    fc = model.net[-1]
    before = fc.weight.detach().clone()
    with rounded_in_place(quant_layers(model)):
        assert torch.equal(fc.weight, quantized(before, 4))
    assert torch.equal(fc.weight, before)


def test_pack4_lays_out_blocks_of_eight_in_four_bytes():
    weights = np.array([[1, -1, 2, -2, 7, -7, 0, 3, -8, 5]], dtype=np.int8)  # a whole block and two more
    packed = codegen.pack4(weights).view(np.uint8)
    # byte j: weight j in the low nibble, weight 4 + j in the high one; the last block padded with zeros
    assert packed.tolist() == [[0x71, 0x9F, 0x02, 0x3E, 0x08, 0x05, 0x00, 0x00]]


def test_a_4_bit_head_is_stored_in_half_the_bytes_and_scores_as_the_reference(mnist):
    torch.manual_seed(0)
    images = mnist.train_images[:256]
    tables = {}
    for head in ("fc", "fc4"):
        torch.manual_seed(0)
        model = PlanNet("d8 s8 M s16 M s12", dw_bn=False, head=head).eval()
        int_model = quantize_model(model, images, QuantConfig(256))
        assert np.abs(int_model.head.weight).max() <= (7 if head == "fc4" else 127)
        _, source = codegen.render(int_model, {"model": head, "params": 0, "float_accuracy": 0, "int8_accuracy": 0})
        tables[head] = source
        if head == "fc4":  # the integer model computes with the rounded weights the float model uses
            scores = reference.scores(int_model, mnist.test_images[:500])
            logits = model(torch.from_numpy(mnist.test_images[:500].copy()).unsqueeze(1).float()
                           .div(255).sub(0.1307).div(0.3081))
            agree = (scores.argmax(1) == logits.argmax(1).numpy()).mean()
            assert agree > 0.9
    # 3 x 3 x 12 = 108 weights a class: 14 blocks of 8, 56 bytes, against 108
    assert re.search(r"(L\d+)_WEIGHT\[\1_CLASSES \* \(\(\(\1_HEIGHT \* \1_WIDTH \* \1_CHANNELS\) \+ 7\) / 8 \* 4\)\]",
                     tables["fc4"])
    assert ".packed = 1" in tables["fc4"] and ".packed = 0" in tables["fc"]
