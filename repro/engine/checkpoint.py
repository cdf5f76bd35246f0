"""Checkpoints that survive ``kill -9`` and load with ``torch.load(weights_only=True)``.

A training checkpoint holds the model, optimiser and AMP-scaler states, the position in the
run (completed epochs, batches done in the current epoch), the running statistics of the
current epoch, the history, and every random-number-generator state (torch CPU and CUDA,
NumPy, Python's ``random``) converted to tensors and plain types, so that nothing but
tensors, numbers, strings, lists and dicts is pickled.  Files are written atomically: to a
temporary file in the same folder, flushed and fsync'ed, then ``os.replace``'d.

Layout of a row's work folder (:func:`repro.layout.row_work_dir`)::

    seed<k>/last.pt     the latest training state (resumed from)
    seed<k>/final.pt    the trained weights and final metrics (what ``init: row:...`` loads)
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from repro.fileio import atomic_torch_save  # noqa: F401 - re-exported: the one atomic save
from repro.layout import row_work_dir, seed_dir  # noqa: F401 - re-exported: where a row's checkpoints live

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_torch_save",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "seed_everything",
    "load_init_weights",
    "row_work_dir",
    "seed_dir",
    "unwrap",
]

CHECKPOINT_FORMAT = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.Module) and \
        isinstance(getattr(model, "module"), nn.Module) else model


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (never unpickles arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file in any load failure
        raise ValueError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors and plain types (``weights_only``-loadable)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- initialisation
def _model_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict"):
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise ValueError("checkpoint holds no 'model' or 'state_dict' entry and is not a bare state dict")


def load_init_weights(model: nn.Module, path: Path | str, *, strict_shapes: bool = False) -> dict[str, list[str]]:
    """Initialise ``model`` from a local checkpoint (ours, or a bare / ``state_dict`` one).

    Entries whose shape differs from the model's (the classifier when the number of classes
    changes, e.g. Kinetics -> Something-Something / UCF101 in TrajectoryNet Sec. 4.3) are
    dropped and keep their fresh initialisation; ``strict_shapes=True`` makes that an error.
    A ``module.`` prefix (DDP-saved weights) is removed.  Returns what was loaded, dropped,
    missing and unexpected.
    """
    state = _model_state(load_checkpoint(path))
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if dropped and strict_shapes:
        raise ValueError(f"{path}: shape mismatch for {dropped}")
    usable = {k: v for k, v in state.items() if k in own and k not in dropped}
    if not usable:
        raise ValueError(f"{path}: no parameter of the checkpoint matches the model "
                         f"(checkpoint keys e.g. {list(state)[:3]}, model keys e.g. {list(own)[:3]})")
    missing, unexpected = model.load_state_dict(usable, strict=False)
    return {"loaded": sorted(usable), "dropped": dropped, "missing": list(missing),
            "unexpected": sorted(set(state) - set(own))}
