"""A tiny video classifier and a tiny synthetic motion dataset for the engine's tests and demos.

They exercise everything the loop supports (BatchNorm, dropout, an auxiliary loss, flow
inputs, a predicted flow, random augmentation) in milliseconds on a CPU.  Not for reporting.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from repro.models.contract import ModelOutput, VideoModel

__all__ = ["TinyVideoNet", "ToyMotionDataset"]

#: Unit displacement (dx, dy) in pixels per frame of each class of :class:`ToyMotionDataset`.
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


class ToyMotionDataset(Dataset):
    """A bright square moving in one of ``num_classes`` directions (the label) over noise.

    ``train=True`` adds random augmentation (start position and noise drawn from the global
    torch RNG, so it is reproducible only under :class:`repro.engine.trainer.SeededDataset`);
    ``train=False`` samples are fixed by ``seed`` and the index.  ``with_flow`` adds the exact
    forward flow ``(2, T, H, W)`` (the last step repeats the previous one).
    """

    def __init__(self, num_samples: int = 32, num_classes: int = 4, frames: int = 4, size: int = 16,
                 seed: int = 0, train: bool = True, with_flow: bool = False):
        if not 1 <= num_classes <= len(_DIRECTIONS):
            raise ValueError(f"num_classes: expected 1..{len(_DIRECTIONS)}, got {num_classes}")
        self.num_samples, self.num_classes, self.frames, self.size = num_samples, num_classes, frames, size
        self.seed, self.train, self.with_flow = seed, train, with_flow
        self.skipped = 0

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        label = index % self.num_classes
        if self.train:
            gen = None  # global RNG: the augmentation the engine must make reproducible
        else:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + index)
        side = max(2, self.size // 4)
        start = torch.randint(side, self.size - 2 * side + 1, (2,), generator=gen)
        video = 0.1 * torch.randn(1, self.frames, self.size, self.size, generator=gen)
        dx, dy = _DIRECTIONS[label]
        for t in range(self.frames):
            x0 = int(start[0]) + dx * t
            y0 = int(start[1]) + dy * t
            video[0, t, max(0, y0):max(0, y0 + side), max(0, x0):max(0, x0 + side)] += 1.0
        sample = {"video": video.expand(3, -1, -1, -1).clone(), "label": label, "index": index}
        if self.with_flow:
            flow = torch.zeros(2, self.frames, self.size, self.size)
            flow[0], flow[1] = float(dx), float(dy)
            sample["flow_fwd"] = flow
            sample["flow_bwd"] = -flow
        return sample


class TinyVideoNet(VideoModel):
    """Conv3d -> BN -> ReLU -> Conv3d -> BN -> ReLU -> pool -> dropout -> linear.

    ``aux_loss`` adds a scalar auxiliary loss ``"feature_l2"`` in training mode;
    ``predicts_flow`` adds a predicted ``"flow_fwd"`` (constant zero-ish field) in eval mode;
    ``takes_flow`` makes ``forward`` accept and use ``flow_fwd``.
    """

    def __init__(self, num_classes: int = 4, width: int = 8, dropout: float = 0.0, aux_loss: bool = False,
                 predicts_flow: bool = False, takes_flow: bool = False, batch_norm: bool = True, **kwargs):
        super().__init__()
        norm = (lambda c: nn.BatchNorm3d(c)) if batch_norm else (lambda c: nn.Identity())
        in_ch = 5 if takes_flow else 3
        self.stem = nn.Sequential(nn.Conv3d(in_ch, width, 3, padding=1, bias=not batch_norm), norm(width),
                                  nn.ReLU(inplace=True))
        self.block = nn.Sequential(nn.Conv3d(width, width, 3, padding=1, bias=not batch_norm), norm(width),
                                   nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        self.flow_head = nn.Conv3d(width, 2, 1) if predicts_flow else None
        self.aux_loss, self.takes_flow = aux_loss, takes_flow
        self.inputs = ("video", "flow_fwd", "flow_bwd") if takes_flow else ("video",)

    def forward(self, video: torch.Tensor, flow_fwd: torch.Tensor | None = None,
                flow_bwd: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_output(video, flow_fwd, flow_bwd).logits

    def forward_output(self, video: torch.Tensor, flow_fwd: torch.Tensor | None = None,
                       flow_bwd: torch.Tensor | None = None) -> ModelOutput:
        if self.takes_flow:
            if flow_fwd is None:
                raise ValueError("flow_fwd: this model needs the forward flow")
            video = torch.cat([video, flow_fwd], dim=1)
        x = self.block(self.stem(video))
        logits = self.fc(self.dropout(x.mean(dim=(2, 3, 4))))
        losses = {"feature_l2": x.pow(2).mean()} if self.aux_loss and self.training else {}
        flow = self.flow_head(x) if self.flow_head is not None and not self.training else None
        return ModelOutput(logits, losses, flow)
