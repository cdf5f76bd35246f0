"""The single registry of named model constructors (timm style).

Every model a spec can name is registered here with ``@register_model``; specs and the CLI
resolve names through :func:`create_model`.  Model modules import only :func:`register_model`
from here; this module never imports them.  The first lookup loads the catalogue
:data:`MODEL_CATALOG` (``repro.models.catalog``, which imports every family) by name, so there
is no import cycle between the registry and the models (no import-time scanning, no hidden
global state beyond this table).

A registered name always returns the same type of model (a classifier name never becomes a flow
network with other arguments), and every registered model follows the contract of
:mod:`repro.models.contract` (declared inputs, ``example_inputs``, ``forward_output``).

    >>> from repro.registry import create_model, list_models
    >>> list_models("r2plus1d*")
    ['r2plus1d_18', ...]
    >>> model = create_model("r2plus1d_18", num_classes=400)
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from repro.models.names import MODEL_NAMES

if TYPE_CHECKING:  # torch is imported by the models, not by a name lookup (`list` needs no torch)
    import torch.nn as nn

__all__ = [
    "ModelEntry",
    "UnknownModelError",
    "register_model",
    "create_model",
    "list_models",
    "is_model",
    "model_entry",
    "suggest_model",
]


class UnknownModelError(KeyError):
    """Raised when a name is not in the registry; the message carries a suggestion."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., nn.Module]
    module: str
    paper: str | None = None
    default_input: tuple[int, ...] | None = None  # (N, C, T, H, W) or (N, C, H, W)
    tags: tuple[str, ...] = field(default_factory=tuple)
    test_input: tuple[int, ...] | None = None  # a small input for the contract test (default: default_input)


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    paper: str | None = None,
    default_input: tuple[int, ...] | None = None,
    tags: tuple[str, ...] = (),
    test_input: tuple[int, ...] | None = None,
):
    """Register a model constructor under ``name`` (default: the function's name).

    Usable bare (``@register_model``) or with metadata
    (``@register_model(paper="trajectorynet", default_input=(1, 3, 16, 112, 112))``).
    ``test_input``: a small input shape at which the contract test runs the model quickly.
    """

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _MODELS and _MODELS[key].fn is not f:
            raise ValueError(f"model '{key}' is registered twice ({_MODELS[key].module} and {f.__module__})")
        _MODELS[key] = ModelEntry(key, f, f.__module__, paper, default_input, tuple(tags), test_input)
        return f

    return wrap(fn) if fn is not None else wrap


#: The module that imports every model family (imported by name on the first lookup).
MODEL_CATALOG = "repro.models.catalog"


def _ensure_loaded() -> None:
    # By name, not an import statement: the models import this module, never the reverse.
    importlib.import_module(MODEL_CATALOG)


def suggest_model(name: str) -> str | None:
    _ensure_loaded()
    close = difflib.get_close_matches(name, list(_MODELS), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown(name: str) -> UnknownModelError:
    hint = suggest_model(name)
    msg = f"unknown model '{name}'"
    msg += f"; did you mean '{hint}'?" if hint else "; see `python -m repro list --models`"
    return UnknownModelError(msg)


def is_model(name: str) -> bool:
    # A built-in name is known without importing the families (and torch): specs load fast.
    if name in MODEL_NAMES:
        return True
    _ensure_loaded()
    return name in _MODELS


def model_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _MODELS:
        raise _unknown(name)
    return _MODELS[name]


def create_model(name: str, pretrained_file: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model.  ``pretrained_file`` names a local checkpoint (never a hub)."""
    entry = model_entry(name)
    if pretrained_file is not None:
        kwargs["pretrained_file"] = pretrained_file
    return entry.fn(**kwargs)


def list_models(pattern: str = "*", paper: str | None = None, builtin: bool = False) -> list[str]:
    """Sorted names matching a shell-style ``pattern`` (and optionally a paper).  ``builtin``: only
    the models repro's own families register (``repro.models.*``), not ones a caller or a test added."""
    _ensure_loaded()
    return sorted(
        n for n, e in _MODELS.items() if fnmatch.fnmatch(n, pattern) and (paper is None or e.paper == paper)
        and (not builtin or e.module.startswith("repro.models."))
    )
