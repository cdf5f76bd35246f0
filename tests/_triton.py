"""Load a module of Triton kernels in Triton's CPU interpreter for a test module's fixtures."""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest


def load_kernel_module(name: str, interpret: bool) -> ModuleType:
    """(Re)import ``name`` with TRITON_INTERPRET set as asked.

    ``@triton.jit`` decides interpreter vs GPU when the module is imported, so the env var must be
    set before that import; it is restored afterwards so other tests see the original setting.
    """
    old = os.environ.get("TRITON_INTERPRET")
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    try:
        return importlib.reload(importlib.import_module(name))
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old


def interpreted(name: str) -> Iterator[ModuleType]:
    """Fixture body: ``name`` loaded in the interpreter, re-loaded as it was afterwards."""
    module = load_kernel_module(name, interpret=True)
    if not module.kernel_is_interpreted():
        pytest.skip("Triton's interpreter (TRITON_INTERPRET=1) could not be enabled")
    yield module
    load_kernel_module(name, interpret=False)
