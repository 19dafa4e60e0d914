"""Fuzz configs read from JSON (`train --config`, a search's best.json): any bytes that parse as JSON
-> a TrainConfig or a ValueError naming the fields.

    python fuzz/fuzz_config.py fuzz/corpus/config -max_total_time=600 -rss_limit_mb=2048
"""

import json

import atheris
import torch  # noqa: F401  (imported before instrumentation: only tinymnist's code is instrumented)

with atheris.instrument_imports():
    from tinymnist.training.config import TrainConfig

from common import fuzz  # noqa: E402


def one_input(data: bytes) -> None:
    try:
        values = json.loads(data)
    except (ValueError, RecursionError):
        return  # not JSON: json's business, not ours
    try:
        TrainConfig.from_dict(values)
    except ValueError:
        return


if __name__ == "__main__":
    fuzz(one_input)
