"""Torch datasets for every supported data set, built by name with :func:`build_dataset`.

    >>> ds = build_dataset("synth", "data/synth-mini", "train", frames=16, step=1, size=56, train=True)
    >>> item = ds[0]
    >>> item["video"].shape, item["label"], item["index"]
    (torch.Size([3, 16, 56, 56]), 3, 0)

Item of :class:`VideoClipDataset` (a dict):

* ``"video"``: float32, normalised (``(x/255 - mean) / std``; or [0, 255] with
  ``normalize=False``).  Training and single-view testing: ``(C, T, size, size)``.  Multi-view
  testing (``views=(num_clips, num_crops)`` other than ``(1, 1)``): ``(V, C, T, size, size)`` with
  ``V = num_clips * num_crops``, clip-major (all crops of clip 0 first).
* ``"label"``: int (-1 where the split has no labels, e.g. Kinetics test);
  ``"index"``: int, the dataset index of the video actually returned (see skipping below);
  ``"num_views"``: int.
* With ``with_flow=True`` (synth only: exact GT flow): ``"flow_fwd"`` / ``"flow_bwd"`` float32
  ``(2, T, size, size)`` (or ``(V, 2, T, size, size)``), pixels of the *output* tensor (scaled with
  every resize, negated ``u`` under flips).  ``flow_fwd[:, k]`` maps sampled frame ``k`` (video frame
  ``i_k``) to video frame ``i_k + 1``; ``flow_bwd[:, k]`` maps it to ``i_k - 1``.  Where that frame
  does not exist the flow is 0 and ``"flow_fwd_valid"`` / ``"flow_bwd_valid"`` (bool ``(T,)``, or
  ``(V, T)``) are False.

Temporal sampling: dense ``frames x step`` clips (default), or TSN segments with
``segments=K`` (``frames`` is then ignored; ``T = K * snippet_len``); testing takes
``num_clips`` evenly spaced clips (see :mod:`repro.data.sampling`).

Randomness: item ``i`` in epoch ``e`` draws from ``torch.Generator().manual_seed(f(seed, e, i))``,
so results do not depend on worker count or order; call :meth:`VideoClipDataset.set_epoch`.

Missing and corrupt videos: missing files are dropped when the dataset is built; a video that
fails to decode is logged, added to ``dataset.skipped`` (and never tried again in that process)
and the next video is returned instead.  ``dataset.num_skipped`` counts both.  DataLoader workers
keep their own copies: call :meth:`VideoClipDataset.scan` first (or ``probe=True``) to find every
undecodable file up front in the main process.

:class:`FlowPairDataset` (``build_dataset("middlebury", root, ...)``) yields
``{"video": (C, 2, H, W), "flow": (2, H, W), "valid": (H, W) bool, "index", "name"}``.

Speed: the transforms are many small tensor ops; run them in DataLoader workers (one intra-op
thread each) or with ``torch.set_num_threads(1)`` -- with 2 threads in a busy main process they
were measured >10x slower (see ``benchmarks/bench_data.py``).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from repro.data import readers
from repro.data.flo import flow_valid_mask, read_flo
from repro.data.readers import Annotations, SkippedItem, VideoRecord
from repro.data.sampling import dense_clip_indices, tsn_segment_indices
from repro.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    center_crop_box,
    normalize,
    random_crop_box,
    to_video_tensor,
)
from repro.data.transforms import crop as crop_video
from repro.data.video_io import VideoDecodeError, count_frames, read_frame_folder, read_image, read_video

__all__ = ["VideoClipDataset", "FlowPairDataset", "SynthFlowSource", "FlowFolderSource", "build_dataset", "DATASETS", "DIRECTION_LABELLED"]

log = logging.getLogger(__name__)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class SynthFlowSource:
    """Exact GT flow of the built-in benchmark: ``.flo`` files where written, else re-rendered
    from ``specs/<split>.jsonl`` (same numbers: the renderer is deterministic)."""

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        self.root = Path(root)
        self.split = "val" if split == "test" else split
        self._specs: dict[str, Any] | None = None

    def _spec(self, video_id: str):
        from repro.data import synth

        if self._specs is None:
            specs = synth.load_specs(self.root, self.split)
            ids = [synth.video_id_for(self.split, i) for i in range(len(specs))]
            self._specs = dict(zip(ids, specs))
        return self._specs[video_id]

    def __call__(self, record: VideoRecord, indices: Sequence[int], num_frames: int):
        """fwd, bwd (N, H, W, 2) float32 and their validity (N,) for video frames ``indices``."""
        flow_dir = self.root / "flow" / record.video_id
        pairs = num_frames - 1
        if (flow_dir / "fwd_0000.flo").is_file():
            def get(kind: str, t: int) -> np.ndarray:
                return read_flo(flow_dir / f"{kind}_{t:04d}.flo")
        else:
            from repro.data.synth import render_clip

            _, fwd_all, bwd_all, _ = render_clip(self._spec(record.video_id))

            def get(kind: str, t: int) -> np.ndarray:
                return (fwd_all if kind == "fwd" else bwd_all)[t]
        fwd, bwd, fwd_ok, bwd_ok = [], [], [], []
        shape = None
        for i in indices:
            f = get("fwd", i) if i < pairs else None  # fwd_i: frame i -> i+1
            b = get("bwd", i - 1) if i >= 1 else None  # bwd_{i-1}: frame i -> i-1
            shape = shape or (f if f is not None else b).shape
            fwd.append(f if f is not None else np.zeros(shape, np.float32))
            bwd.append(b if b is not None else np.zeros(shape, np.float32))
            fwd_ok.append(f is not None)
            bwd_ok.append(b is not None)
        return np.stack(fwd), np.stack(bwd), np.array(fwd_ok), np.array(bwd_ok)


class FlowFolderSource:
    """Pre-computed flow stored as two-stream JPEGs (:mod:`repro.flow.extract`'s layout, or TSN /
    MMAction2's): ``<root>/flow/<method>/<video_id>/{x,y}_%05d.jpg`` (or ``flow_{x,y}_%05d.jpg``),
    file ``k`` = 0-based frames ``k-1 -> k``; backward ``b{x,y}_%05d.jpg`` = frames ``k -> k-1``.
    Flow is in pixels of the frames it was computed on; the clip transform rescales it."""

    def __init__(self, root: str | os.PathLike, method: str, bound: float = 20.0) -> None:
        self.root, self.method, self.bound = Path(root), method, float(bound)

    def _prefixes(self, folder: Path) -> tuple[str, str | None]:
        fwd = "" if (folder / "x_00001.jpg").is_file() else "flow_"
        if not (folder / f"{fwd}x_00001.jpg").is_file():
            raise VideoDecodeError(folder, f"no '{self.method}' flow JPEGs (x_00001.jpg or flow_x_00001.jpg): "
                                           f"run `python -m repro flow extract --method {self.method}`")
        return fwd, ("b" if (folder / "bx_00001.jpg").is_file() else None)

    def _read(self, folder: Path, prefix: str, k: int) -> np.ndarray | None:
        import cv2

        from repro.flow.quantize import dequantize_flow

        x = cv2.imread(str(folder / f"{prefix}x_{k:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
        y = cv2.imread(str(folder / f"{prefix}y_{k:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
        return None if x is None or y is None else dequantize_flow(x, y, self.bound)

    def __call__(self, record: VideoRecord, indices: Sequence[int], num_frames: int):
        """fwd, bwd (N, H, W, 2) float32 and their validity (N,) at video frames ``indices``."""
        folder = readers.flow_video_dir(self.root, self.method, record.video_id, readers.flow_group(record))
        fwd_prefix, bwd_prefix = self._prefixes(folder)
        fwd, bwd, fwd_ok, bwd_ok = [], [], [], []
        shape = None
        for i in indices:
            f = self._read(folder, fwd_prefix, i + 1) if i + 1 < num_frames else None  # frame i -> i+1
            if i < 1:
                b = None
            elif bwd_prefix is not None:
                b = self._read(folder, bwd_prefix, i)  # frame i -> i-1
            else:
                # Departure (TSN layouts store forward flow only): the backward flow at frame i is
                # approximated by minus the forward flow i-1 -> i, read at the same pixel.
                prev = self._read(folder, fwd_prefix, i)
                b = None if prev is None else -prev
            shape = shape or next((a.shape for a in (f, b) if a is not None), None)
            fwd.append(f)
            bwd.append(b)
        if shape is None:  # a one-frame clip: no pair at all
            frame = self._read(folder, fwd_prefix, 1)
            shape = frame.shape if frame is not None else (1, 1, 2)
        zero = np.zeros(shape, np.float32)
        fwd_ok, bwd_ok = [f is not None for f in fwd], [b is not None for b in bwd]
        return (np.stack([zero if f is None else f for f in fwd]), np.stack([zero if b is None else b for b in bwd]),
                np.array(fwd_ok), np.array(bwd_ok))


class VideoClipDataset(Dataset):
    """Clips of labelled videos (see the module docstring for the item format).

    Extension points (stable; the engine's in-memory cache uses them): override
    ``_load_frames(record, index, wanted) -> uint8 (N, H, W, 3)`` to serve frames from elsewhere;
    ``flow_source(record, indices, num_frames) -> (fwd, bwd, fwd_valid, bwd_valid)`` supplies GT
    flow; ``_skip(index, err)`` records a failed video; ``_num_frames`` caches frame counts.
    """

    def __init__(
        self,
        annotations: Annotations,
        transform: ClipTransform,
        *,
        frames: int = 16,
        step: int = 1,
        segments: int | None = None,
        snippet_len: int = 1,
        num_clips: int = 1,
        temporal_jitter: bool = False,
        flow_source: Callable | None = None,
        backend: str = "pyav",
        frame_template: str = "{:05d}.jpg",
        seed: int = 0,
        name: str = "",
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.records = list(annotations.records)
        self.classes = list(annotations.classes)
        self.skipped: list[SkippedItem] = list(annotations.skipped)
        self.transform = transform
        self.frames, self.step = int(frames), int(step)
        self.segments, self.snippet_len = segments, int(snippet_len)
        self.num_clips = 1 if transform.train else int(num_clips)
        self.temporal_jitter = temporal_jitter
        self.flow_source = flow_source
        self.backend = backend
        self.frame_template = frame_template
        self.seed = int(seed)
        self.epoch = 0
        self.name = name
        self._bad: set[int] = set()
        self._num_frames: dict[int, int] = {}

    # -- bookkeeping ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def num_views(self) -> int:
        return self.num_clips * (1 if self.transform.train else self.transform.crops)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _skip(self, index: int, err: Exception) -> None:
        rec = self.records[index]
        self._bad.add(index)
        self.skipped.append(SkippedItem(rec.video_id, str(rec.path), str(getattr(err, "reason", err))))
        log.warning("%s: skipping %s (%s); %d skipped so far", self.name or "dataset", rec.path, err, len(self.skipped))

    def scan(self, progress: bool = False) -> list[SkippedItem]:
        """Open every video (count its frames) and decode its first frame; records failures in
        ``skipped`` and returns the new ones.  Later items never return these videos."""
        before = len(self.skipped)
        indices = range(len(self.records))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"scan {self.name}", unit="video")
        for i in indices:
            if i in self._bad:
                continue
            try:
                self._load_frames(self.records[i], i, [0])
            except VideoDecodeError as err:
                self._skip(i, err)
        return self.skipped[before:]

    # -- loading -------------------------------------------------------------------------------
    def _count(self, rec: VideoRecord, index: int) -> int:
        if index not in self._num_frames:
            if rec.num_frames is not None:
                n = rec.num_frames
            elif rec.kind == "frames":
                if not rec.path.is_dir():
                    raise VideoDecodeError(rec.path, "frame folder not found")
                n = sum(1 for p in rec.path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            else:
                n = count_frames(rec.path, self.backend)
            if n < 1:
                raise VideoDecodeError(rec.path, "no frames")
            self._num_frames[index] = n
        return self._num_frames[index]

    def _load_frames(self, rec: VideoRecord, index: int, wanted: Sequence[int]) -> np.ndarray:
        uniq = sorted(set(int(i) for i in wanted))
        if rec.kind == "frames":
            decoded = read_frame_folder(rec.path, uniq, self.frame_template)
        else:
            decoded = read_video(rec.path, uniq, self.backend)
        pos = {i: k for k, i in enumerate(uniq)}
        return decoded[[pos[int(i)] for i in wanted]]

    def _indices(self, n: int, generator: torch.Generator) -> torch.Tensor:
        train = self.transform.train
        if self.segments is not None:
            if train or self.num_clips == 1:
                return tsn_segment_indices(n, self.segments, self.snippet_len, train=train, generator=generator)[None]
            # several TSN samplings at test time: shift the segment centres evenly
            base = tsn_segment_indices(n, self.segments, self.snippet_len, train=False)
            seg = max(n // self.segments, 1)
            return torch.stack([(base - seg // 2 + (seg * j) // self.num_clips) % n for j in range(self.num_clips)])
        return dense_clip_indices(
            n, self.frames, self.step, train=train, num_clips=self.num_clips, jitter=self.temporal_jitter and train, generator=generator
        )

    def _load(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        g = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))
        n = self._count(rec, index)
        idx = self._indices(n, g)  # (num_clips, T)
        frames = self._load_frames(rec, index, idx.reshape(-1).tolist())
        T = idx.shape[1]
        videos, flows = [], {"flow_fwd": [], "flow_bwd": []}
        valid = {"flow_fwd_valid": [], "flow_bwd_valid": []}
        # one set of random spatial parameters per item (all clips share it)
        state = g.get_state()
        for c in range(idx.shape[0]):
            clip = to_video_tensor(frames[c * T : (c + 1) * T])
            flow_in, ok = None, {}
            if self.flow_source is not None:
                fwd, bwd, fwd_ok, bwd_ok = self.flow_source(rec, idx[c].tolist(), n)
                flow_in = {
                    "flow_fwd": torch.from_numpy(fwd).permute(3, 0, 1, 2),
                    "flow_bwd": torch.from_numpy(bwd).permute(3, 0, 1, 2),
                }
                ok = {"flow_fwd_valid": torch.from_numpy(fwd_ok), "flow_bwd_valid": torch.from_numpy(bwd_ok)}
            g.set_state(state)
            views, flow_views = self.transform(clip, flow_in, generator=g)
            videos += views
            for k, v in flow_views.items():
                flows[k] += v
            for k, v in ok.items():
                valid[k] += [v] * len(views)
        item: dict[str, Any] = {"label": int(rec.label), "index": int(index), "num_views": len(videos)}
        single = len(videos) == 1
        item["video"] = videos[0] if single else torch.stack(videos)
        if self.flow_source is not None:
            for k in ("flow_fwd", "flow_bwd"):
                item[k] = flows[k][0] if single else torch.stack(flows[k])
            for k, v in valid.items():
                item[k] = v[0] if single else torch.stack(v)
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} videos")
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            if i in self._bad:
                continue
            try:
                return self._load(i)
            except VideoDecodeError as err:
                self._skip(i, err)
        raise RuntimeError(f"{self.name or 'dataset'}: every video failed to decode ({self.num_skipped} skipped)")


class FlowPairDataset(Dataset):
    """Middlebury-style image pairs with GT flow (optionally randomly cropped for training)."""

    def __init__(
        self,
        pairs: Sequence[readers.FlowPairRecord],
        *,
        crop: int | None = None,
        train: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
        seed: int = 0,
    ) -> None:
        self.pairs = list(pairs)
        self.crop, self.train = crop, train
        self.mean, self.std, self.normalize = tuple(mean), tuple(std), normalize
        self.seed, self.epoch = int(seed), 0
        self.skipped: list[SkippedItem] = []

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p = self.pairs[index]
        im1, im2 = read_image(p.frame1), read_image(p.frame2)
        flow = read_flo(p.flow)
        if im1.shape != im2.shape or im1.shape[:2] != flow.shape[:2]:
            raise ValueError(f"middlebury {p.name}: frame sizes {im1.shape}, {im2.shape} and flow {flow.shape} disagree")
        video = to_video_tensor(np.stack([im1, im2]))  # (3, 2, H, W)
        valid = torch.from_numpy(flow_valid_mask(flow))
        flow_t = torch.from_numpy(np.where(valid.numpy()[..., None], flow, 0.0).astype(np.float32)).permute(2, 0, 1)
        if self.crop is not None:
            H, W = flow.shape[:2]
            g = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))
            box = random_crop_box(H, W, self.crop, g) if self.train else center_crop_box(H, W, self.crop)
            video = crop_video(video, box.top, box.left, box.height, box.width)
            flow_t = flow_t[:, box.top : box.top + box.height, box.left : box.left + box.width]
            valid = valid[box.top : box.top + box.height, box.left : box.left + box.width]
        video = normalize(video, self.mean, self.std) if self.normalize else video.float()
        return {"video": video, "flow": flow_t.contiguous(), "valid": valid.contiguous(), "index": index, "name": p.name}


#: Names accepted by :func:`build_dataset`.
DATASETS = ("synth", "ucf101", "hmdb51", "sthv1", "kinetics400", "kinetics600", "middlebury")
#: Data sets whose labels change under a horizontal flip (no random flip by default).
DIRECTION_LABELLED = ("synth", "sthv1")


def build_dataset(
    name: str,
    root: str | os.PathLike,
    split: str,
    *,
    frames: int = 16,
    step: int = 1,
    size: int = 112,
    train: bool | None = None,
    views: int | tuple[int, int] = (1, 1),
    with_flow: bool = False,
    flow: str | None = None,
    segments: int | None = None,
    snippet_len: int = 1,
    resize: int | None = None,
    augment: str = "multiscale",
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66),
    jitter_range: tuple[int, int] | None = None,
    flip: bool | None = None,
    temporal_jitter: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    normalize: bool = True,
    fold: int = 1,
    backend: str = "pyav",
    check_files: bool = True,
    probe: bool = False,
    crop: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Build the dataset ``name`` (one of :data:`DATASETS`) for ``split``.

    ``train`` defaults to ``split == "train"`` and selects random augmentation and temporal
    sampling.  ``views = (num_clips, num_crops)`` (or an int: clips with 1 crop) sets the test
    views; ``num_crops`` is 1, 3 or 10.  ``with_flow`` adds exact GT flow (synth only).
    ``probe=True`` decodes the first frame of every video now and records failures in ``skipped``.
    ``flip`` (random horizontal flip in training) defaults to False for the data sets whose classes
    name a direction (``synth``, ``sthv1``: a mirrored "moving something left" clip shows "right",
    a mirrored clockwise spin is counter-clockwise) and True otherwise.  (Testing with 10 crops
    still includes the 5 mirrored views, the papers' protocol; use ``views=(n, 3)`` or ``(n, 1)``
    to avoid them on those data sets.)
    ``flow`` (a method name, e.g. ``"tvl1"``): add pre-computed flow read from
    ``root/flow/<flow>/`` (:class:`FlowFolderSource`), as ``with_flow`` adds GT flow.
    ``fold`` picks the UCF101/HMDB51 split (1-3).  For ``middlebury`` only ``split``, ``train``,
    ``crop``, ``mean``/``std``/``normalize`` and ``seed`` apply.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    train = (split == "train") if train is None else bool(train)
    if name == "middlebury":
        return FlowPairDataset(readers.read_middlebury(root), crop=crop, train=train, mean=mean, std=std, normalize=normalize, seed=seed)
    num_clips, num_crops = (views, 1) if isinstance(views, int) else (int(views[0]), int(views[1]))
    if with_flow and name != "synth":
        raise ValueError(f"with_flow=True needs ground-truth flow, which only 'synth' has (got {name!r})")
    if with_flow and flow:
        raise ValueError("give with_flow (ground truth) or flow (a pre-computed method), not both")
    if name == "synth":
        ann = readers.read_synth(root, split, check_files=check_files)
    elif name == "ucf101":
        ann = readers.read_ucf101(root, split, fold=fold, check_files=check_files)
    elif name == "hmdb51":
        ann = readers.read_hmdb51(root, split, fold=fold, check_files=check_files)
    elif name == "sthv1":
        ann = readers.read_sthv1(root, split, check_files=check_files)
    else:
        ann = readers.read_kinetics(root, split, version=int(name[len("kinetics"):]), check_files=check_files)
    if flip is None:
        flip = name not in DIRECTION_LABELLED
    transform = ClipTransform(
        size=size, train=train, augment=augment, resize=resize, scales=tuple(scales), jitter_range=jitter_range,
        flip=flip, crops=1 if train else num_crops, mean=tuple(mean), std=tuple(std), normalize=normalize,
    )  # fmt: skip
    ds = VideoClipDataset(
        ann, transform, frames=frames, step=step, segments=segments, snippet_len=snippet_len, num_clips=num_clips,
        temporal_jitter=temporal_jitter,
        flow_source=SynthFlowSource(root, split) if with_flow else FlowFolderSource(root, flow) if flow else None,
        backend=backend, seed=seed, name=f"{name}/{split}",
    )  # fmt: skip
    if probe:
        ds.scan()
    return ds
