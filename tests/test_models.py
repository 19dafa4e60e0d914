import json

import pytest
import torch
from helpers import run_cli
from torch import nn

from tinymnist.models.summary import summarize
from tinymnist.models.zoo import DEFAULT_MODEL, count_parameters, create_model, model_names, parse_plan


@pytest.mark.parametrize("name", model_names())
def test_model_contract(name):
    torch.manual_seed(0)
    model = create_model(name)
    torch.manual_seed(0)
    again = create_model(name)  # same seed, same initial weights
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(5, 1, 28, 28)
    out = model(x)
    assert out.shape == (5, 10)
    assert torch.isfinite(out).all()
    assert count_parameters(model) < 5000
    model.eval()
    assert model(x[:1]).shape == (1, 10)


def test_default_model_is_registered():
    assert DEFAULT_MODEL in model_names()


def test_reference_matches_the_article_table():
    model = create_model("reference")
    assert count_parameters(model) == 4838
    rows = [r for r in summarize(model).rows if r.params]
    assert [r.params for r in rows] == [40, 8, 148, 8, 296, 16, 584, 16, 1168, 32, 2320, 32, 170]
    assert [r.kind for r in summarize(model).rows[:3]] == ["Conv2d", "ReLU", "BatchNorm2d"]  # conv -> ReLU -> BN
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.01, 0.01, 0.01]


def test_reference_receptive_field_follows_the_recurrence():
    rows = summarize(create_model("reference")).rows
    convs_and_pools = [r.receptive_field for r in rows if r.kind in ("Conv2d", "MaxPool2d")]
    # 3, 5, pool -> 6 (not the article's 10), 10, 14, pool -> 16, 24, 32, 1x1 -> 32
    assert convs_and_pools == [3, 5, 6, 10, 14, 16, 24, 32, 32]
    assert summarize(create_model("reference")).receptive_field == 32
    assert rows[-1].receptive_field is None  # after global average pooling


def test_toy_net_receptive_field_and_macs_by_hand():
    toy = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 4, 3, stride=2, bias=False),
                        nn.Conv2d(4, 4, 3, dilation=2), nn.Flatten(), nn.Linear(4, 10))
    s = summarize(toy, input_shape=(1, 24, 24))
    # 24 -k3-> 22 -pool-> 11 -k3 s2-> 5 -k3 d2-> 1
    assert [r.output_shape for r in s.rows[:4]] == [(2, 22, 22), (2, 11, 11), (4, 5, 5), (4, 1, 1)]
    # rf: 1 + 2*1 = 3 (j1); pool: 3 + 1*1 = 4 (j2); k3 s2: 4 + 2*2 = 8 (j4); k3 d2: 8 + 4*4 = 24 (j4)
    assert [r.receptive_field for r in s.rows[:4]] == [3, 4, 8, 24]
    assert [r.jump for r in s.rows[:4]] == [1, 2, 4, 4]
    # MACs: 22*22*2*9 = 8712; 0; 5*5*4*2*9 = 1800; 1*1*4*4*9 = 144; linear 4*10 = 40
    assert [r.macs for r in s.rows] == [8712, 0, 1800, 144, 0, 40]
    assert s.macs == 8712 + 1800 + 144 + 40
    assert s.params == (2 * 9 + 2) + (4 * 2 * 9) + (4 * 4 * 9 + 4) + (4 * 10 + 10)


def test_plan_parser_rejects_bad_tokens():
    assert parse_plan("c8 M t4 v6 r d5") == [("c", 8), ("M", 0), ("t", 4), ("v", 6), ("r", 0), ("d", 5)]
    with pytest.raises(ValueError):
        parse_plan("c8 x3")


def test_r_uses_the_block_before_again_with_its_own_batchnorm():
    from tinymnist.models.zoo import PlanNet

    plain, shared = PlanNet("c6 s8 s8 M s8", dw_bn=False), PlanNet("c6 s8 s8 M r", dw_bn=False)
    # the same layers; the repeat adds only its BatchNorm's scale and shift
    assert [type(m) for m in plain.net] == [type(m) for m in shared.net]
    assert count_parameters(shared) == count_parameters(plain) - (8 * 9 + 8 * 8)
    # net[7:11] the second s8 (depthwise, pointwise, BatchNorm, ReLU), net[12:16] its repeat after the pool
    assert shared.net[12] is shared.net[7] and shared.net[13] is shared.net[8] and shared.net[14] is not shared.net[9]
    table = summarize(shared)  # the repeat's convs cost MACs again, parameters once
    assert table.macs == summarize(plain).macs and sum(r.params for r in table.rows) == table.params
    assert [r.name for r in table.rows if r.name.endswith("(again)")] == ["net.7 (again)", "net.8 (again)"]
    restored = PlanNet("c6 s8 s8 M r", dw_bn=False)
    restored.load_state_dict(shared.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(restored.eval()(x), shared.eval()(x))
    for plan in ("r c8", "c6 s8 r", "c6 M r"):  # nothing before it, or a block that changes the width
        with pytest.raises(ValueError, match="'r' repeats a conv block"):
            PlanNet(plan)


def test_d_is_a_stride_2_conv_and_fc_a_linear_head_on_the_last_map():
    from tinymnist.models.fold import fold_batchnorm
    from tinymnist.models.zoo import PlanNet

    strided = PlanNet("d8 s12 M s16", dw_bn=False).eval()
    conv = strided.net[0]
    assert isinstance(conv, nn.Conv2d) and conv.stride == (2, 2) and conv.padding == (1, 1)
    assert strided.net[:-3](torch.zeros(1, 1, 28, 28)).shape == (1, 16, 7, 7)  # 28 -> 14 (d) -> 7 (M)
    # 28 -> 14 -> 7 -> 3 pixels a side, odd sizes rounded as the conv and the pool round them
    fc = PlanNet("d4 s8 M s12 M s6", dw_bn=False, head="fc").eval()
    assert isinstance(fc.net[-1], nn.Linear) and fc.net[-1].in_features == 6 * 3 * 3
    gap = PlanNet("d4 s8 M s12 M s6", dw_bn=False).eval()
    assert count_parameters(fc) - count_parameters(gap) == (6 * 9 * 10 + 10) - (6 * 10 + 10)
    table = summarize(fc)
    assert table.rows[-1].macs == 6 * 9 * 10 and sum(r.params for r in table.rows) == table.params
    x = torch.randn(3, 1, 28, 28)
    for model, blocks in ((strided, 3), (fc, 4)):  # the folded copy that evaluation and the ONNX export run
        folded, count = fold_batchnorm(model)
        assert count == blocks and torch.allclose(folded(x), model(x), atol=1e-5)  # one BatchNorm per conv block
    with pytest.raises(ValueError, match="unknown head"):
        PlanNet("c8", head="mlp")
    with pytest.raises(ValueError, match="leaves no pixels"):
        PlanNet("d4 d4 d4 d4 d4 M", head="fc")


@pytest.mark.slow
def test_models_and_summary_commands():
    result = run_cli("models", "--json")
    assert result.returncode == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["reference"]["params"] == 4838
    result = run_cli("summary", "--model", "reference", "--json")
    summary = json.loads(result.stdout)
    assert summary["params"] == 4838 and summary["receptive_field"] == 32
    result = run_cli("summary", "--model", "reference")
    assert "| **total** | | | **4,838**" in result.stdout


def test_depthwise_batchnorm_without_affine_has_no_parameters():
    plan = "c8 s16 M s24"
    with_affine = count_parameters(create_model("separable", plan=plan, dw_bn=True))
    without = create_model("separable", plan=plan, dw_bn=True, dw_affine=False)
    assert with_affine - count_parameters(without) == 2 * (8 + 16)
    assert count_parameters(without) == count_parameters(create_model("separable", plan=plan, dw_bn=False))
    assert without(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("model_args,message", [('{"act": "tanh"}', "unknown activation"),
                                                ('{"widht": 3}', "bad arguments"),
                                                ('{"plan": "c8 x4"}', "bad token")])
def test_bad_model_arguments_are_one_line_errors(model_args, message, tmp_path):
    for command in (["summary"], ["train", "--out", str(tmp_path / "run"), "--subset", "64"]):
        result = run_cli(*command, "--model", "separable", "--model-args", model_args)
        assert result.returncode == 1 and message in result.stderr and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_silu_activation_option_keeps_the_parameter_count():
    relu, silu = create_model("separable"), create_model("separable", act="silu")
    assert count_parameters(relu) == count_parameters(silu)
    assert sum(isinstance(m, torch.nn.SiLU) for m in silu.modules()) == 8
