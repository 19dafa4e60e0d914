"""Fuzz the IDX reader: gzip or raw bytes -> an array, or a UserError. Never another exception, never
a huge allocation (a lying header, a gzip bomb).

    python fuzz/fuzz_idx.py fuzz/corpus/idx -max_total_time=600 -rss_limit_mb=2048
"""

import atheris

with atheris.instrument_imports():
    from tinymnist.data.mnist import gunzip, parse_idx
    from tinymnist.errors import UserError

from common import fuzz  # noqa: E402


def one_input(data: bytes) -> None:
    try:
        raw = gunzip(data, "input") if data[:2] == b"\x1f\x8b" else data
        array = parse_idx(raw)
    except UserError:
        return
    assert array.nbytes == len(raw) - 4 - 4 * array.ndim


if __name__ == "__main__":
    fuzz(one_input)
