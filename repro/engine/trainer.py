"""The training loop: train a video classifier, checkpoint it, resume it, evaluate it.

:func:`fit` trains ``model`` on ``train_set`` and evaluates it on ``val_set`` as a row's
:class:`~repro.spec.schema.RunConfig` says (see :func:`resolve_settings` for the engine's
defaults).  Datasets are map-style and return dicts ``{"video": (C,T,H,W) float, "label": int,
"index": int}`` plus optional ``"flow_fwd"``/``"flow_bwd"`` ``(2,T,H,W)``; a test sample may hold
several views ``(V,C,T,H,W)`` whose scores are averaged.

Models follow :mod:`repro.models.contract`: they declare their ``inputs`` (a batch's ``video``
and, when the run gives flow, the ``flow_fwd``/``flow_bwd`` they take) and
``forward_output`` gives a :class:`~repro.models.contract.ModelOutput`: logits; named auxiliary
losses, added to the cross-entropy with ``RunConfig.loss_weights`` (default 1.0; e.g.
TrajectoryNet's unsupervised MotionNet loss, Sec. 3.3, Eq. 7); and an optional predicted flow
``(B,2,T',H,W)`` scored by EPE against the dataset's ground truth.

Determinism (what makes ``kill -9`` + resume equal an uninterrupted run):

* data order: :func:`repro.engine.distributed.epoch_permutation` of ``(seed, epoch)``;
* augmentation: every sample is loaded under its own seed (:class:`SeededDataset`), a pure
  function of ``(seed, epoch, position)``, whatever the workers or the number of processes;
* everything else random (dropout, ...) draws from the global RNGs, saved in every checkpoint;
* the learning rate is a pure function of the fractional epoch (:func:`repro.engine.optim.lr_factor`).
"""
from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from repro.engine import checkpoint as ckpt_io
from repro.engine.distributed import TrainBatchSampler, broadcast_flag, dist_info, eval_shard
from repro.engine.metrics import ClassificationMeter, EPEMeter
from repro.engine.optim import apply_partial_bn, build_optimizer, lr_factor, set_learning_rate
from repro.models.contract import ModelOutput, OutputForward, model_inputs, model_output
from repro.spec.schema import LRSchedule, RunConfig

__all__ = ["TrainSettings", "resolve_settings", "same_settings", "SeededDataset", "FitResult", "fit", "evaluate",
           "forward_model", "autocast_dtype"]

log = logging.getLogger("repro.engine")

#: What a ``RunConfig`` field left empty becomes (the mini protocol of /work/notes/SPECS_GUIDE).
ENGINE_DEFAULTS: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 16,
    "lr": 0.05,
    "weight_decay": 1e-4,
    "lr_schedule": {"type": "cosine"},
}


@dataclass
class TrainSettings:
    """Everything the loop needs, resolved from a ``RunConfig`` (plain types, checkpointable)."""

    epochs: int = 6
    batch_size: int = 16
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: dict[str, Any] = field(default_factory=lambda: {"type": "cosine"})
    warmup_epochs: float = 0.0
    clip_grad: float | None = None
    partial_bn: bool = False
    branch_lr: dict[str, float] = field(default_factory=dict)
    loss_weights: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    eval_batch_size: int | None = None
    num_workers: int = 0
    amp: bool = True  # autocast on GPU (bf16, or fp16 + GradScaler); always off on CPU
    checkpoint_interval_s: float = 600.0  # also checkpoint mid-epoch this often
    eval_every: int = 0  # evaluate every N epochs into the history (0: only at the end)
    identity: dict[str, Any] = field(default_factory=dict)  # what else defines the run (model, data)

    @property
    def schedule(self) -> LRSchedule:
        return LRSchedule(**self.lr_schedule)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must match for a checkpoint to be resumed."""
        keep = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_schedule",
                "warmup_epochs", "clip_grad", "partial_bn", "branch_lr", "loss_weights", "seed", "identity")
        return {k: v for k, v in asdict(self).items() if k in keep}


def same_settings(stored: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """Whether a checkpoint's stored fingerprint describes the current run.  The run's
    ``identity.config`` (a ``RunConfig`` dump) is compared without fields at their default, so a
    checkpoint written before a defaulted field existed (e.g. ``motionnet_pretrain``) still matches."""
    if stored is None:
        return False

    def normalised(fp: dict[str, Any]) -> dict[str, Any]:
        identity = fp.get("identity") or {}
        config = identity.get("config")
        if not isinstance(config, dict):
            return fp
        defaults = {name: f.get_default(call_default_factory=True) for name, f in RunConfig.model_fields.items()}
        if config.get("flow") == "none":  # the spec's explicit "none" is the default, no flow
            config = {**config, "flow": None}
        kept = {k: v for k, v in config.items() if k not in defaults or v != defaults[k]}
        model_args = identity.get("model_args")
        if isinstance(model_args, dict) and "num_classes" in identity:
            # the spec's head size (174 for Sth-Sth, 400 for Kinetics) is replaced by the data's
            # class count, which ``identity.num_classes`` records: the built model is the same
            model_args = {k: v for k, v in model_args.items() if k != "num_classes"}
        return {**fp, "identity": {**identity, "config": kept, "model_args": model_args}}

    return normalised(stored) == normalised(current)


def resolve_settings(cfg: RunConfig | None, *, seed: int, **overrides: Any) -> TrainSettings:
    """:class:`TrainSettings` from a row's ``RunConfig``, empty fields taking :data:`ENGINE_DEFAULTS`."""
    c = cfg.model_dump() if cfg is not None else {}

    def pick(key: str) -> Any:
        return c.get(key) if c.get(key) is not None else ENGINE_DEFAULTS[key]

    settings = TrainSettings(
        epochs=int(pick("epochs")), batch_size=int(pick("batch_size")), optimizer=c.get("optimizer", "sgd"),
        lr=float(pick("lr")), momentum=float(c.get("momentum", 0.9)), weight_decay=float(pick("weight_decay")),
        lr_schedule=dict(pick("lr_schedule")), warmup_epochs=float(c.get("warmup_epochs", 0.0)),
        clip_grad=c.get("clip_grad"), partial_bn=bool(c.get("partial_bn", False)),
        branch_lr=dict(c.get("branch_lr") or {}), loss_weights=dict(c.get("loss_weights") or {}), seed=seed,
    )
    for key, value in overrides.items():
        if not hasattr(settings, key):
            raise TypeError(f"unknown training setting {key!r}")
        if value is not None:
            setattr(settings, key, value)
    if settings.epochs < 1:
        raise ValueError(f"epochs: expected >= 1, got {settings.epochs}")
    return settings


# ------------------------------------------------------------------------------------- data
@contextlib.contextmanager
def _seeded_rng(seed: int):
    """Run a block under ``seed`` for torch, NumPy and ``random``; restore the outer states."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2 ** 32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SeededDataset(Dataset):
    """Wraps a dataset so that ``ds[(index, seed)]`` loads sample ``index`` under RNG ``seed``.

    Random augmentation (crop position, flip, frame offset) then depends only on the seed the
    :class:`~repro.engine.distributed.TrainBatchSampler` assigned to the sample.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        with _seeded_rng(seed):
            return self.dataset[index]


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return torch.utils.data.default_collate(samples)


# ------------------------------------------------------------------------------------ model
def forward_model(model: nn.Module, batch: dict[str, Any], device: torch.device, pass_flow: bool) -> ModelOutput:
    """Run the model on a batch: ``video`` and, with ``pass_flow``, the other inputs the model
    declares that the batch holds; the model's :class:`~repro.models.contract.ModelOutput`.
    ``model`` may be ``DistributedDataParallel(OutputForward(net))``."""
    video = batch["video"].to(device, non_blocking=True)
    kwargs = {}
    if pass_flow:
        for key in model_inputs(model)[1:]:
            if key in batch:
                kwargs[key] = batch[key].to(device, non_blocking=True)
    return model_output(model, video, **kwargs)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16; ``None`` (no autocast) on CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, num_classes: int, batch_size: int = 8,
             num_workers: int = 0, device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
             pass_flow: bool = False, progress: bool = False) -> dict[str, float]:
    """Video-level metrics (percent) of ``model`` on ``dataset``, all processes together.

    Each process evaluates its shard (:func:`repro.engine.distributed.eval_shard`); counts are
    all-reduced.  A sample of several views ``(V,C,T,H,W)`` is scored by the mean of the views'
    softmax scores.  ``epe`` is added when the model predicts flow and the data has GT flow.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    info = dist_info()
    bare = ckpt_io.unwrap(model)  # no DDP forward in eval: shards may differ in length by one
    was_training = bare.training
    bare.eval()
    shard = Subset(dataset, eval_shard(len(dataset), info.rank, info.world_size))  # type: ignore[arg-type]
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG untouched
    meter, epe = ClassificationMeter(num_classes), EPEMeter()
    for batch in tqdm(loader, desc="eval", unit="batch", leave=False, disable=not progress or not info.is_main,
                      file=sys.stderr):
        video = batch["video"]
        views = 1
        if video.dim() == 6:  # (B, V, C, T, H, W): several clips x crops per video
            views = video.shape[1]
            batch = dict(batch)
            batch["video"] = video.flatten(0, 1)
            for key in ("flow_fwd", "flow_bwd"):
                if key in batch and batch[key].dim() == 6:
                    batch[key] = batch[key].flatten(0, 1)
        with _autocast(device, amp_dtype):
            out = forward_model(bare, batch, device, pass_flow)
        scores = out.logits.float().softmax(dim=1)
        scores = scores.view(-1, views, scores.shape[1]).mean(dim=1)
        meter.update(scores, batch["label"])
        pred_flow = out.flow
        if isinstance(pred_flow, torch.Tensor) and "flow_fwd" in batch:
            gt = batch["flow_fwd"].to(pred_flow.device)
            steps = min(pred_flow.shape[2], gt.shape[2])  # a model may predict T-1 flows for T frames
            pred_flow, gt = pred_flow[:, :, :steps].float(), gt[:, :, :steps].float()
            valid = batch.get("flow_fwd_valid")  # (B, T) or (B, V, T): False where frame t+1 does not exist
            if isinstance(valid, torch.Tensor):
                valid = valid.reshape(-1, valid.shape[-1])[:, :steps].to(pred_flow.device)
                pred_flow, gt = pred_flow.permute(0, 2, 1, 3, 4)[valid], gt.permute(0, 2, 1, 3, 4)[valid]
            if gt.numel():
                epe.update(pred_flow, gt)
    meter.all_reduce()
    epe.all_reduce()
    bare.train(was_training)
    metrics = meter.compute()
    value = epe.compute()
    if value is not None:
        metrics["epe"] = value
    return metrics


# ---------------------------------------------------------------------------------- training
@dataclass
class FitResult:
    metrics: dict[str, float]
    history: list[dict[str, float]]
    train_time_s: float
    epochs: int
    resumed_from: dict[str, int] | None = None


def _eval_batch_size(settings: TrainSettings, val_set: Dataset) -> int:
    """Videos per evaluation batch: as many clips as a training batch holds, over all views."""
    if settings.eval_batch_size:
        return settings.eval_batch_size
    views = int(getattr(val_set, "num_views", 1) or 1)
    return max(1, settings.batch_size // views)


def _all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    info = dist_info()
    if not info.enabled:
        return dict(values)
    keys = sorted(values)
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    flat = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(flat)
    return dict(zip(keys, flat.cpu().tolist()))


def _gather_rng_states() -> list[dict[str, Any]]:
    """Every process's RNG state (rank order), so a resumed process continues its own stream."""
    state = ckpt_io.capture_rng_state()
    info = dist_info()
    if not info.enabled:
        return [state]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset | None, settings: TrainSettings,
        run_dir: Path | str | None, *, num_classes: int, device: torch.device | str | None = None,
        resume: bool = True, progress: bool = True, pass_flow: bool = False,
        on_checkpoint: Callable[[Path, dict[str, Any]], None] | None = None,
        record: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` for ``settings.epochs``; evaluate on ``val_set``; return metrics + history.

    The caller seeds and builds the model (identically on every process).  ``run_dir`` holds
    ``last.pt`` (checkpoint after every epoch and every ``checkpoint_interval_s``; resumed from
    when ``resume``) and ``final.pt``; ``None`` disables checkpoints.  Under a process group
    the model is wrapped in DistributedDataParallel and every process trains its slice of each
    global batch.  ``on_checkpoint(path, state)`` is called after each checkpoint is written.
    ``record``: more entries for ``final.pt`` (what the run started from, for whoever reads it later).
    """
    from tqdm.auto import tqdm

    info = dist_info()
    if device is None:
        device = torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    last_path = run_dir / "last.pt" if run_dir is not None else None

    model.to(device)
    if settings.partial_bn:
        apply_partial_bn(model)  # before the optimiser: frozen BN parameters get no group
    optimizer = build_optimizer(model, name=settings.optimizer, lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay, branch_lr=settings.branch_lr)
    amp_dtype = autocast_dtype(device, settings.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    iters = TrainBatchSampler.batches_per_epoch(len(train_set), settings.batch_size)  # type: ignore[arg-type]
    if iters < 1:
        raise ValueError(f"the training set has {len(train_set)} clips, fewer than one batch of "  # type: ignore[arg-type]
                         f"{settings.batch_size}; lower batch_size")
    start_epoch, start_batch, history, elapsed_before = 0, 0, [], 0.0
    partial: dict[str, float] = {}
    resumed_from = None
    # Per-process RNG stream (dropout etc.); the model was built before this, identically everywhere.
    ckpt_io.seed_everything(settings.seed * 1000 + info.rank)

    if resume and last_path is not None and last_path.is_file():
        state = ckpt_io.load_checkpoint(last_path, map_location="cpu")
        if state.get("format") != ckpt_io.CHECKPOINT_FORMAT:
            raise ValueError(f"{last_path}: unknown checkpoint format {state.get('format')!r}")
        if not same_settings(state.get("settings"), settings.fingerprint()):
            raise ValueError(f"{last_path}: was written with different training settings "
                             f"({state.get('settings')} vs {settings.fingerprint()}); delete it or use a new work dir")
        ckpt_io.unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, start_batch = int(state["epoch"]), int(state["batch_in_epoch"])
        history = list(state["history"])
        elapsed_before = float(state["elapsed_s"])
        partial = dict(state["partial"]) if info.is_main else {k: 0.0 for k in state["partial"]}
        rng = state["rng"]
        ckpt_io.restore_rng_state(rng[info.rank] if info.rank < len(rng) else rng[0])
        resumed_from = {"epoch": start_epoch, "batch": start_batch}
        log.info("resuming %s at epoch %d, batch %d", last_path, start_epoch, start_batch)

    train_model: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        # find_unused_parameters: models may leave parameters out of the training graph (heads
        # used only in eval, e.g. a predicted-flow head; frozen MotionNet branches)
        # OutputForward: DDP hooks forward, so forward_output runs as the wrapped module's forward
        train_model = nn.parallel.DistributedDataParallel(OutputForward(model), device_ids=ids,
                                                          find_unused_parameters=True)

    seeded = SeededDataset(train_set)
    start_time = time.perf_counter()
    last_ckpt_time = time.monotonic()

    def save(epoch: int, batch_in_epoch: int, partial_sums: dict[str, float]) -> None:
        nonlocal last_ckpt_time
        rng_states = _gather_rng_states()  # collective: every rank calls save()
        sums = _all_reduce_sums(partial_sums) if partial_sums else {}
        if last_path is not None and info.is_main:
            state = {
                "format": ckpt_io.CHECKPOINT_FORMAT, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "model": ckpt_io.unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None, "rng": rng_states,
                "history": history, "partial": sums, "settings": settings.fingerprint(),
                "elapsed_s": elapsed_before + time.perf_counter() - start_time,
            }
            ckpt_io.atomic_torch_save(state, last_path)
            if on_checkpoint is not None:
                on_checkpoint(last_path, state)
        last_ckpt_time = time.monotonic()

    for epoch in range(start_epoch, settings.epochs):
        first_batch = start_batch if epoch == start_epoch else 0
        sums = dict(partial) if epoch == start_epoch else {}
        train_model.train()
        if settings.partial_bn:
            apply_partial_bn(model)
        set_epoch = getattr(train_set, "set_epoch", None)
        if callable(set_epoch):  # datasets that seed their own augmentation by (seed, epoch, index)
            set_epoch(epoch)
        sampler = TrainBatchSampler(len(train_set), settings.batch_size, seed=settings.seed,  # type: ignore[arg-type]
                                    epoch=epoch, rank=info.rank, world_size=info.world_size,
                                    start_batch=first_batch)
        loader_gen = torch.Generator().manual_seed(settings.seed * 7919 + epoch)  # keeps the global RNG untouched
        loader = DataLoader(seeded, batch_sampler=sampler, num_workers=settings.num_workers, collate_fn=_collate,
                            pin_memory=device.type == "cuda", generator=loader_gen,
                            persistent_workers=False)
        bar = tqdm(total=iters, initial=first_batch, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch",
                   leave=False, disable=not progress or not info.is_main, file=sys.stderr)
        for b, batch in enumerate(loader, start=first_batch):
            lr = set_learning_rate(optimizer, settings.lr,
                                   lr_factor(epoch + b / iters, epochs=settings.epochs, schedule=settings.schedule,
                                             warmup_epochs=settings.warmup_epochs))
            labels = batch["label"].to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                out = forward_model(train_model, batch, device, pass_flow)
                logits, aux = out.logits, out.losses
                cls_loss = F.cross_entropy(logits.float(), labels)
                loss = cls_loss + sum((settings.loss_weights.get(k, 1.0) * v.float() for k, v in aux.items()),
                                      torch.zeros((), device=device))
            if epoch == start_epoch and b == first_batch:
                unused = sorted(set(settings.loss_weights) - set(aux))
                if unused and info.is_main:
                    log.warning("loss_weights name %s, which the model does not return (it returns %s)",
                                unused, sorted(aux) or "no auxiliary loss")
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, batch {b + 1}; "
                                         "lower the learning rate or enable clip_grad")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if settings.clip_grad:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
            scaler.step(optimizer)
            scaler.update()

            n = labels.numel()
            sums["n"] = sums.get("n", 0.0) + n
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
            sums["cls_loss"] = sums.get("cls_loss", 0.0) + float(cls_loss.detach()) * n
            sums["correct"] = sums.get("correct", 0.0) + float((logits.detach().argmax(1) == labels).sum())
            for k, v in aux.items():
                sums[f"aux_{k}"] = sums.get(f"aux_{k}", 0.0) + float(v.detach()) * n
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", lr=f"{lr:.3g}")

            done = b + 1
            if done < iters and last_path is not None:
                due = time.monotonic() - last_ckpt_time >= settings.checkpoint_interval_s
                if broadcast_flag(due):  # rank 0's clock decides, so every rank joins the collective
                    save(epoch, done, sums)
        bar.close()

        totals = _all_reduce_sums(sums)
        entry = {"epoch": epoch + 1, "lr": lr, "train_loss": totals["loss"] / totals["n"],
                 "train_cls_loss": totals["cls_loss"] / totals["n"],
                 "train_top1": 100.0 * totals["correct"] / totals["n"]}
        entry.update({k: v / totals["n"] for k, v in totals.items() if k.startswith("aux_")})
        if val_set is not None and settings.eval_every and (epoch + 1) % settings.eval_every == 0 \
                and epoch + 1 < settings.epochs:
            val = evaluate(model, val_set, num_classes=num_classes, batch_size=_eval_batch_size(settings, val_set),
                           num_workers=settings.num_workers, device=device,
                           amp_dtype=amp_dtype, pass_flow=pass_flow)
            entry.update({f"val_{k}": v for k, v in val.items() if k != "count"})
        history.append(entry)
        if info.is_main:
            log.info("epoch %d/%d %s", epoch + 1, settings.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "epoch"))
        if last_path is not None:
            save(epoch + 1, 0, {})

    train_time = elapsed_before + time.perf_counter() - start_time
    metrics: dict[str, float] = {}
    if val_set is not None:
        metrics = evaluate(model, val_set, num_classes=num_classes, batch_size=_eval_batch_size(settings, val_set),
                           num_workers=settings.num_workers, device=device, amp_dtype=amp_dtype,
                           pass_flow=pass_flow, progress=progress)
    if run_dir is not None and info.is_main:
        ckpt_io.atomic_torch_save({"format": ckpt_io.CHECKPOINT_FORMAT, "model": ckpt_io.unwrap(model).state_dict(),
                                   "metrics": metrics, "history": history, "settings": settings.fingerprint(),
                                   "train_time_s": train_time,
                                   # float sums run in another order on another thread count: a run is
                                   # bit-for-bit repeatable only on the same number of threads
                                   "threads": torch.get_num_threads(), **(record or {})}, run_dir / "final.pt")
    return FitResult(metrics=metrics, history=history, train_time_s=train_time, epochs=settings.epochs,
                     resumed_from=resumed_from)

