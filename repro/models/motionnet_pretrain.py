"""Unsupervised pre-training of a TrajectoryNet's MotionNet on the run's own training clips.

TrajectoryNet §3.5 / Table 4: MotionNet is "pre-trained without supervision" (the authors used
image pairs from UCF-101, following Zhu et al.) before it is frozen or fine-tuned inside
TrajectoryNet.  A ``RunConfig`` with ``motionnet_pretrain: {epochs, batch_size, lr}`` asks the
train job to do that first on the run's training split -- at mini scale the built-in benchmark's
frames, the only unlabelled video here -- with MotionNet's unsupervised loss
(:func:`repro.models.motionnet.unsupervised_loss`, both time directions as in
:func:`repro.models.motionnet.bidirectional_flows`), and to load the result into the model.

The pre-trained weights are cached per (network, settings, data, seed) under
``<work>/<scale>/motionnet/`` and shared by every row that asks for the same thing, so the
frozen / fine-tuned / fine-tuned + unsupervised rows of Table 4 start from identical MotionNets.
Rows started side by side take turns: the first pre-trains while holding a lock beside the cache
file, the others wait for it and load its result.  Labels are never read.

The pre-training is a training stage of the model contract (:class:`MotionNetPretraining`, a
:class:`repro.models.contract.TrainingStage`): a TrajectoryNet whose trajectories come from a
MotionNet declares it, and the engine runs it when the run config's ``motionnet_pretrain`` is set.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from repro.fileio import lock_beside
from repro.identity import digest
from repro.models.contract import TrainingStage
from repro.models.motionnet import MotionNet, bidirectional_flows

__all__ = ["MotionNetPretraining", "pretrain_motionnet", "pretrained_motionnet_path"]

log = logging.getLogger("repro.engine")


class MotionNetPretraining(TrainingStage):
    """The stage ``motionnet_pretrain`` (settings ``{epochs, batch_size, lr}`` plus what else keys
    the cache): pre-train ``net`` in place; ``freeze`` sets it back to no gradient afterwards (a
    frozen row's MotionNet is frozen only after pre-training)."""

    name = "motionnet_pretrain"

    def __init__(self, net: MotionNet, video_mean: torch.Tensor, video_std: torch.Tensor, freeze: bool) -> None:
        self.net, self.video_mean, self.video_std, self.freeze = net, video_mean, video_std, freeze

    def cache_path(self, cache_root: Path, settings: dict[str, Any], data: str, seed: int) -> Path:
        return pretrained_motionnet_path(cache_root, self.net, settings, data, seed)

    def run(self, train_set: Dataset, settings: dict[str, Any], *, out: Path, seed: int,
            progress: bool) -> dict[str, Any]:
        done = pretrain_motionnet(self.net, train_set, epochs=settings["epochs"], batch_size=settings["batch_size"],
                                  lr=settings["lr"], video_mean=self.video_mean, video_std=self.video_std, out=out,
                                  seed=seed, progress=progress)
        return self._finish(done)

    def load(self, out: Path) -> dict[str, Any]:
        from repro.engine import checkpoint as ckpt_io

        done = ckpt_io.load_checkpoint(out)
        self.net.load_state_dict(done["state_dict"])
        return self._finish(done)

    def _finish(self, done: dict[str, Any]) -> dict[str, Any]:
        if self.freeze:
            self.net.requires_grad_(False)
        return {"history": done["history"]}


def pretrained_motionnet_path(cache_root: Path | str, net: MotionNet, settings: dict[str, Any], data: str,
                              seed: int) -> Path:
    """Where the pre-trained weights for this network, these settings and this data live, under the
    engine's stage cache (:func:`repro.layout.stage_cache_root`)."""
    key = digest({"frames": net.num_frames, "width": net.width, "settings": settings, "data": data, "seed": seed},
                 length=12)
    return Path(cache_root) / "motionnet" / f"motionnet{net.num_frames}-w{net.width:g}-{key}.pt"


def pretrain_motionnet(net: MotionNet, dataset: Dataset, *, epochs: int, batch_size: int, lr: float,
                       video_mean: torch.Tensor, video_std: torch.Tensor, out: Path | str, seed: int = 0,
                       progress: bool = True) -> dict[str, Any]:
    """Train ``net`` in place with Adam on the unsupervised loss over ``dataset``'s clips
    (``sample["video"]``, normalised; ``video_mean``/``video_std`` (1, 3, 1, 1, 1) map it back to
    RGB in [0, 1]) and save ``{"state_dict", "history", "settings"}`` atomically to ``out``.
    If ``out`` already holds a finished run with the same settings it is loaded instead."""
    from repro.engine import checkpoint as ckpt_io

    out = Path(out)
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    with lock_beside(out):  # a row started beside this one waits here and re-uses what this one saves
        done = ckpt_io.load_checkpoint(out) if out.is_file() else {}
        if done.get("settings") == settings:
            net.load_state_dict(done["state_dict"])
            log.info("MotionNet pre-training: re-using %s", out)
            return done
        history = _train_unsupervised(net, dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                      video_mean=video_mean, video_std=video_std, progress=progress)
        result = {"state_dict": net.state_dict(), "history": history, "settings": settings}
        out.parent.mkdir(parents=True, exist_ok=True)
        ckpt_io.atomic_torch_save(result, out)
        return result


def _train_unsupervised(net: MotionNet, dataset: Dataset, *, epochs: int, batch_size: int, lr: float, seed: int,
                        video_mean: torch.Tensor, video_std: torch.Tensor, progress: bool) -> list[dict[str, float]]:
    """The pre-training loop of :func:`pretrain_motionnet`; returns the per-epoch history."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"motionnet_pretrain: batch_size {batch_size} exceeds the {len(dataset)} training clips")
    net.requires_grad_(True)  # a frozen row's MotionNet is frozen only after pre-training
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    history = []
    for epoch in range(epochs):
        total, steps = 0.0, 0
        bar = tqdm(loader, desc=f"MotionNet-({net.num_frames}) pre-training {epoch + 1}/{epochs}",
                   unit="batch", disable=not progress, leave=False)
        for batch in bar:
            frames = (batch["video"] * video_std + video_mean).clamp(0, 1)
            _, _, terms = bidirectional_flows(net, frames, with_loss=True)
            loss = terms["total"]
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"MotionNet pre-training: loss became {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{loss.item():.2f}")
        history.append({"epoch": epoch + 1, "unsup_loss": total / steps})
        log.info("MotionNet-(%d) pre-training epoch %d: unsupervised loss %.3f", net.num_frames, epoch + 1,
                 total / steps)
    net.eval()
    return history
