"""Round MC7's candidates and their estimated costs (docs/research.md), as the round's rule used them.

When the round was written the int8 C export had no kernel for a stride-2 first conv ("d" plans) or a
linear head (head="fc"), so their costs are estimated from proxies the cost model priced then
(export/c/cost.py; both have kernels and cost features now, and benchmarks/mcu.py measures them):
* a "dN" first conv reads all 784 pixels and writes a 14x14 map, as many taps per output as the
  proxy "M cN" (the image max-pooled as it loads, then a stride-1 conv at 14x14), whose cost is used;
  its 784-byte input replaces the proxy's 196-byte pooled image in the RAM estimate;
* a linear head on the last C x H x W map: the proxy's 1x1 + global-average head plus
  (C*H*W - C) * 10 multiply-accumulates at `FC_INSTR_PER_MAC` instructions each (a scalar int8 MAC
  loop: two loads, one multiply-accumulate, loop overhead, about 2 on a Cortex-M4 with dual 16-bit
  multiplies, 4 on a Cortex-M0) and its weights in flash.
Flash is estimated as the measured flash of the incumbent plus one byte per extra parameter.
Usage: python research/mc7_candidates.py
"""

import json
import sys

from tinymnist.export.c import codegen
from tinymnist.export.c.cost import predict_untrained, shape_model
from tinymnist.models.summary import summarize
from tinymnist.models.zoo import PlanNet, count_parameters

FC_INSTR_PER_MAC = {"cortex-m4": 2.0, "cortex-m0": 4.0}
INCUMBENT_FLASH = 6668  # mcu-tiny's measured -Os flash (benchmarks/results/mcu.json, 2026-12-07)
INCUMBENT_PARAMS = 2458
IMAGE_BYTES = 784

CANDIDATES = {
    "TA": ("c4 M s8 M s16 s16 M s24 s24", "gap"),
    "DA": ("d4 s8 M s16 s16 M s24 s24", "gap"),
    "DB": ("d8 s8 M s16 s16 M s24 s24", "gap"),
    "DC": ("d8 s12 M s16 s16 M s24 s24", "gap"),
    "DD": ("d8 s8 s12 M s16 s16 M s24 s24", "gap"),
    "FA": ("c4 M s8 M s16 s16 M s24 s12", "fc"),
    "FB": ("c4 M s8 M s16 s16 M s16 s8", "fc"),
    "FD": ("d8 s8 M s16 s16 M s24 s12", "fc"),
}


def row(name: str, plan: str, head: str) -> dict:
    model = PlanNet(plan, dw_bn=False, head=head).eval()
    proxy_plan = plan.replace("d", "M c", 1) if plan.startswith("d") else plan
    proxy = PlanNet(proxy_plan, dw_bn=False).eval()
    info = summarize(model)
    out = {"name": name, "plan": plan, "head": head, "params": count_parameters(model), "macs": info.macs}
    fc_extra = 0
    if head == "fc":
        features = model.net[-1].in_features  # C * H * W; the proxy's head sums the H * W pixels first
        fc_extra = (features - features // _pixels(model)) * 10
    for cpu in ("cortex-m4", "cortex-m0"):
        out[cpu] = round(predict_untrained(proxy, cpu, "-Os") + fc_extra * FC_INSTR_PER_MAC[cpu])
    ram = codegen.plan(shape_model(proxy)).ram_bytes
    out["ram_est"] = ram + (IMAGE_BYTES - IMAGE_BYTES // 4 if plan.startswith("d") else 0)
    out["flash_est"] = INCUMBENT_FLASH + out["params"] - INCUMBENT_PARAMS
    return out


def _pixels(model: PlanNet) -> int:
    """Pixels of the last map (height x width) of a head="fc" model."""
    import torch

    feats = model.net[:-2](torch.zeros(1, 1, 28, 28))
    return feats.shape[-1] * feats.shape[-2]


if __name__ == "__main__":
    rows = [row(name, *spec) for name, spec in CANDIDATES.items()]
    for r in rows:
        print(f"{r['name']:3s} {r['plan']:34s} {r['head']:3s} params {r['params']:5d} MACs {r['macs']:7d} "
              f"M4 {r['cortex-m4']:7d} M0 {r['cortex-m0']:8d} RAM~{r['ram_est']:5d} flash~{r['flash_est']:5d}")
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=1))
