"""Training TVNet on ground-truth pairs and measuring EPE (TVNet Table 1, Sec. 5.1).

    >>> model = TVNet(1, 1, 50, trainable="all", image_size=(96, 128))
    >>> history = train_tvnet_on_pairs(model, train_pairs, iters=200)          # supervised EPE
    >>> evaluate_epe(TVNetFlow(model), held_out_pairs)["mean_epe"]
    >>> evaluate_epe("tvl1-5-5-50", held_out_pairs)["mean_epe"]

Loss = mean EPE (Eq. 14) over known GT pixels; mini-batches drawn uniformly with replacement from
the training pairs (full batch when ``batch_size`` covers them all).  The optimiser is the caller's
(the spec's ``optimizer``/``lr``/``momentum``): the paper's batch gradient descent at lr 0.05
(Sec. 5.1) is ``optimizer="sgd", momentum=0``; the release's ``tvnet_supervised_training.py`` uses
Adam with lr 0.005.
``loss="energy"`` trains without GT on the TV-L1 energy ``L_f`` (Eq. 1 with exact warping).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Literal, Sequence

import numpy as np
import torch
from tqdm import tqdm

from repro.flow.methods import FlowMethod, TVNetFlow, create_flow_method
from repro.flow.pairs import FlowPair
from repro.models.tvnet import TVNet, epe_loss, tvnet_flow_loss
from repro.ops.epe import end_point_error

__all__ = ["pairs_to_tensors", "train_tvnet_on_pairs", "training_loss", "evaluate_epe", "endpoint_error"]


def endpoint_error(flow: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Average end-point error, Eq. (14), over ``valid`` pixels (all when ``None``); ``flow``,
    ``target`` ``(H, W, 2)`` arrays (float64, :func:`repro.ops.epe.end_point_error`)."""
    flow64, target64 = (torch.from_numpy(np.ascontiguousarray(a, np.float64)) for a in (flow, target))
    error = end_point_error(flow64, target64, dim=-1).numpy()
    if valid is not None:
        error = error[valid]
    return float(error.mean()) if error.size else float("nan")


def pairs_to_tensors(pairs: Sequence[FlowPair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack equal-size pairs: frames ``(N, C, H, W)`` float in [0, 255], flow ``(N, 2, H, W)``,
    valid ``(N, H, W)`` bool."""
    if not pairs:
        raise ValueError("pairs: empty")
    sizes = {p.size for p in pairs}
    if len(sizes) != 1:
        raise ValueError(f"pairs: all pairs must have the same size to be batched, got {sorted(sizes)}")
    missing = [p.name for p in pairs if p.flow is None]
    if missing:
        raise ValueError(f"pairs without ground-truth flow: {missing[:5]}")

    def frames(key: str) -> torch.Tensor:
        stack = np.stack([getattr(p, key) if getattr(p, key).ndim == 3 else getattr(p, key)[..., None] for p in pairs])
        return torch.from_numpy(stack.astype(np.float32)).permute(0, 3, 1, 2).contiguous()

    flow = torch.from_numpy(np.stack([np.where(p.valid[..., None], p.flow, 0) for p in pairs]).astype(np.float32))
    valid = torch.from_numpy(np.stack([p.valid for p in pairs]))
    return frames("frame0"), frames("frame1"), flow.permute(0, 3, 1, 2).contiguous(), valid


def train_tvnet_on_pairs(
    model: TVNet,
    pairs: Sequence[FlowPair],
    iters: int,
    lr: float = 0.005,
    *,
    batch_size: int = 4,
    loss: Literal["epe", "energy"] = "epe",
    seed: int = 0,
    optimizer: Literal["adam", "sgd"] = "adam",
    momentum: float = 0.0,
    progress: bool = True,
    log_every: int = 10,
) -> dict[str, Any]:
    """Train the trainable parameters of ``model`` (``u0`` and/or the filters, Sec. 4.2) in place.

    ``pairs`` must share one size, equal to ``model.image_size`` when ``u0`` is trained.  Returns
    ``{"losses": [per-iteration loss], "seconds": wall time, "iters", "lr", "loss", "batch_size",
    "optimizer", "momentum"}``.  Per-iteration losses are of random mini-batches; whether training
    lowered the loss is :func:`training_loss` before and after, on every pair.
    """
    if iters < 0:
        raise ValueError(f"iters: expected >= 0, got {iters}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
    if loss not in ("epe", "energy"):
        raise ValueError(f"loss: expected 'epe' or 'energy', got {loss!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{model.name}: nothing to train (trainable={model.trainable!r}); build it with "
                         "trainable='u0' or 'all' and image_size=(H, W)")
    frame0, frame1, target, valid = pairs_to_tensors(pairs) if loss == "epe" else _frames_only(pairs)
    if model.u0 is not None and tuple(frame0.shape[-2:]) != model.image_size:
        raise ValueError(f"pairs are {tuple(frame0.shape[-2:])} but the model's u0 is laid out for "
                         f"image_size={model.image_size}")
    generator = torch.Generator().manual_seed(seed)
    optimiser = (torch.optim.Adam(params, lr=lr) if optimizer == "adam"
                 else torch.optim.SGD(params, lr=lr, momentum=momentum))
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(iters), desc=f"train {model.name} ({loss})", file=sys.stderr, disable=not progress)
    for step in bar:
        index = (torch.arange(len(frame0)) if batch_size >= len(frame0)  # full batch (the paper)
                 else torch.randint(len(frame0), (batch_size,), generator=generator))  # with replacement (release)
        flow = model(frame0[index], frame1[index])
        if loss == "epe":
            value = epe_loss(flow, target[index], valid[index])
        else:
            value = tvnet_flow_loss(model, flow, frame0[index], frame1[index])
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        losses.append(float(value.detach()))
        if progress and (step % log_every == 0 or step == iters - 1):
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    return {"losses": losses, "seconds": time.perf_counter() - start, "iters": iters, "lr": lr, "loss": loss,
            "batch_size": batch_size, "optimizer": optimizer, "momentum": momentum}


@torch.no_grad()
def training_loss(model: TVNet, pairs: Sequence[FlowPair], chunk: int = 16) -> float:
    """Mean EPE loss (Eq. 14, as trained) of ``model`` over every pair of ``pairs``, in eval mode:
    the deterministic training loss whose before/after says whether training lowered it."""
    frame0, frame1, target, valid = pairs_to_tensors(pairs)
    total, count = 0.0, 0
    for i in range(0, len(frame0), chunk):
        part = slice(i, i + chunk)
        n = len(frame0[part])
        total += float(epe_loss(model(frame0[part], frame1[part]), target[part], valid[part])) * n
        count += n
    return total / count


def _frames_only(pairs: Sequence[FlowPair]):
    sizes = {p.size for p in pairs}
    if len(sizes) != 1:
        raise ValueError(f"pairs: all pairs must have the same size to be batched, got {sorted(sizes)}")
    stack0 = np.stack([p.frame0 for p in pairs]).astype(np.float32)
    stack1 = np.stack([p.frame1 for p in pairs]).astype(np.float32)
    to_t = lambda a: torch.from_numpy(a if a.ndim == 4 else a[..., None]).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_t(stack0), to_t(stack1), None, None


def evaluate_epe(method: FlowMethod | TVNet | str, pairs: Sequence[FlowPair], *, batch: bool = True) -> dict[str, Any]:
    """Mean EPE of ``method`` (a flow method, its name, or a TVNet) over ``pairs`` with GT.

    Returns ``{"method", "mean_epe", "per_pair": {name: epe}, "pairs": count}``; the mean is over
    pairs (each pair's EPE averaged over its known-GT pixels), as Table 1 averages sequences.
    """
    if isinstance(method, str):
        method = create_flow_method(method)
    elif isinstance(method, TVNet):
        method = TVNetFlow(method)
    scored = [p for p in pairs if p.flow is not None]
    if not scored:
        raise ValueError("evaluate_epe: no pair has ground-truth flow")
    frames0, frames1 = [p.frame0 for p in scored], [p.frame1 for p in scored]
    flows = method.batch(frames0, frames1) if batch else [method(a, b) for a, b in zip(frames0, frames1)]
    per_pair = {p.name: endpoint_error(f, p.flow, p.valid) for p, f in zip(scored, flows)}
    return {"method": method.name, "mean_epe": float(np.mean(list(per_pair.values()))), "per_pair": per_pair,
            "pairs": len(scored)}
