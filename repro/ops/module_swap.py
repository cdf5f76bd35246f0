"""One context manager for export-time switches: set an attribute on every submodule of a type,
restore it on exit (``tensor_sketch.real_spectra``, ``deploy.tensorrt.engine.plugin_samplers``)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

__all__ = ["set_on_submodules"]


@contextlib.contextmanager
def set_on_submodules(module: nn.Module, kind: type, name: str, value: Any) -> Iterator[int]:
    """Within the block every submodule of ``module`` that is a ``kind`` has ``name = value``;
    each gets its own previous value back on exit.  Yields how many it switched."""
    previous = {sub: getattr(sub, name) for sub in module.modules() if isinstance(sub, kind)}
    for sub in previous:
        setattr(sub, name, value)
    try:
        yield len(previous)
    finally:
        for sub, old in previous.items():
            setattr(sub, name, old)
