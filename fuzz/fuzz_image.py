"""Fuzz image decoding + preprocessing: any bytes -> a 28x28 uint8 digit, or a UserError.

    python fuzz/fuzz_image.py fuzz/corpus/image -max_total_time=600 -rss_limit_mb=2048
"""

import atheris
import numpy as np  # noqa: F401  (imported before instrumentation: only tinymnist's code is instrumented)
import PIL.Image  # noqa: F401

with atheris.instrument_imports():
    from tinymnist.data.preprocess import load_digit
    from tinymnist.errors import UserError

from common import fuzz  # noqa: E402


def one_input(data: bytes) -> None:
    try:
        digit = load_digit(data)
    except UserError:
        return
    assert digit.shape == (28, 28) and digit.dtype.name == "uint8"


if __name__ == "__main__":
    fuzz(one_input)
