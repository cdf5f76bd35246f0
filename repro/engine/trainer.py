"""The training loop: train a video classifier, checkpoint it, resume it, evaluate it.

:func:`fit` trains ``model`` on ``train_set`` and evaluates it on ``val_set`` as a row's
:class:`~repro.spec.schema.RunConfig` says (defaults: :func:`repro.spec.schema.resolved_config`);
a :class:`Trainer` does it in stages (set-up, restore, one epoch, one step, save, evaluate).
Datasets are map-style and return dicts ``{"video": (C,T,H,W) float, "label": int,
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
import signal
import sys
import threading
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
from repro.engine.memory_format import channels_last as to_channels_last_tensor
from repro.engine.memory_format import to_channels_last
from repro.engine.distributed import TrainBatchSampler, all_reduce_sums, broadcast_flag, dist_info, eval_shard
from repro.engine.metrics import ClassificationMeter, EPEMeter
from repro.engine.optim import apply_partial_bn, build_optimizer, lr_factor, set_learning_rate
from repro.fileio import atomic_torch_save
from repro.models.contract import ModelOutput, OutputForward, model_inputs, model_output
from repro.spec.schema import LRSchedule, RunConfig, resolved_config

__all__ = ["TrainSettings", "resolve_settings", "same_settings", "SeededDataset", "FitResult", "Trainer", "fit",
           "evaluate", "forward_model", "autocast_dtype"]

log = logging.getLogger("repro.engine")

@dataclass
class TrainSettings:
    """Everything the loop needs, resolved from a ``RunConfig`` (plain types, checkpointable).

    The fields taken from the run's config have no defaults here: :func:`resolve_settings` fills
    them from :func:`repro.spec.schema.resolved_config`, the one place defaults live."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    lr_schedule: dict[str, Any]
    warmup_epochs: float
    clip_grad: float | None
    partial_bn: bool
    branch_lr: dict[str, float]
    loss_weights: dict[str, float]
    seed: int = 0
    eval_batch_size: int | None = None
    num_workers: int = 0
    amp: bool = True  # autocast on GPU (bf16, or fp16 + GradScaler); always off on CPU
    checkpoint_interval_s: float = 600.0  # also checkpoint mid-epoch this often
    eval_every: int = 0  # evaluate every N epochs into the history (0: only at the end)
    eval_chunk: int | None = None  # views per forward at evaluation (None: a whole batch)
    # weights and clips channels-last (repro/engine/memory_format.py): the same arithmetic up to
    # float summation order, ~15 % faster on the CPU; not part of the fingerprint
    channels_last: bool = True
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
    """Whether a checkpoint's stored fingerprint describes the current run: equal in the normal
    form of :func:`repro.identity.normal_settings` (config fields at their default left out, so a
    checkpoint written before a defaulted field existed, e.g. ``motionnet_pretrain``, still matches)."""
    from repro.identity import normal_settings

    return stored is not None and normal_settings(stored) == normal_settings(current)


def resolve_settings(cfg: RunConfig | None, *, seed: int, **overrides: Any) -> TrainSettings:
    """:class:`TrainSettings` from a row's ``RunConfig`` resolved by :func:`~repro.spec.schema.resolved_config`
    (``None``: every field at its default), then ``overrides`` (engine fields, smoke-run epochs)."""
    c = resolved_config(cfg)
    settings = TrainSettings(
        epochs=int(c["epochs"]), batch_size=int(c["batch_size"]), optimizer=c["optimizer"], lr=float(c["lr"]),
        momentum=float(c["momentum"]), weight_decay=float(c["weight_decay"]), lr_schedule=dict(c["lr_schedule"]),
        warmup_epochs=float(c["warmup_epochs"]), clip_grad=c["clip_grad"], partial_bn=bool(c["partial_bn"]),
        branch_lr=dict(c["branch_lr"]), loss_weights=dict(c["loss_weights"]), seed=seed,
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
def forward_model(model: nn.Module, batch: dict[str, Any], device: torch.device, pass_flow: bool,
                  channels_last: bool = False) -> ModelOutput:
    """Run the model on a batch: ``video`` and, with ``pass_flow``, the other inputs the model
    declares that the batch holds; the model's :class:`~repro.models.contract.ModelOutput`.
    ``model`` may be ``DistributedDataParallel(OutputForward(net))``; ``channels_last``: the clip
    goes in channels-last (:mod:`repro.engine.memory_format`, for a model converted with it)."""
    video = batch["video"].to(device, non_blocking=True)
    if channels_last:
        video = to_channels_last_tensor(video)
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
def _forward_chunked(model: nn.Module, batch: dict[str, Any], device: torch.device, pass_flow: bool,
                     amp_dtype: torch.dtype | None, chunk: int | None, channels_last: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits ``(N, classes)`` and predicted flow (or None) of the ``N`` clips of ``batch``, run
    through the model ``chunk`` clips at a time: the activations of at most ``chunk`` views are
    alive at once (with a model in eval mode a clip's output does not depend on its neighbours,
    so the scores are those of one forward of all views)."""
    n = batch["video"].shape[0]
    step = n if not chunk or chunk >= n else int(chunk)
    logits, flows = [], []
    for start in range(0, n, step):
        part = {k: (v[start:start + step] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n else v)
                for k, v in batch.items()}
        with _autocast(device, amp_dtype):
            out = forward_model(model, part, device, pass_flow, channels_last)
        logits.append(out.logits.float())
        if isinstance(out.flow, torch.Tensor):
            flows.append(out.flow)
    return torch.cat(logits), (torch.cat(flows) if len(flows) == len(logits) else None)


def evaluate(model: nn.Module, dataset: Dataset, *, num_classes: int, batch_size: int = 8,
             num_workers: int = 0, device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
             pass_flow: bool = False, progress: bool = False, eval_chunk: int | None = None,
             channels_last: bool = False) -> dict[str, float]:
    """Video-level metrics (percent) of ``model`` on ``dataset``, all processes together.

    Each process evaluates its shard (:func:`repro.engine.distributed.eval_shard`); counts are
    all-reduced.  A sample of several views ``(V,C,T,H,W)`` is scored by the mean of the views'
    softmax scores.  ``epe`` is added when the model predicts flow and the data has GT flow.
    ``eval_chunk``: at most this many views (clips) per forward (:func:`_forward_chunked`).
    ``channels_last``: clips go in channels-last, for a model converted by
    :func:`repro.engine.memory_format.to_channels_last`.
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
        logits, pred_flow = _forward_chunked(bare, batch, device, pass_flow, amp_dtype, eval_chunk, channels_last)
        scores = logits.softmax(dim=1)
        scores = scores.view(-1, views, scores.shape[1]).mean(dim=1)
        meter.update(scores, batch["label"])
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


def _gather_rng_states() -> list[dict[str, Any]]:
    """Every process's RNG state (rank order), so a resumed process continues its own stream."""
    state = ckpt_io.capture_rng_state()
    info = dist_info()
    if not info.enabled:
        return [state]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _add_batch_sums(sums: dict[str, float], loss: torch.Tensor, cls_loss: torch.Tensor,
                    aux: dict[str, torch.Tensor], logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Add one batch to an epoch's running sums (per-sample sums, so that processes add up)."""
    n = labels.numel()
    sums["n"] = sums.get("n", 0.0) + n
    sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
    sums["cls_loss"] = sums.get("cls_loss", 0.0) + float(cls_loss.detach()) * n
    sums["correct"] = sums.get("correct", 0.0) + float((logits.detach().argmax(1) == labels).sum())
    for k, v in aux.items():
        sums[f"aux_{k}"] = sums.get(f"aux_{k}", 0.0) + float(v.detach()) * n


def _epoch_entry(epoch: int, lr: float, totals: dict[str, float]) -> dict[str, float]:
    """An epoch's history entry from its all-reduced sums."""
    entry = {"epoch": epoch + 1, "lr": lr, "train_loss": totals["loss"] / totals["n"],
             "train_cls_loss": totals["cls_loss"] / totals["n"],
             "train_top1": 100.0 * totals["correct"] / totals["n"]}
    entry.update({k: v / totals["n"] for k, v in totals.items() if k.startswith("aux_")})
    return entry


class Trainer:
    """Trains one model as ``settings`` say, one stage per method (see :func:`fit` for the arguments).

    ``__init__`` sets up (device, optimiser, AMP, the per-process RNG stream); :meth:`run` calls
    :meth:`restore` (from ``last.pt``), then :meth:`train_epoch` per epoch (:meth:`train_step` per
    batch, :meth:`save` every ``checkpoint_interval_s`` and after each epoch), :meth:`evaluate` and
    :meth:`save_final`.  The run's position (``epoch``, ``batch``, ``history``, ``partial`` sums) is
    what a checkpoint stores.  Under a process group every rank calls the same methods in the same
    order: :meth:`save` and the epoch sums are collectives.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset | None, settings: TrainSettings,
                 run_dir: Path | str | None, *, num_classes: int, device: torch.device | str | None = None,
                 progress: bool = True, pass_flow: bool = False,
                 on_checkpoint: Callable[[Path, dict[str, Any]], None] | None = None,
                 record: dict[str, Any] | None = None):
        self.info = info = dist_info()
        if device is None:
            device = torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        self.device = torch.device(device)
        self.model, self.train_model, self.settings = model, model, settings
        self.train_set, self.val_set, self.num_classes = train_set, val_set, num_classes
        self.seeded = SeededDataset(train_set)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.last_path = self.run_dir / "last.pt" if self.run_dir is not None else None
        self.progress, self.pass_flow, self.on_checkpoint, self.record = progress, pass_flow, on_checkpoint, record

        model.to(self.device)
        if settings.channels_last:
            to_channels_last(model)  # before the optimiser and DDP: both keep the parameters' strides
        if settings.partial_bn:
            apply_partial_bn(model)  # before the optimiser: frozen BN parameters get no group
        self.optimizer = build_optimizer(model, name=settings.optimizer, lr=settings.lr, momentum=settings.momentum,
                                         weight_decay=settings.weight_decay, branch_lr=settings.branch_lr)
        self.amp_dtype = autocast_dtype(self.device, settings.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        clips = len(train_set)  # type: ignore[arg-type]
        self.iters = TrainBatchSampler.batches_per_epoch(clips, settings.batch_size)
        if self.iters < 1:
            raise ValueError(f"the training set has {clips} clips, fewer than one batch of {settings.batch_size}; "
                             "lower batch_size")
        # where the run stands: what a checkpoint stores and :meth:`restore` reads back
        self.epoch, self.batch, self.history, self.partial = 0, 0, [], {}
        self.elapsed_before, self.resumed_from = 0.0, None
        self._first_step = True
        self._interrupt_requested = False  # Ctrl-C seen: checkpoint at the next batch boundary, then stop
        self._start_time, self._last_ckpt_time = time.perf_counter(), time.monotonic()
        # Per-process RNG stream (dropout etc.); the model was built before this, identically everywhere.
        ckpt_io.seed_everything(settings.seed * 1000 + info.rank)

    # ------------------------------------------------------------------------------- the run
    def run(self, resume: bool = True) -> FitResult:
        """Restore (when ``resume``), train the remaining epochs, evaluate, write ``final.pt``."""
        if resume:
            self.restore()
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # find_unused_parameters: models may leave parameters out of the training graph (heads
            # used only in eval, e.g. a predicted-flow head; frozen MotionNet branches)
            # OutputForward: DDP hooks forward, so forward_output runs as the wrapped module's forward
            self.train_model = nn.parallel.DistributedDataParallel(OutputForward(self.model), device_ids=ids,
                                                                   find_unused_parameters=True)
        self._start_time, self._last_ckpt_time = time.perf_counter(), time.monotonic()
        with self._checkpoint_on_interrupt():
            for epoch in range(self.epoch, self.settings.epochs):
                self.train_epoch(epoch)
        train_time = self.elapsed()
        metrics = self.evaluate(progress=self.progress) if self.val_set is not None else {}
        self.save_final(metrics, train_time)
        return FitResult(metrics=metrics, history=self.history, train_time_s=train_time,
                         epochs=self.settings.epochs, resumed_from=self.resumed_from)

    @contextlib.contextmanager
    def _checkpoint_on_interrupt(self):
        """While training, Ctrl-C (SIGINT) finishes the current batch, writes ``last.pt`` at that
        position (as the periodic checkpoint does, so a re-run resumes bit for bit) and then raises
        ``KeyboardInterrupt``.  A second Ctrl-C stops at once, without a checkpoint."""
        if self.last_path is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def request_stop(signum, frame):
            self._interrupt_requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the second Ctrl-C interrupts now
            if self.info.is_main:
                print("\ninterrupt: finishing this batch and writing a checkpoint (Ctrl-C again to stop now)",
                      file=sys.stderr, flush=True)

        signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_if_interrupted(self, epoch: int, batch_in_epoch: int) -> None:
        """After a checkpoint at (``epoch``, ``batch_in_epoch``): stop there if Ctrl-C was pressed
        (rank 0's flag decides, so every rank stops at the same batch)."""
        if broadcast_flag(self._interrupt_requested):
            if self.info.is_main:
                log.warning("interrupted: checkpoint %s written at epoch %d, batch %d; run the same command "
                            "again to resume from it", self.last_path, epoch, batch_in_epoch)
            raise KeyboardInterrupt

    def elapsed(self) -> float:
        """Training seconds so far, over every interrupted and resumed part of the run."""
        return self.elapsed_before + time.perf_counter() - self._start_time

    # ----------------------------------------------------------------------------- restore
    def restore(self) -> bool:
        """Continue from ``last.pt`` if there is one: weights, optimiser, scaler, position, RNG."""
        if self.last_path is None or not self.last_path.is_file():
            return False
        state = ckpt_io.load_checkpoint(self.last_path, map_location="cpu")
        if state.get("format") != ckpt_io.CHECKPOINT_FORMAT:
            raise ValueError(f"{self.last_path}: unknown checkpoint format {state.get('format')!r}")
        if not same_settings(state.get("settings"), self.settings.fingerprint()):
            raise ValueError(f"{self.last_path}: was written with different training settings ({state.get('settings')} "
                             f"vs {self.settings.fingerprint()}); delete it or use a new work dir")
        ckpt_io.unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.history, self.elapsed_before = list(state["history"]), float(state["elapsed_s"])
        # the partial sums are rank 0's all-reduced ones: the other ranks start theirs from zero
        self.partial = dict(state["partial"]) if self.info.is_main else {k: 0.0 for k in state["partial"]}
        rng = state["rng"]
        ckpt_io.restore_rng_state(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])
        self.resumed_from = {"epoch": self.epoch, "batch": self.batch}
        log.info("resuming %s at epoch %d, batch %d", self.last_path, self.epoch, self.batch)
        return True

    # ------------------------------------------------------------------------------- epoch
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train ``epoch`` from the current position; append its history entry; checkpoint it."""
        from tqdm.auto import tqdm

        first_batch, sums = self.batch, dict(self.partial)
        bar = tqdm(total=self.iters, initial=first_batch, desc=f"epoch {epoch + 1}/{self.settings.epochs}",
                   unit="batch", leave=False, disable=not self.progress or not self.info.is_main, file=sys.stderr)
        for b, batch in enumerate(self._loader(epoch, first_batch), start=first_batch):
            lr = set_learning_rate(self.optimizer, self.settings.lr, self._lr_factor(epoch + b / self.iters))
            loss, cls_loss, aux, logits, labels = self.train_step(batch, epoch, b)
            _add_batch_sums(sums, loss, cls_loss, aux, logits, labels)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", lr=f"{lr:.3g}")
            self._save_if_due(epoch, b + 1, sums)
        bar.close()

        entry = _epoch_entry(epoch, lr, all_reduce_sums(sums))
        every = self.settings.eval_every
        if self.val_set is not None and every and (epoch + 1) % every == 0 and epoch + 1 < self.settings.epochs:
            entry.update({f"val_{k}": v for k, v in self.evaluate().items() if k != "count"})
        self.history.append(entry)
        if self.info.is_main:
            log.info("epoch %d/%d %s", epoch + 1, self.settings.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "epoch"))
        self.epoch, self.batch, self.partial = epoch + 1, 0, {}
        if self.last_path is not None:
            self.save(epoch + 1, 0, {})
            self._stop_if_interrupted(epoch + 1, 0)
        return entry

    def _loader(self, epoch: int, first_batch: int) -> DataLoader:
        """Put the model in training mode and return ``epoch``'s loader from ``first_batch`` on."""
        s = self.settings
        self.train_model.train()
        if s.partial_bn:
            apply_partial_bn(self.model)
        set_epoch = getattr(self.train_set, "set_epoch", None)
        if callable(set_epoch):  # datasets that seed their own augmentation by (seed, epoch, index)
            set_epoch(epoch)
        sampler = TrainBatchSampler(len(self.seeded), s.batch_size, seed=s.seed, epoch=epoch, rank=self.info.rank,
                                    world_size=self.info.world_size, start_batch=first_batch)
        loader_gen = torch.Generator().manual_seed(s.seed * 7919 + epoch)  # keeps the global RNG untouched
        return DataLoader(self.seeded, batch_sampler=sampler, num_workers=s.num_workers, collate_fn=_collate,
                          pin_memory=self.device.type == "cuda", generator=loader_gen, persistent_workers=False)

    def _lr_factor(self, fractional_epoch: float) -> float:
        s = self.settings
        return lr_factor(fractional_epoch, epochs=s.epochs, schedule=s.schedule, warmup_epochs=s.warmup_epochs)

    # -------------------------------------------------------------------------------- step
    def train_step(self, batch: dict[str, Any], epoch: int, b: int
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Forward, loss, backward and update on one batch; ``(loss, cls_loss, aux, logits, labels)``."""
        s, device = self.settings, self.device
        labels = batch["label"].to(device, non_blocking=True)
        with _autocast(device, self.amp_dtype):
            out = forward_model(self.train_model, batch, device, self.pass_flow, s.channels_last)
            logits, aux = out.logits, out.losses
            cls_loss = F.cross_entropy(logits.float(), labels)
            loss = cls_loss + sum((s.loss_weights.get(k, 1.0) * v.float() for k, v in aux.items()),
                                  torch.zeros((), device=device))
        if self._first_step:
            self._first_step = False
            unused = sorted(set(s.loss_weights) - set(aux))
            if unused and self.info.is_main:
                log.warning("loss_weights name %s, which the model does not return (it returns %s)",
                            unused, sorted(aux) or "no auxiliary loss")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, batch {b + 1}; "
                                     "lower the learning rate or enable clip_grad")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if s.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss, cls_loss, aux, logits, labels

    # -------------------------------------------------------------------------------- save
    def _save_if_due(self, epoch: int, done: int, sums: dict[str, float]) -> None:
        """Checkpoint mid-epoch once ``checkpoint_interval_s`` has passed (rank 0's clock decides)."""
        if done >= self.iters or self.last_path is None:
            return  # the end of the epoch is saved by :meth:`train_epoch`
        due = time.monotonic() - self._last_ckpt_time >= self.settings.checkpoint_interval_s
        if broadcast_flag(due or self._interrupt_requested):  # every rank joins the collective in :meth:`save`
            self.save(epoch, done, sums)
            self._stop_if_interrupted(epoch, done)

    def save(self, epoch: int, batch_in_epoch: int, partial_sums: dict[str, float]) -> None:
        """Write ``last.pt`` at (``epoch``, ``batch_in_epoch``); a collective: every rank calls it."""
        rng_states = _gather_rng_states()
        sums = all_reduce_sums(partial_sums) if partial_sums else {}
        if self.last_path is not None and self.info.is_main:
            state = {
                "format": ckpt_io.CHECKPOINT_FORMAT, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "model": ckpt_io.unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None, "rng": rng_states,
                "history": self.history, "partial": sums, "settings": self.settings.fingerprint(),
                "elapsed_s": self.elapsed(),
            }
            atomic_torch_save(state, self.last_path)
            if self.on_checkpoint is not None:
                self.on_checkpoint(self.last_path, state)
        self._last_ckpt_time = time.monotonic()

    def save_final(self, metrics: dict[str, float], train_time: float) -> None:
        """Write ``final.pt``: the trained weights, metrics, history and ``record`` (rank 0)."""
        if self.run_dir is None or not self.info.is_main:
            return
        atomic_torch_save({"format": ckpt_io.CHECKPOINT_FORMAT, "model": ckpt_io.unwrap(self.model).state_dict(),
                           "metrics": metrics, "history": self.history, "settings": self.settings.fingerprint(),
                           "train_time_s": train_time,
                           # float sums run in another order on another thread count: a run is
                           # bit-for-bit repeatable only on the same number of threads
                           "threads": torch.get_num_threads(), **(self.record or {})}, self.run_dir / "final.pt")

    # ---------------------------------------------------------------------------- evaluate
    def evaluate(self, progress: bool = False) -> dict[str, float]:
        """:func:`evaluate` on the validation set with the run's batch size, workers and AMP."""
        assert self.val_set is not None
        return evaluate(self.model, self.val_set, num_classes=self.num_classes,
                        batch_size=_eval_batch_size(self.settings, self.val_set), num_workers=self.settings.num_workers,
                        device=self.device, amp_dtype=self.amp_dtype, pass_flow=self.pass_flow, progress=progress,
                        eval_chunk=self.settings.eval_chunk, channels_last=self.settings.channels_last)


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
    A thin wrapper: :class:`Trainer` does the work.
    """
    trainer = Trainer(model, train_set, val_set, settings, run_dir, num_classes=num_classes, device=device,
                      progress=progress, pass_flow=pass_flow, on_checkpoint=on_checkpoint, record=record)
    return trainer.run(resume=resume)
