"""Fuzz the server's request decoding: (content type, body) -> image bytes, a UserError (400) or an
unsupported type (415). Nothing else.

    python fuzz/fuzz_request.py fuzz/corpus/request -max_total_time=600 -rss_limit_mb=2048
"""

import atheris
import fastapi  # noqa: F401  (imported before instrumentation: only tinymnist's code is instrumented)
import torch  # noqa: F401

with atheris.instrument_imports():
    from tinymnist.errors import UserError
    from tinymnist.serve import server as serve

from common import fuzz  # noqa: E402

CONTENT_TYPES = ["image/png", "application/json", "application/json; charset=utf-8", "text/plain", ""]


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    choice = provider.ConsumeIntInRange(0, len(CONTENT_TYPES))
    content_type = CONTENT_TYPES[choice] if choice < len(CONTENT_TYPES) else provider.ConsumeUnicodeNoSurrogates(30)
    body = provider.ConsumeBytes(provider.remaining_bytes())
    try:
        image = serve.decode_request(content_type, body)
    except (UserError, serve._Unsupported):
        return
    assert isinstance(image, bytes)


if __name__ == "__main__":
    fuzz(one_input)
