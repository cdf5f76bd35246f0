"""Temporal sampling: which frame indices of a video make up a clip.

All functions return ``torch.long`` index tensors and are deterministic given a
``torch.Generator`` (training) or fully deterministic (testing).

* Dense clips ``frames x step`` (TrajectoryNet Sec. 4.2/4.4: 16x1 and 16x2; a 16x2 clip covers 32
  consecutive frames).  Training draws a random start; ``jitter=True`` additionally draws one frame
  at random inside each window of ``step`` neighbouring frames ("we collect a consecutive of 32
  frames and randomly sample one frame for every two neighboring frames", TrajectoryNet Sec. 4.4).
  Testing takes ``num_clips`` clips with equally spaced starts (TrajectoryNet Sec. 4.2: N = 7 on
  Something-Something V1, N = 25 on Kinetics; LGD Sec. 4.2: 15 clips for LGD-3D).
* TSN segments (Wang et al. ECCV'16, used by Disentangling Dynamics and LGD-2D): the video is split
  into K equal segments and one snippet of ``snippet_len`` consecutive frames is taken from each,
  at a random offset (training) or at the segment centre (testing).

Videos shorter than a clip's span are looped (index modulo the length), as MMAction does.
"""
from __future__ import annotations

import torch

__all__ = ["clip_span", "dense_clip_indices", "tsn_segment_indices"]


def clip_span(frames: int, step: int) -> int:
    """Number of consecutive video frames a ``frames x step`` clip covers (windows of ``step``)."""
    return frames * step


def _check(num_frames: int, **positive: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def dense_clip_indices(
    num_frames: int,
    frames: int,
    step: int = 1,
    *,
    train: bool,
    num_clips: int = 1,
    jitter: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices (num_clips, frames) of dense ``frames x step`` clips of a ``num_frames`` video.

    Training: one clip per row, start uniform in ``[0, num_frames - span]``.  Testing: ``num_clips``
    starts spread evenly (the centre of each of ``num_clips`` equal parts of the valid start range).
    Frame k of a clip is ``start + k * step`` (+ a random offset in ``[0, step)`` with ``jitter``).
    """
    _check(num_frames, frames=frames, step=step, num_clips=num_clips)
    span = clip_span(frames, step)
    max_start = max(num_frames - span, 0)
    if train:
        starts = torch.randint(0, max_start + 1, (num_clips,), generator=generator)
    elif num_clips == 1:
        starts = torch.tensor([max_start // 2], dtype=torch.long)
    else:
        centres = [int(round(max_start * (2 * i + 1) / (2 * num_clips))) for i in range(num_clips)]
        starts = torch.tensor(centres, dtype=torch.long)
    offsets = torch.arange(frames, dtype=torch.long) * step
    if jitter and step > 1:
        offsets = offsets + torch.randint(0, step, (num_clips, frames), generator=generator)
    else:
        offsets = offsets.expand(num_clips, frames)
    return (starts[:, None] + offsets) % num_frames


def tsn_segment_indices(
    num_frames: int,
    num_segments: int,
    snippet_len: int = 1,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices (num_segments * snippet_len,) of TSN snippets, segment by segment.

    Segment k covers frames ``[k * L / K, (k + 1) * L / K)`` of the ``L - snippet_len + 1`` valid
    snippet starts; training picks a uniform start in it, testing its centre.
    """
    _check(num_frames, num_segments=num_segments, snippet_len=snippet_len)
    valid = max(num_frames - snippet_len + 1, 1)
    seg = valid / num_segments
    starts = []
    for k in range(num_segments):
        lo = int(k * seg)
        hi = max(int((k + 1) * seg), lo + 1)  # at least one candidate per segment
        if train:
            starts.append(int(torch.randint(lo, hi, (1,), generator=generator)))
        else:
            starts.append(int(k * seg + seg / 2))
    starts_t = torch.tensor(starts, dtype=torch.long)
    idx = starts_t[:, None] + torch.arange(snippet_len, dtype=torch.long)[None, :]
    return (idx % num_frames).reshape(-1)
