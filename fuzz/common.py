"""Shared by the fuzz targets: run a target function under atheris, where the only allowed failures
are the exception types the caller expects (a UserError for bad input); anything else is a finding."""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris


def fuzz(target: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
