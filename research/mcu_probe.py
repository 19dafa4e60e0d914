"""Cost probe for microcontroller candidates: params, MACs, flash, RAM and QEMU instruction counts
of a plan's int8 C with untrained (BatchNorm statistics from a few batches) weights. Instruction
counts of these kernels do not depend on the weights' values, so this measures a plan's cost
before training it.

    python research/mcu_probe.py "c8 M s16 s16 M s24" ["plan2" ...] [--residual] [--head fc|fc4] [--cpus cortex-m4,cortex-m0]

Plans are built as PlanNet(plan, dw_bn=False), with residual=True under --residual (shortcuts wherever a
3x3 conv keeps the width) and a linear head under --head fc (fc4: its weights in 4 bits).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinymnist.data.mnist import load_mnist
from tinymnist.data.normalize import normalize
from tinymnist.export.c import codegen, toolchain
from tinymnist.export.c.c_export import quantize_model, write_files
from tinymnist.models.summary import summarize
from tinymnist.models.zoo import PlanNet, count_parameters


def probe(plan: str, data, opts=("-Os", "-O2"), cpus=("cortex-m4",), residual: bool = False, head: str = "gap") -> dict:
    torch.manual_seed(0)
    model = PlanNet(plan, dw_bn=False, residual=residual, head=head)
    model.train()
    with torch.no_grad():  # settle BatchNorm statistics so the calibration ranges are sane
        for i in range(5):
            x = torch.from_numpy(normalize(np.array(data.train_images[i * 512:(i + 1) * 512])))
            model(x.reshape(-1, 1, 28, 28))
    model.eval()
    int_model = quantize_model(model, data.train_images)
    row = {"plan": plan, **({"residual": True} if residual else {}), **({"head": head} if head != "gap" else {}),
           "params": count_parameters(model),
           "macs": summarize(model).macs,
           "static_ram": codegen.plan(int_model).ram_bytes}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        header, source = codegen.render(int_model, {"model": "probe", "params": count_parameters(model), "source": "probe"})
        write_files(src, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
        for cpu in cpus:
            target = toolchain.TARGETS[cpu]
            for opt in opts:
                size = toolchain.model_size(src, target, opt)
                elf = toolchain.arm_build(src, target, src / f"{cpu}{opt}.elf", opt)
                q = toolchain.qemu_run(elf, target, data.test_images[:2])
                row[f"{cpu}{opt}"] = {"instr": int(np.median(q.instructions)), "flash": size.flash,
                                      "ram": row["static_ram"] + size.stack}
    return row


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("plans", nargs="+")
    p.add_argument("--cpus", default="cortex-m4")
    p.add_argument("--opts", default="-Os,-O2")
    p.add_argument("--residual", action="store_true", help="PlanNet(residual=True): shortcuts")
    p.add_argument("--head", default="gap", choices=("gap", "fc", "fc4"), help="PlanNet's head (default gap)")
    a = p.parse_args()
    data = load_mnist(None)
    for plan in a.plans:
        r = probe(plan, data, tuple(a.opts.split(",")), tuple(a.cpus.split(",")), a.residual, a.head)
        print(json.dumps(r), flush=True)
        with open("research/mcu_probe.jsonl", "a") as f:
            f.write(json.dumps(r) + "\n")
