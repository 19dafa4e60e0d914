"""The native engine against eager PyTorch: forward outputs, input and parameter gradients and
BatchNorm running statistics for every registered model (and plans that reach the kernels' other
paths: padding 0, odd sizes into a max-pool, BatchNorm after the depthwise conv, a max-pool of the
input image, residual shortcuts), odd batch sizes, every usable build (generic, avx2, avx512); then
determinism and the engine choice in training."""

import ctypes
import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import run_cli

from tinymnist.backends.native import binding
from tinymnist.backends.native.runner import NativeRunner
from tinymnist.backends.native.select import resolve_engine
from tinymnist.errors import SettingError, UserError
from tinymnist.models.zoo import PlanNet, create_model, model_names
from tinymnist.training.config import TrainConfig
from tinymnist.training.trainer import train

VARIANTS = binding.usable_variants()
SMALL = dict(train_subset=320, test_subset=200, batch_size=64, epochs=2, threads=1)

# Extra plans: a padding-0 conv (28 -> 26) feeding odd sizes (13, 6) into the pools, BatchNorm between
# the depthwise and pointwise parts, channel counts that are not multiples of the vector width.
EXTRA = {
    "pad0-odd": lambda: PlanNet("v6 s12 M c10 M s18 t7", dw_bn=True),
    "dw-bn-noaffine": lambda: PlanNet("c5 s9 M s13 M s11", dw_bn=True, dw_affine=False),
    # A max-pool of the input image first (the microcontroller search's plans): the kernels pool the
    # image at one float per pixel; then 14 -> 7 -> 3 (an odd size into the last pool).
    "inpool": lambda: PlanNet("M c8 s12 M s16 s24 M s32", dw_bn=False),
    "inpool-odd": lambda: PlanNet("M c4 s8 M s16 M s24", dw_bn=True),
    # A conv whose one input channel is not the image: stored at the padded stride, not at 1 (the
    # workspace once sized this conv's buffers for stride 1, and the kernels overran them).
    "one-channel": lambda: PlanNet("c1 s8 M s12", dw_bn=False),
    # Residual shortcuts (ReLU(body(x) + x) wherever a 3x3 conv keeps the width): the block input a
    # deferred BatchNorm (normalized as read) or a max-pool's output (the last s16 here), ...
    "residual": lambda: PlanNet("c8 s12 s12 M s16 s16 M s16", dw_bn=False, residual=True),
    # ... another block's output (s20 s20 s20), with BatchNorm between the depthwise and pointwise parts, ...
    "residual-dw-bn": lambda: PlanNet("c8 s16 s16 M s20 s20 s20 M s32 s28", dw_bn=True, residual=True),
    # ... around a dense conv, straight after a max-pool, at odd sizes (13, 6) and widths (6, 10).
    "residual-odd": lambda: PlanNet("v6 M s6 c6 M c10 s10", dw_bn=False, residual=True),
    # A ReLU between the depthwise and pointwise halves, after a BatchNorm without affine parameters.
    "dw-bn-act": lambda: PlanNet("c5 s9 M s13 M s11", dw_bn=True, dw_affine=False, dw_act=True),
    # Shared weights ("r": a conv block used again, its own BatchNorm): two ops write one parameter's
    # gradient, at two resolutions (the "r" after the pool), in shortcuts and around a dense conv.
    "shared": lambda: PlanNet("c6 s8 s8 r M r s12 s12 r", dw_bn=False),
    "shared-residual": lambda: PlanNet("c8 c8 r M s12 s12 r", dw_bn=True, residual=True),
    # A stride-2 first conv (PlanNet "d"): 28 -> 14, and an odd count of channels (5) into odd sizes (7 -> 3).
    "stem": lambda: PlanNet("d8 s12 M s16", dw_bn=False),
    "stem-odd": lambda: PlanNet("d5 M s9 M s6", dw_bn=True),
    # A linear head on the whole last map (head="fc"): after the stem (7 x 7 x 12), and on an odd map
    # (3 x 3) of channels not in vector widths, BatchNorm between the depthwise and pointwise halves.
    "stem-fc": lambda: PlanNet("d8 s8 M s16 M s12", dw_bn=False, head="fc"),
    "fc-odd": lambda: PlanNet("c5 M s9 M s7", dw_bn=True, head="fc"),
    # That head with weights trained for 4 bits (head="fc4"): the kernels read the rounded weights while a
    # pass runs, the gradient goes to the float ones (straight-through), which stay as they were.
    "fc4": lambda: PlanNet("d8 s8 M s16 M s12", dw_bn=False, head="fc4"),
}
MODELS = [*model_names(), *EXTRA]


def build(name):
    return EXTRA[name]() if name in EXTRA else create_model(name)


def test_native_kernels_are_built_and_usable():
    # make setup builds them; a silent fallback to eager would hide a broken build
    assert VARIANTS, "no native build is usable: the C extension did not build"
    assert "generic" in VARIANTS


def _no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 3, 17])
def test_forward_and_gradients_match_eager_float64(name, batch, variant):
    """Tolerances: logits 1e-5 absolute (values ~1); gradients 1e-4 of the largest entry of each tensor
    plus 1e-6 absolute (float32 kernels against a float64 reference, sums over up to 17 x 784 terms; with
    one image, BatchNorm makes some exact gradients ~1e-18, which float32 leaves at ~1e-9)."""
    torch.manual_seed(batch)
    reference = _no_dropout(build(name)).double().train()
    model = _no_dropout(build(name)).train()
    model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in reference.state_dict().items()})
    runner = NativeRunner(model, lib=binding.open_variant(variant))
    x64 = torch.randn(batch, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    x32 = x64.detach().float().requires_grad_(True)
    y = torch.randint(0, 10, (batch,))
    ref_logits = reference(x64)
    F.cross_entropy(ref_logits, y).backward()
    logits = runner(x32)
    F.cross_entropy(logits, y).backward()
    assert (logits.double() - ref_logits).abs().max() < 1e-5
    assert (x32.grad.double() - x64.grad).abs().max() <= 1e-4 * x64.grad.abs().max() + 1e-6
    for (pname, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert p.grad is not None and p.grad.shape == p.shape, pname
        assert (p.grad.double() - q.grad).abs().max() <= 1e-4 * q.grad.abs().max() + 1e-6, pname
    for (bname, b), c in zip(model.named_buffers(), reference.buffers(), strict=True):
        if b.is_floating_point():  # running mean / var (the variance is unbiased, as PyTorch's)
            assert (b.double() - c).abs().max() < 1e-5, bname
        else:
            assert torch.equal(b, c), bname


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("augment", ["none", "affine", "elastic"])
def test_the_batch_kernel_matches_the_eager_batch(variant, augment, mnist):
    """tm_batch (gather, affine_grid + grid_sample, normalize in one pass) against the trainer's
    PyTorch batch, on real digits and the same random draws; 2x the default augmentation, and with
    Simard's elastic distortion on top of it."""
    import math

    from tinymnist.data.augment import elastic_field, random_affine
    from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD

    lib = binding.open_variant(variant)
    images = torch.from_numpy(mnist.train_images[:500].copy()).unsqueeze(1).contiguous()
    idx = torch.randperm(500, generator=torch.Generator().manual_seed(1))[:37]
    rotate, scale, translate = 10.0, (0.9, 1.1), 2.0
    elastic = (34.0, 4.0) if augment == "elastic" else None
    expected = images[idx].float().div_(255.0)
    rand = disp = None
    if augment != "none":
        gen = torch.Generator().manual_seed(2)
        rand = torch.rand(37, 4, generator=gen)
        if elastic:
            disp = elastic_field(37, 28, 28, gen, *elastic)
        expected = random_affine(expected, torch.Generator().manual_seed(2), rotate, scale, translate, elastic)
    expected = expected.sub_(MNIST_MEAN).div_(MNIST_STD)
    got = torch.empty(37, 28, 28)
    lib.tm_batch(images.data_ptr(), idx.data_ptr(), 37, 28, 28, None if rand is None else rand.data_ptr(),
                 None if disp is None else disp.data_ptr(), math.radians(rotate), *scale, translate, MNIST_MEAN,
                 MNIST_STD, got.data_ptr())
    assert (got - expected[:, 0]).abs().max() < (2e-5 if rand is not None else 1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_kernel_matches_cross_entropy(smoothing):
    lib = binding.load()
    torch.manual_seed(0)
    logits = (torch.randn(19, 10) * 4).requires_grad_(True)
    y = torch.randint(0, 10, (19,))
    loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
    loss.backward()
    dlogits, correct = torch.empty(19, 10), ctypes.c_int(-1)
    got = lib.tm_xent(logits.detach().data_ptr(), y.data_ptr(), None, 19, 10, smoothing, dlogits.data_ptr(),
                      ctypes.byref(correct))
    assert abs(got - loss.item()) < 1e-6
    assert (dlogits - logits.grad).abs().max() < 1e-7
    assert correct.value == int((logits.argmax(1) == y).sum())
    # Labels gathered through an index, as the trainer's step passes them: the same result.
    pool = torch.randint(0, 10, (50,))
    idx = torch.randperm(50)[:19]
    pool[idx] = y
    gathered, correct2 = torch.empty(19, 10), ctypes.c_int(-1)
    assert lib.tm_xent(logits.detach().data_ptr(), pool.data_ptr(), idx.data_ptr(), 19, 10, smoothing,
                       gathered.data_ptr(), ctypes.byref(correct2)) == got
    assert torch.equal(gathered, dlogits) and correct2.value == correct.value
    nan_logits = logits.detach().clone()
    nan_logits[3, 4] = float("nan")
    assert math.isnan(lib.tm_xent(nan_logits.data_ptr(), y.data_ptr(), None, 19, 10, smoothing, dlogits.data_ptr(),
                                  ctypes.byref(correct)))


@pytest.mark.parametrize("name", ["separable", "reference", "inpool", "residual", "shared"])
def test_the_trainers_native_step_gives_the_autograd_paths_gradients(name, mnist):
    """train_step (batch, forward, loss, backward in C; gradients written into .grad) against the
    same runner driven through autograd with the same batch and F.cross_entropy."""
    from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD

    images = torch.from_numpy(mnist.train_images[:200].copy()).unsqueeze(1).contiguous()
    labels = torch.from_numpy(mnist.train_labels[:200].copy()).long()
    idx = torch.arange(50, 114)
    rand = torch.rand(64, 4, generator=torch.Generator().manual_seed(3))
    augment = (math.radians(5.0), 0.95, 1.05, 1.0)
    torch.manual_seed(0)  # the same weights whichever tests ran before it
    models = [_no_dropout(build(name)).train() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    stepper = NativeRunner(models[0])
    loss, correct = stepper.train_step(images, labels, idx, rand, augment, 0.1, MNIST_MEAN, MNIST_STD)
    x = stepper.workspace(64).x.clone().unsqueeze(1)
    runner = NativeRunner(models[1])
    logits = runner(x)
    expected = F.cross_entropy(logits, labels[idx], label_smoothing=0.1)
    expected.backward()
    assert abs(loss - expected.item()) < 1e-5 and correct == int((logits.argmax(1) == labels[idx]).sum())
    for (pname, p), q in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        assert (p.grad - q.grad).abs().max() <= 1e-5 * q.grad.abs().max() + 1e-8, pname
    for b, c in zip(models[0].buffers(), models[1].buffers(), strict=True):
        assert torch.equal(b, c)
    # the gradients are overwritten, not accumulated, by the next step (no zero_grad needed); the
    # profiling path (separate C calls, timed) and an unchecked table give the same bits
    first = [p.grad.clone() for p in models[0].parameters()]
    for kwargs in ({}, {"seconds": {}}, {"check": False}):
        models[0].load_state_dict(models[1].state_dict())  # same weights and statistics again
        again = stepper.train_step(images, labels, idx, rand, augment, 0.1, MNIST_MEAN, MNIST_STD, **kwargs)
        assert again == (loss, correct)
        assert all(torch.equal(a, p.grad) for a, p in zip(first, models[0].parameters(), strict=True))


DROPOUT_MODELS = {
    "reference": lambda: create_model("reference", dropout=0.3),
    "inpool": lambda: PlanNet("M c4 s8 M s12", dropout=0.3, dw_bn=False),  # the first dropout on the pooled image
}


@pytest.mark.parametrize("name", DROPOUT_MODELS)
def test_dropout_runs_natively_with_the_masks_it_draws(name):
    """Dropout 0.3: the native logits equal the eager model's with the same masks (read back from the
    workspace) in place of nn.Dropout."""
    from tinymnist.backends.native.program import Dropout as DropoutOp

    torch.manual_seed(0)
    model = DROPOUT_MODELS[name]().train()
    runner = NativeRunner(model)
    x = torch.randn(5, 1, 28, 28, requires_grad=True)
    logits = runner(x)
    ws = runner.workspace(5)
    dropouts = [(op, b) for op, b in zip(runner.program, ws.ops, strict=True) if isinstance(op, DropoutOp)]
    masks = [b.extra["mask"][..., : op.shape.c].permute(0, 3, 1, 2) for op, b in dropouts]  # NHWC padded -> NCHW
    assert masks and all(0.5 < float((m > 0).float().mean()) < 0.9 for m in masks)

    eager = DROPOUT_MODELS[name]().train()
    eager.load_state_dict(model.state_dict())
    modules = [m for m in eager.modules() if isinstance(m, torch.nn.Dropout)]
    for module, mask in zip(modules, masks, strict=True):
        module.forward = lambda t, mask=mask: t * mask
    x2 = x.detach().clone().requires_grad_(True)
    expected = eager(x2)
    assert (logits.detach() - expected).abs().max() < 1e-4
    logits.square().sum().backward()
    expected.square().sum().backward()
    assert (x.grad - x2.grad).abs().max() <= 1e-4 * x2.grad.abs().max()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("layout", ["vectors", "image"])
def test_max_pool_ties_go_to_the_first_maximum_as_in_pytorch(variant, size, layout):
    """Windows full of equal values (as after a ReLU, or in an image's blank background): the recorded
    winner and the gradient follow PyTorch's first maximum in row-major order; an odd last row and
    column get no gradient. Both layouts: channel vectors, and the image's one float per pixel."""
    lib = binding.open_variant(variant)
    cs = lib.tm_lanes() if layout == "vectors" else 1
    torch.manual_seed(size)
    x = torch.randint(0, 2, (3, cs, size, size)).float().requires_grad_(True)  # ties everywhere
    y = F.max_pool2d(x, 2)
    dy = torch.randn_like(y)
    y.backward(dy)
    nhwc = x.detach().permute(0, 2, 3, 1).contiguous()
    out = torch.empty(3, size // 2, size // 2, cs)
    index = torch.empty(3, size // 2, size // 2, cs, dtype=torch.uint8)
    lib.tm_maxpool2_forward(nhwc.data_ptr(), None, out.data_ptr(), index.data_ptr(), 3, size, size, cs)
    assert torch.equal(out, y.detach().permute(0, 2, 3, 1))
    dx = torch.full((3, size, size, cs), float("nan"))
    dy_nhwc = dy.permute(0, 2, 3, 1).contiguous()
    lib.tm_maxpool2_backward(index.data_ptr(), dy_nhwc.data_ptr(), dx.data_ptr(), None, 3, size, size, cs)
    assert torch.equal(dx, x.grad.permute(0, 2, 3, 1))


def test_every_edge_pixel_gets_its_gradient():
    """A one-hot input at each corner and edge midpoint: the input gradient of the native engine
    matches eager there (edge pixels take the kernels' bounds-checked path)."""
    torch.manual_seed(0)
    model = create_model("stepped").double().train()
    native_model = create_model("stepped").train()
    native_model.load_state_dict({k: v.to(native_model.state_dict()[k].dtype) for k, v in model.state_dict().items()})
    runner = NativeRunner(native_model)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64) * 0.1
    for i, j in [(0, 0), (0, 27), (27, 0), (27, 27), (0, 13), (13, 0), (27, 13), (13, 27)]:
        x[:, 0, i, j] = 3.0
    x64 = x.clone().requires_grad_(True)
    x32 = x.float().requires_grad_(True)
    model(x64).sum().backward()
    runner(x32).sum().backward()
    edges = torch.zeros(28, 28, dtype=torch.bool)
    edges[[0, -1], :] = True
    edges[:, [0, -1]] = True
    scale = x64.grad.abs().max()
    assert (x32.grad.double() - x64.grad)[:, 0][:, edges].abs().max() <= 1e-4 * scale


def test_unsupported_models_fall_back_or_refuse():
    engine, why = resolve_engine("auto", create_model("separable", act="silu", residual=True))
    assert engine == "eager" and "SiLU" in why
    with pytest.raises(SettingError, match="native engine cannot train.*engine=eager"):
        resolve_engine("native", create_model("separable", act="silu"))
    assert resolve_engine("auto", create_model("separable")) == ("native", None)
    assert resolve_engine("auto", create_model("separable", residual=True)) == ("native", None)
    engine, why = resolve_engine("auto", create_model("separable", dw_act=True))  # ReLU straight after a depthwise conv
    assert engine == "eager" and "depthwise" in why
    # A shortcut around a conv on the image (one channel kept: "c1") would add the image, stored at stride 1.
    engine, why = resolve_engine("auto", PlanNet("c1 s8", residual=True))
    assert engine == "eager" and "shortcut around the input image" in why
    assert resolve_engine("eager", create_model("separable")) == ("eager", None)
    # A max-pool of the image (the microcontroller search's input pool) trains natively; a head straight
    # on the image (no conv: the head kernel reads channel vectors) does not.
    assert resolve_engine("auto", create_model("separable", plan="M c8 s16 M s24", dw_bn=False)) == ("native", None)
    for plan in ("", "M", "M M"):
        engine, why = resolve_engine("auto", PlanNet(plan))
        assert engine == "eager" and "head straight on the input image" in why
    # A stride-2 conv trains natively as the first layer only; a linear head straight on the image not at all.
    assert resolve_engine("auto", PlanNet("d8 s12 M s16", dw_bn=False)) == ("native", None)
    assert resolve_engine("auto", PlanNet("c8 M s12 M s16", dw_bn=False, head="fc")) == ("native", None)
    engine, why = resolve_engine("auto", PlanNet("c8 d12 M s16", dw_bn=False))
    assert engine == "eager" and "stride 2 only" in why
    engine, why = resolve_engine("auto", PlanNet("M M", head="fc"))
    assert engine == "eager" and "head straight on the input image" in why


def test_stale_backward_is_refused():
    model = create_model("separable").train()
    runner = NativeRunner(model)
    x = torch.randn(2, 1, 28, 28)
    first = runner(x).sum()
    runner(x).sum()  # a second forward overwrites the first one's saved activations
    with pytest.raises(RuntimeError, match="earlier forward"):
        first.backward()


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_native_training_is_bit_identical_across_runs_and_thread_counts(mnist, tmp_path):
    cfg = TrainConfig(**SMALL, seed=5, engine="native")
    train(cfg, mnist, tmp_path / "a")
    train(cfg, mnist, tmp_path / "b")
    a, b = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every reduction is summed per image, then over images in order: the thread count cannot matter
    torch.set_num_threads(2)
    try:
        train(TrainConfig(**{**SMALL, "threads": 2}, seed=5, engine="native"), mnist, tmp_path / "c")
    finally:
        torch.set_num_threads(1)
    c = _weights(tmp_path / "c" / "last.pt")
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_engines_train_to_similar_models_and_record_the_engine(mnist, tmp_path):
    results = {}
    for engine in ("eager", "native"):
        metrics = train(TrainConfig(**{**SMALL, "train_subset": 3200}, engine=engine), mnist, tmp_path / engine)
        results[engine] = metrics
        assert metrics["engine"].startswith(engine)
        history = json.loads((tmp_path / engine / "history.json").read_text())
        assert history["engine"] == metrics["engine"]
    # same data, seed and recipe: both learn (3,200 images, 2 epochs: ~95% on this test subset), within a
    # few points of each other. (With 1,280 images, 40 steps, the two arithmetics' trajectories ended
    # 15 points apart at 29-44%: too few steps for the comparison to mean anything.)
    assert min(r["final_train_accuracy"] for r in results.values()) > 70  # chance is 10
    assert abs(results["native"]["final_test_accuracy"] - results["eager"]["final_test_accuracy"]) < 5


def test_residual_models_train_natively_to_the_eager_accuracy(mnist, tmp_path):
    """The default model with residual shortcuts trains on the native engine (no fallback to eager) and
    ends within a few points of eager PyTorch: 6,400 images, one epoch (100 steps: ~95% on this test
    subset; with 3,200 images, 50 steps, both ended near 70-75%)."""
    results = {}
    for engine in ("native", "eager"):
        cfg = TrainConfig(**{**SMALL, "train_subset": 6400, "test_subset": 500, "epochs": 1}, model="separable",
                          model_args={"residual": True}, engine=engine)
        results[engine] = train(cfg, mnist, tmp_path / engine)
        assert results[engine]["engine"].startswith(engine)
    assert min(r["final_test_accuracy"] for r in results.values()) > 85  # chance is 10
    assert abs(results["native"]["final_test_accuracy"] - results["eager"]["final_test_accuracy"]) < 5


def test_resume_refuses_another_engine(mnist, tmp_path, monkeypatch):
    train(TrainConfig(**{**SMALL, "epochs": 1}, engine="eager"), mnist, tmp_path / "run")
    with pytest.raises(UserError, match="differ from its saved configuration.*engine=.eager. -> .native."):  # part of the config
        train(TrainConfig(**{**SMALL, "epochs": 1}, engine="native"), mnist, tmp_path / "run", resume=True)
    # `auto` that resolves to another engine on resume (say, a machine without the native build)
    cfg = TrainConfig(**{**SMALL, "epochs": 2}, engine="auto")
    train(TrainConfig(**{**SMALL, "epochs": 2}, engine="auto"), mnist, tmp_path / "auto")
    monkeypatch.setattr("tinymnist.training.trainer.resolve_engine", lambda choice, model: ("eager", "not built"))
    with pytest.raises(UserError, match="trained with the native engine"):
        train(cfg, mnist, tmp_path / "auto", resume=True)


@pytest.mark.slow
def test_engine_flag_on_the_command_line(tmp_path, data_dir):
    out = tmp_path / "run"
    result = run_cli("train", "--data-dir", data_dir, "--subset", "128", "--test-subset", "100", "--epochs", "1",
                     "--model-args", '{"act": "silu"}', "--engine", "native", "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "native engine cannot train" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_cli("train", "--data-dir", data_dir, "--subset", "128", "--test-subset", "100", "--epochs", "1",
                     "--model-args", '{"act": "silu"}', "--out", out)
    assert result.returncode == 0, result.stderr
    assert "training with eager PyTorch" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["engine"] == "eager"


def test_native_evaluation_matches_eager_and_falls_back_where_it_cannot_run(mnist):
    """logits_for(native=True): the BatchNorm-folded copy through the kernels' forward pass, close to
    PyTorch's (the default model, one that max-pools the image first, residual ones); models whose folded copy keeps
    a BatchNorm (reference: conv -> ReLU -> BN) or has dropout run in PyTorch."""
    from tinymnist.evaluation.logits import logits_for, native_inference

    images = torch.from_numpy(mnist.test_images[:300].copy())
    for name in ("separable", "inpool", "residual", "residual-odd"):  # the folded shortcuts: conv -> shortcut
        torch.manual_seed(0)
        model = build(name).train()
        NativeRunner(model)(torch.randn(64, 1, 28, 28))  # running statistics that are not the defaults
        model.eval()
        eager = logits_for(model, images, 128)
        native = logits_for(model, images, 128, native=True)
        assert (native - eager).abs().max() < 1e-4 * eager.abs().max(), name
        assert native_inference(model) is not None, name
    assert native_inference(create_model("reference")) is None
    dropout = PlanNet("c8 s16 M s16 M s16", dropout=0.1, dw_bn=False)
    assert NativeRunner(dropout).inference_problem() and native_inference(dropout) is None
    runner = NativeRunner(create_model("separable"))
    with pytest.raises(ValueError, match="BatchNorm"):
        runner.infer(torch.zeros(2, 1, 28, 28))
