"""Pre-compute a flow method on every video of a real dataset, once, in the two-stream layout.

    python -m repro flow extract --dataset ucf101 --data-dir D --method tvl1 --workers 8
    torchrun --nnodes 4 --nproc_per_node 1 -m repro flow extract --dataset sthv1 --data-dir D --method tvl1

Layout (what :class:`repro.data.datasets.FlowFolderSource` reads; :func:`repro.data.readers.flow_video_dir`)::

    D/<dataset>/flow/<method>/<video_id>/x_00001.jpg  y_00001.jpg      forward flow, frame 0 -> 1
                                         x_00002.jpg  y_00002.jpg      forward flow, frame 1 -> 2 ...
                                         bx_00001.jpg by_00001.jpg     backward flow, frame 1 -> 0 ...
                                         done.json                     written last: the video is complete

File ``k`` (1-based) holds the pair of 0-based frames ``k-1 -> k`` (backward: ``k -> k-1``),
each component a greyscale JPEG quantised linearly in ``[-bound, bound]`` (default 20 px;
:mod:`repro.flow.quantize`), the convention of TSN's ``dense_flow`` and MMAction2's
``flow_extraction.py``.  We write MMAction2's ``x_``/``y_`` names; a folder of TSN's
``flow_x_``/``flow_y_`` names (an extraction the user already has) is read as well, and one
without the backward ``bx_``/``by_`` files gets the backward flow approximated from the forward one.

Resumable: each video is written into ``<video_id>.partial-<pid>/`` and renamed into place when
complete, so a killed extraction leaves no half video behind and the next one skips every
finished video (its ``done.json``; for a folder without one, its last ``x_`` file).  Parallel:
``--workers N`` processes on this machine, and under ``torchrun`` rank ``r`` of ``W`` takes
videos ``r, r + W, ...`` of the sorted list.  The bar shows videos done and the time left.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from repro.data import readers
from repro.data.readers import VideoRecord

__all__ = ["ExtractReport", "dataset_videos", "extract_video", "extract_dataset", "video_done", "missing_videos",
           "method_pool", "video_pair_flows", "video_flows_from_file"]

log = logging.getLogger("repro.flow")

DONE_FILE = "done.json"


@dataclass
class ExtractReport:
    method: str
    dataset: str
    out: Path
    total: int  # videos of the dataset (all ranks)
    mine: int  # videos of this rank
    done_before: int  # of mine, finished by an earlier run
    extracted: int
    failed: list[str]
    seconds: float


def dataset_videos(dataset: str, root: Path) -> list[VideoRecord]:
    """Every video of ``dataset`` (train and test of every fold), each once, sorted by id."""
    if dataset in ("ucf101", "hmdb51"):
        # fold 1's train and test lists together hold every video (each fold partitions them)
        read = readers.read_ucf101 if dataset == "ucf101" else readers.read_hmdb51
        anns = [read(root, s, fold=1) for s in ("train", "test")]
    elif dataset == "sthv1":
        anns = [readers.read_sthv1(root, s) for s in ("train", "val")]
    elif dataset.startswith("kinetics"):
        version = int(dataset[len("kinetics"):])
        anns = [readers.read_kinetics(root, s, version=version) for s in ("train", "val")]
    else:
        raise ValueError(f"dataset: expected ucf101, hmdb51, sthv1, kinetics400 or kinetics600, got {dataset!r}")
    by_id: dict[str, VideoRecord] = {}
    for ann in anns:
        for rec in ann.records:
            by_id.setdefault(rec.video_id, rec)
    return [by_id[k] for k in sorted(by_id)]


def video_done(folder: Path) -> bool:
    """Whether ``folder`` holds a finished extraction: ours has ``done.json`` (and is renamed into
    place only when complete, so an unfinished one of ours never sits at ``folder``); a folder
    with ``x_``/``flow_x_`` files and no marker is taken as another tool's (TSN, MMAction2)
    finished extraction, as a user who brings one expects."""
    if (folder / DONE_FILE).is_file():
        return True
    return folder.is_dir() and (any(folder.glob("x_*.jpg")) or any(folder.glob("flow_x_*.jpg")))


def _read_frames(rec: VideoRecord) -> np.ndarray:
    """All frames of a video ``(N, H, W, 3)`` uint8 (a file, or a folder of JPEGs)."""
    from repro.data.video_io import read_frame_folder, read_video

    if rec.kind == "frames":
        n = sum(1 for p in rec.path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return read_frame_folder(rec.path, range(n))
    return read_video(rec.path)


def _write_pair(folder: Path, index: int, flow: np.ndarray, bound: float, prefix: str = "") -> None:
    """``<prefix>x_<index>.jpg`` and ``<prefix>y_<index>.jpg`` (quality 95, as TSN's dense_flow)."""
    import cv2

    from repro.flow.quantize import quantize_flow

    for axis, image in zip("xy", quantize_flow(flow, bound)):
        path = folder / f"{prefix}{axis}_{index:05d}.jpg"
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write JPEG {path}")


def extract_video(rec: VideoRecord, folder: Path, method, bound: float) -> int:
    """Flow of every neighbouring pair of ``rec``, both directions, into ``folder`` (atomically:
    a ``.partial-<pid>`` folder renamed into place).  Returns the number of pairs."""
    frames = _read_frames(rec)
    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for t in range(len(frames) - 1):
        _write_pair(tmp, t + 1, method(frames[t], frames[t + 1]), bound)
        _write_pair(tmp, t + 1, method(frames[t + 1], frames[t]), bound, prefix="b")
    (tmp / DONE_FILE).write_text(json.dumps({"video_id": rec.video_id, "method": method.name, "bound": bound,
                                             "frames": int(len(frames)), "pairs": int(max(len(frames) - 1, 0))}))
    if folder.exists():  # an unfinished folder of another tool (no marker): replaced
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return max(len(frames) - 1, 0)


# One method per worker process, built once (TVNet builds a module; OpenCV objects do not pickle).
_WORKER: dict[str, object] = {}


def _init_worker(method_name: str, threads: int) -> None:
    import cv2
    import torch

    from repro.flow.methods import create_flow_method

    cv2.setNumThreads(threads)
    torch.set_num_threads(threads)
    _WORKER["method"] = create_flow_method(method_name)


def _work(job: tuple[VideoRecord, Path, float]) -> tuple[str, str | None]:
    rec, folder, bound = job
    from repro.data.video_io import VideoDecodeError

    try:
        extract_video(rec, folder, _WORKER["method"], bound)
    except (VideoDecodeError, OSError, ValueError) as err:
        return rec.video_id, f"{type(err).__name__}: {err}"
    return rec.video_id, None


def video_pair_flows(frames: np.ndarray, n: int, pair_flow) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward flow of every neighbouring pair of a video's first ``n`` frames:
    ``(n - 1, H, W, 2)`` each, ``fwd[t]`` = frame t -> t+1 and ``bwd[t]`` = frame t+1 -> t."""
    H, W = frames.shape[1:3]
    fwd = np.zeros((max(n - 1, 0), H, W, 2), np.float32)
    bwd = np.zeros_like(fwd)
    for t in range(n - 1):
        fwd[t] = pair_flow(frames[t], frames[t + 1])
        bwd[t] = pair_flow(frames[t + 1], frames[t])
    return fwd, bwd


def video_flows_from_file(job: tuple[str, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    """Pool job of the built-in benchmark's flow cache: video ``index`` (``n`` frames) of the
    decoded ``(N, F, H, W, 3)`` frames file at ``path`` (mapped once per worker)."""
    path, index, n = job
    if path not in _WORKER:
        _WORKER[path] = np.load(path, mmap_mode="r")
    return (index, *video_pair_flows(_WORKER[path][index], n, _WORKER["method"]))


def method_pool(method: str, workers: int, threads: int = 1):
    """``workers`` processes, each holding its own ``method`` (for :func:`_work`,
    :func:`video_flows_from_file`); ``threads``: OpenCV / torch threads per worker."""
    import multiprocessing as mp

    # Not fork: a child forked from a process whose OpenCV thread pool has run hangs in
    # cv2 (seen).  forkserver imports torch and OpenCV once, in a fresh server, and forks the
    # workers from it (spawn would import them once per worker, ~10 s each).
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["repro.flow.extract", "repro.flow.methods"])
    else:
        ctx = mp.get_context("spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(method, threads))


def _rank() -> tuple[int, int]:
    """This process's (rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def extract_dataset(dataset: str, data_dir: Path | str, method: str, *, workers: int = 1, bound: float | None = None,
                    limit: int | None = None, progress: bool = True, threads: int = 1,
                    rank: int | None = None, world_size: int | None = None) -> ExtractReport:
    """Extract ``method`` for every video of ``dataset`` under ``data_dir/<dataset>`` (see the
    module docstring).  ``limit``: only the first N videos (a trial); ``threads``: OpenCV / torch
    threads per worker process."""
    from tqdm.auto import tqdm

    from repro.flow.methods import create_flow_method
    from repro.flow.quantize import DEFAULT_BOUND

    bound = DEFAULT_BOUND if bound is None else float(bound)
    create_flow_method(method)  # an unknown method fails here, before any work
    root = Path(data_dir) / dataset
    if not root.is_dir():
        raise FileNotFoundError(f"dataset '{dataset}' not found at {root} (expected {Path(data_dir)}/<dataset>/)")
    out = readers.flow_root(root, method)
    videos = dataset_videos(dataset, root)[:limit]
    if rank is None or world_size is None:
        rank, world_size = _rank()
    mine = videos[rank::world_size]
    todo = [r for r in mine if not video_done(readers.flow_video_dir(root, method, r.video_id, readers.flow_group(r)))]
    out.mkdir(parents=True, exist_ok=True)
    start, failed = time.perf_counter(), []
    jobs = [(r, readers.flow_video_dir(root, method, r.video_id), bound) for r in todo]
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"{method} flow of {dataset}"
               + (f" (rank {rank}/{world_size})" if world_size > 1 else ""), unit="video",
               disable=not progress, file=sys.stderr)
    pool = method_pool(method, workers, threads) if workers > 1 else None
    if pool is None:
        _init_worker(method, threads)
        results = map(_work, jobs)
    else:
        results = pool.imap_unordered(_work, jobs)
    try:
        for video_id, error in results:
            if error is not None:
                failed.append(video_id)
                log.warning("%s: %s; skipped (a later run tries it again)", video_id, error)
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return ExtractReport(method, dataset, out, len(videos), len(mine), len(mine) - len(todo),
                         len(todo) - len(failed), failed, round(time.perf_counter() - start, 2))


def missing_videos(root: Path, method: str, records: Sequence[VideoRecord]) -> list[str]:
    """The ids of ``records`` whose flow by ``method`` is not extracted under ``root``."""
    return [r.video_id for r in records
            if not video_done(readers.flow_video_dir(root, method, r.video_id, readers.flow_group(r)))]
