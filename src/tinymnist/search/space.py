"""What `tinymnist search` searches: a PlanNet plan and a training recipe, and what each candidate costs.

A candidate is sampled through Optuna's `suggest_*` calls (the same code rebuilds a finished trial's
candidate from its parameters, through `optuna.trial.FixedTrial`):

* the network, in the PlanNet grammar (tinymnist.models.zoo): 2-3 stages with a 2x2 max-pool ("M")
  between them, 1-3 convs per stage, each conv 4-40 channels wide (step 2) and either dense ("c") or
  depthwise-separable ("s"); the first conv is always dense (a depthwise conv on the one input
  channel would be a single 3x3 filter). It is built as `create_model("separable", plan=...,
  dw_bn=False)`: bias-free convs, BatchNorm + ReLU after each, a 1x1 conv + global average pool head.
* with a microcontroller target (`mcu=True`: `tinymnist search --target`), what makes a digit cheap
  there: an optional 2x2 max-pool of the input image ("M" first: every layer then runs at 14x14, 7x7
  and 3x3, a quarter of the work), or else an optional stride-2 first conv ("d": the image's 3x3
  windows every other pixel, so the first stage runs at 14x14 too; round MC7), and widths in steps of 4
  (channels in fours run the C export's SIMD kernels; other counts fall back to portable C, about twice
  the instructions per MAC on a Cortex-M4), and the head: the 1x1 conv + global average pool, or a
  linear layer on the whole last map (PlanNet's head="fc", written " +fc" after the plan: it keeps
  where on the digit a feature is, for height x width times the weights), its weights int8 or trained for
  4 bits (head="fc4", written " +fc4": half the flash for them). One conv in the first stage
  (a first layer pooled right away) is in both spaces.
* the recipe: peak learning rate (log-uniform), warmup fraction, weight decay (log-uniform), label
  smoothing, augmentation strength (a multiple of the default rotation 5 deg, shift 1 px and zoom
  +-5%; 0 = none), clean last epochs (0 or 1) and batch size (32, 64, 128). Everything else is
  TrainConfig's default (SGD with Nesterov momentum, one-cycle schedule).

Costs are computed from the untrained network, before any training: parameters and MACs per image
from `summarize`, the predicted instructions per inference of a target build (export.c.cost, from layer
shapes), and the static RAM of its int8 C export (`tinymnist export --format c`): the
in-place activation arena (the largest int8 tensor, the image included: 784 bytes, or 196 where the
plan starts with a max-pool, done as the image is loaded), the three-row input ring, one depthwise
output row and the two output rows of the widest layer with a fused max-pool, exactly as
`export.c.codegen.plan` sizes them (it fuses a pool into the conv before it where that saves RAM). They depend on
layer shapes only, so they are computed here with placeholder quantization ranges. The stack (about
0.5 KB measured for the default model) comes on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from tinymnist.export.c.cost import BUILDS  # the (cpu, optimization) builds the cost model predicts
from tinymnist.models.zoo import create_model

__all__ = ["BUILDS", "Candidate", "Cost"]

MODEL = "separable"  # the registered PlanNet model the candidates are built as
STAGES = (2, 3)
CONVS_PER_STAGE = (1, 3)
WIDTHS = (4, 40, 2)  # low, high, step
MCU_WIDTHS = (4, 40, 4)  # with a microcontroller target: channels in fours (the SIMD kernels)
TARGETS = ("cortex-m4", "cortex-m0")  # the microcontrollers an instruction budget can be for
OPTS = ("-O2", "-Os")
DEFAULT_OPT = {"cortex-m4": "-O2", "cortex-m0": "-Os"}  # the fastest build the cost model knows per target
LR = (0.02, 0.5)  # peak learning rate, log-uniform
WARMUP = (0.05, 0.4)
WEIGHT_DECAY = (1e-5, 1e-3)  # log-uniform
LABEL_SMOOTHING = (0.0, 0.2)
AUGMENT = (0.0, 2.0)  # multiple of the default augmentation (rotate 5 deg, shift 1 px, zoom +-5%)
CLEAN_EPOCHS = (0, 1)
BATCH_SIZES = (32, 64, 128)
SPACES = ("full", "network")  # full: network and recipe; network: the recipe fixed to TrainConfig's defaults

# The default augmentation that AUGMENT scales (TrainConfig's defaults).
ROTATE, TRANSLATE, ZOOM = 5.0, 1.0, 0.05


class Suggester(Protocol):
    """The part of an Optuna trial (Trial or FixedTrial) that sampling uses."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Candidate:
    """One point of the space: a plan (a PlanNet plan, then FC_HEAD when the network ends in a linear
    head) and the recipe knobs (TrainConfig field names, except `augment`, the augmentation strength)."""

    plan: str
    knobs: dict[str, Any]


@dataclass(frozen=True)
class Cost:
    """What a network costs, computed before training."""

    params: int
    macs: int  # multiply-accumulates per image
    ram_bytes: int | None  # static int8 buffers of the C export; None when it cannot be exported
    ram_note: str = ""  # why ram_bytes is None
    instructions: int | None = None  # predicted per inference on the target build; None without one
    instructions_note: str = ""  # why instructions is None when a build was asked for

    @property
    def ram_kb(self) -> float | None:
        return None if self.ram_bytes is None else self.ram_bytes / 1024


def target_build(target: str, opt: str | None = None) -> tuple[str, str]:
    """(cpu, optimization) of a target's build: `opt`, else the target's default."""
    return target, opt or DEFAULT_OPT.get(target, "-O2")


FC_HEAD = " +fc"  # after a candidate's plan: the linear head (PlanNet head="fc") instead of the pooled one
FC4_HEAD = " +fc4"  # the linear head with 4-bit weights (PlanNet head="fc4")


def split_head(plan: str) -> tuple[str, str]:
    """(the PlanNet plan, its head: "gap", "fc" or "fc4") of a candidate's plan."""
    for suffix, head in ((FC4_HEAD, "fc4"), (FC_HEAD, "fc")):
        if plan.endswith(suffix):
            return plan[: -len(suffix)], head
    return plan, "gap"


def widths(mcu: bool = False) -> tuple[int, int, int]:
    return MCU_WIDTHS if mcu else WIDTHS


def sample_plan(trial: Suggester, mcu: bool = False) -> str:
    """A plan string such as "c8 s16 M s20 s20 M s32" (with mcu, maybe "M c8 s16 M s20 M s32" or
    "d8 s16 M s20 M s32 +fc", or " +fc4" for its weights in 4 bits)."""
    stages = trial.suggest_int("stages", *STAGES)
    tokens: list[str] = []
    pooled = mcu and trial.suggest_categorical("input_pool", [False, True])
    if pooled:
        tokens.append("M")
    strided = mcu and not pooled and trial.suggest_categorical("stride2", [False, True])
    low, high, step = widths(mcu)
    for stage in range(stages):
        if stage:
            tokens.append("M")
        for conv in range(trial.suggest_int(f"convs{stage}", *CONVS_PER_STAGE)):
            width = trial.suggest_int(f"width{stage}_{conv}", low, high, step=step)
            separable = stage + conv > 0 and trial.suggest_categorical(f"sep{stage}_{conv}", [True, False])
            first = "d" if strided and stage + conv == 0 else "c"
            tokens.append(f"{'s' if separable else first}{width}")
    fc = mcu and trial.suggest_categorical("head", ["gap", "fc"]) == "fc"
    # asked only of a linear head: the 4-bit weights are a choice of its weights, not another head
    fc4 = fc and trial.suggest_categorical("head_bits", [8, 4]) == 4
    return " ".join(tokens) + (FC4_HEAD if fc4 else FC_HEAD if fc else "")


def sample_knobs(trial: Suggester) -> dict[str, Any]:
    """The recipe knobs."""
    return {
        "lr": trial.suggest_float("lr", *LR, log=True),
        "warmup": trial.suggest_float("warmup", *WARMUP),
        "weight_decay": trial.suggest_float("weight_decay", *WEIGHT_DECAY, log=True),
        "label_smoothing": trial.suggest_float("label_smoothing", *LABEL_SMOOTHING),
        "augment": trial.suggest_float("augment", *AUGMENT),
        "clean_epochs": trial.suggest_int("clean_epochs", *CLEAN_EPOCHS),
        "batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
    }


def sample(trial: Suggester, kind: str = "full", mcu: bool = False) -> Candidate:
    """A candidate from a trial (network first, then, in the "full" space, the recipe; the "network"
    space keeps every recipe field at TrainConfig's default: empty knobs)."""
    return Candidate(sample_plan(trial, mcu), sample_knobs(trial) if kind == "full" else {})


def candidate_from_params(params: dict[str, Any], kind: str = "full", mcu: bool = False) -> Candidate:
    """The candidate a finished trial sampled, rebuilt from its parameters."""
    import optuna

    return sample(optuna.trial.FixedTrial(params), kind, mcu)


def plan_params(plan: str, mcu: bool = False) -> dict[str, Any]:
    """The trial parameters that make sample_plan return `plan` (ValueError when it is outside the space)."""
    params: dict[str, Any] = {}
    spec = plan
    plan, head = split_head(plan)
    if mcu:
        params["input_pool"] = plan.startswith("M ")
        plan_body = plan[2:] if params["input_pool"] else plan
        if not params["input_pool"]:
            params["stride2"] = plan.startswith("d")
    else:
        plan_body = plan
    stages = [stage.split() for stage in plan_body.split(" M ")]
    params["stages"] = len(stages)
    for s, convs in enumerate(stages):
        params[f"convs{s}"] = len(convs)
        for c, token in enumerate(convs):
            kind, width = token[0], int(token[1:])
            params[f"width{s}_{c}"] = width
            if s + c > 0:
                params[f"sep{s}_{c}"] = kind == "s"
    if mcu:
        params["head"] = "gap" if head == "gap" else "fc"
        if head != "gap":
            params["head_bits"] = 4 if head == "fc4" else 8
    rebuilt = sample_plan(_Checked(params), mcu)
    if rebuilt != spec:
        raise ValueError(f"plan {spec!r} is outside the search space")
    return params


class _Checked:
    """A FixedTrial-like suggester that refuses values outside the space's ranges."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def _get(self, name: str) -> Any:
        if name not in self.params:
            raise ValueError(f"no value for {name}")
        return self.params[name]

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        value = self._get(name)
        if not (low <= value <= high and (value - low) % step == 0):
            raise ValueError(f"{name} {value} outside {low}-{high} (step {step})")
        return int(value)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> float:
        value = self._get(name)
        if not low <= value <= high:
            raise ValueError(f"{name} {value} outside {low}-{high}")
        return float(value)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = self._get(name)
        if value not in choices:
            raise ValueError(f"{name} {value!r} not one of {choices}")
        return value


def default_params(kind: str = "full", mcu: bool = False) -> dict[str, Any]:
    """The trial parameters of the default model with the default recipe: the search's baseline trial.
    ValueError when the default lies outside the space."""
    from tinymnist.models.zoo import model_entry
    from tinymnist.training.config import TrainConfig

    defaults = model_entry(MODEL).defaults
    if defaults.get("dw_bn", True) or defaults.get("dropout", 0.0):
        raise ValueError(f"the default {MODEL} model is not a dw_bn=False, dropout-free PlanNet")
    params = plan_params(defaults["plan"], mcu)
    if kind == "full":
        cfg = TrainConfig()
        strength = cfg.rotate / ROTATE if cfg.augment else 0.0
        if cfg.augment and (cfg.translate != TRANSLATE * strength or cfg.scale != (1 - ZOOM * strength, 1 + ZOOM * strength)):
            raise ValueError("the default augmentation is not a multiple of the searched one")
        params.update(lr=cfg.lr, warmup=cfg.warmup, weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
                      augment=strength, clean_epochs=cfg.clean_epochs, batch_size=cfg.batch_size)
        sample_knobs(_Checked(params))
    return params


def model_args(plan: str) -> dict[str, Any]:
    """The `model_args` of a TrainConfig that trains a candidate's `plan`."""
    plan, head = split_head(plan)
    return {"plan": plan, "dw_bn": False, **({"head": head} if head != "gap" else {})}


def build_model(plan: str) -> nn.Module:
    return create_model(MODEL, **model_args(plan))


def recipe_fields(knobs: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig fields for the knobs: the augmentation strength becomes rotate/translate/scale."""
    if "augment" not in knobs:
        return dict(knobs)
    strength = float(knobs["augment"])
    fields = {k: v for k, v in knobs.items() if k != "augment"}
    fields.update(augment=strength > 0, rotate=ROTATE * strength, translate=TRANSLATE * strength,
                  scale=(1.0 - ZOOM * strength, 1.0 + ZOOM * strength))
    return fields


def int8_ram_bytes(model: nn.Module) -> int:
    """Static RAM of the model's int8 C export (arena + input ring + depthwise row + fused-pool
    rows), from shapes alone.
    Raises ValueError when the model cannot be exported."""
    from tinymnist.export.c import codegen
    from tinymnist.export.c.lower import Unsupported, lower
    from tinymnist.export.c.quantize import SchemeError, quantize

    try:
        ops = lower(model)
        # The ranges set scales and zero points only; buffer sizes depend on shapes alone.
        return codegen.plan(quantize(ops, [(0.0, 1.0)] * len(ops))).ram_bytes
    except (Unsupported, SchemeError, ArithmeticError) as exc:
        raise ValueError(str(exc)) from None


def predicted_instructions(model: nn.Module, build: tuple[str, str]) -> int:
    """Predicted instructions per inference of the model's int8 C export on build (cpu, optimization),
    from its layer shapes (export.c.cost). ValueError when it cannot be exported."""
    from tinymnist.export.c import cost

    return cost.predict_untrained(model, *build)


def measure(plan: str, build: tuple[str, str] | None = None) -> Cost:
    """Parameters, MACs and int8 RAM of `plan`'s network, and its predicted instructions on `build`."""
    from tinymnist.models.summary import summarize

    model = build_model(plan)
    summary = summarize(model)
    try:
        ram, note = int8_ram_bytes(model), ""
    except ValueError as exc:
        ram, note = None, f"no int8 C export: {exc}"
    instructions, why = None, ""
    if build is not None:
        try:
            instructions = predicted_instructions(model, build)
        except ValueError as exc:
            why = f"no int8 C export: {exc}"
    return Cost(summary.params, summary.macs, ram, note, instructions, why)


def smallest_plans(mcu: bool = False) -> list[str]:
    """The cheapest plans of the space, one per stage count (and, with mcu, with and without an input
    max-pool): one conv per stage, the narrowest width, separable after the first. Every budget's
    minimum over the space is reached by one of them."""
    low = widths(mcu)[0]
    plans = [" M ".join([f"c{low}"] + [f"s{low}"] * (stages - 1)) for stages in range(STAGES[0], STAGES[1] + 1)]
    return plans + [f"M {plan}" for plan in plans] + [f"d{plan[1:]}" for plan in plans] if mcu else plans


def describe(kind: str = "full", mcu: bool = False) -> dict[str, Any]:
    """The space as JSON-able values: stored with a study, so that a study is only continued with the
    space it was searched with."""
    network = {
        "version": 1,
        "model": f"{MODEL} (PlanNet, dw_bn=False)",
        "stages": list(STAGES), "convs_per_stage": list(CONVS_PER_STAGE), "widths": list(widths(mcu)),
        "first_conv": "dense", "between_stages": "2x2 max-pool", "conv_kinds": ["dense", "separable"],
    }
    if mcu:  # only then: the spaces of studies made before it existed are described as they were
        network["input_pool"] = [False, True]
        network["first_stride"] = [1, 2]  # 2 ("d") only without the input pool
        network["head"] = ["gap", "fc"]
        network["head_bits"] = [8, 4]  # the linear head's weights: 4 trained for 4 bits (" +fc4")
    if kind == "network":
        return {**network, "recipe": "fixed: TrainConfig defaults"}
    return {
        **network,
        "lr": [*LR, "log"], "warmup": list(WARMUP), "weight_decay": [*WEIGHT_DECAY, "log"],
        "label_smoothing": list(LABEL_SMOOTHING),
        "augment": [*AUGMENT, f"x (rotate {ROTATE} deg, translate {TRANSLATE} px, zoom +-{ZOOM})"],
        "clean_epochs": list(CLEAN_EPOCHS), "batch_size": list(BATCH_SIZES),
    }


def describe_markdown(kind: str = "full", mcu: bool = False) -> str:
    """The space in a few lines of Markdown (search.md)."""
    lines = _describe_lines(mcu)
    if kind == "network":
        return "\n".join([lines[0], "- the recipe is not searched: every trial trains with TrainConfig's defaults "
                                   "(as `tinymnist train`), only the epochs and the validation split are the search's"])
    return "\n".join(lines)


def _describe_lines(mcu: bool = False) -> list[str]:
    low, high, step = widths(mcu)
    pool = ("; optionally a 2x2 max-pool of the input image first, or else a stride-2 first conv (`d`; the "
            "microcontroller space: every layer at a quarter of the pixels)" if mcu else "")
    head = ("1x1 conv + global average pool head, or (` +fc`) a linear head on the last map, its weights in 8 or "
            "(` +fc4`) 4 bits" if mcu
            else "1x1 conv + global average pool head")
    return [
        f"- network: {STAGES[0]}-{STAGES[1]} stages with a 2x2 max-pool between them{pool}; {CONVS_PER_STAGE[0]}-"
        f"{CONVS_PER_STAGE[1]} convs per stage; each conv {low}-{high} channels (step {step}), "
        "dense (`c`) or depthwise-separable (`s`); the first conv always dense; built as "
        f"`create_model(\"{MODEL}\", plan=..., dw_bn=False)` (BN + ReLU after each conv, {head})",
        f"- peak learning rate {LR[0]}-{LR[1]} (log-uniform), warmup fraction {WARMUP[0]}-{WARMUP[1]}, weight decay "
        f"{WEIGHT_DECAY[0]:g}-{WEIGHT_DECAY[1]:g} (log-uniform), label smoothing {LABEL_SMOOTHING[0]}-{LABEL_SMOOTHING[1]}",
        f"- augmentation strength {AUGMENT[0]}-{AUGMENT[1]} x (rotation {ROTATE:g} deg, shift {TRANSLATE:g} px, "
        f"zoom +-{ZOOM * 100:g}%), clean last epochs {CLEAN_EPOCHS[0]}-{CLEAN_EPOCHS[1]}, batch size "
        f"{', '.join(map(str, BATCH_SIZES))}",
        "- everything else: TrainConfig's defaults (SGD with Nesterov momentum 0.9, one-cycle schedule)",
    ]
