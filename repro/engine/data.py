"""From a row's ``RunConfig`` to the train and validation datasets the engine trains on.

The datasets themselves live in :mod:`repro.data`; this module only decides *which* ones a run
needs: it generates the built-in benchmark when a ``mini``/``small`` run asks for it
(``dataset: synth``), builds the two splits with the row's sampling (frames x step, crop size,
test views), asks for ground-truth flow when ``flow: gt``, and describes the data for the
results table.

So that decoding never bounds training speed at mini scale, the built-in benchmark is decoded
once into a uint8 array per split (``<root>/decoded/<split>-frames.npy``, memory-mapped, shared
by DataLoader workers) and its GT flow into float32 arrays (only when a run asks for flow);
:class:`CachedClipDataset` then only crops, resizes and normalises.  The cache is keyed by the
benchmark's ``meta.json`` configuration and rebuilt when that changes.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from repro import layout
from repro.data.datasets import VideoClipDataset, build_dataset
from repro.fileio import atomic_save_npy, file_lock
from repro.identity import files_fingerprint
from repro.jobs.base import NotRunnable
from repro.spec.schema import RunConfig, resolved_config, split_folds

__all__ = ["RunData", "dataset_root", "build_run_data", "data_missing", "flow_missing", "run_fold", "SMOKE_CLIPS", "num_classes_of", "DecodedSplit", "decoded_split",
           "CachedClipDataset", "CachedFlowSource", "resolve_pair_flow", "PairFlow", "flow_workers"]

log = logging.getLogger("repro.engine")

SYNTH = "synth"
#: Datasets whose labels depend on direction ("moving something left/right", clockwise /
#: counter-clockwise): a horizontal flip would turn a clip into another class, so training
#: uses no random flip there (common practice on Something-Something).
NO_FLIP_DATASETS = frozenset({SYNTH, "sthv1"})


@dataclass
class RunData:
    train: Dataset
    val: Dataset
    num_classes: int
    root: Path
    description: str  # shown beside the numbers, e.g. "mini, built-in benchmark (synth mini, ...)"

    @property
    def skipped(self) -> int:
        return _num_skipped(self.train) + _num_skipped(self.val)

    def measured_on(self) -> str:
        """:attr:`description` as the data really read: after a run, videos that failed to decode
        (skipped) are said, with the counts that were used."""
        train, val = _num_skipped(self.train), _num_skipped(self.val)
        if not train and not val:
            return self.description
        return (f"{self.description}; {train + val} undecodable videos skipped "
                f"({len(self.train) - train} train / {len(self.val) - val} val used)")  # type: ignore[arg-type]


def _num_skipped(ds: Dataset) -> int:
    n = getattr(ds, "num_skipped", None)
    if isinstance(n, int):
        return n
    skipped = getattr(ds, "skipped", 0)
    return len(skipped) if isinstance(skipped, (list, tuple, set)) else int(skipped)


def dataset_root(cfg: RunConfig, data_dir: Path | str, *, progress: bool = True) -> Path:
    """Where ``cfg.dataset`` lives under ``data_dir``; the built-in benchmark is generated there
    on first use (``<data_dir>/synth/<preset>``, deterministic, seed 0)."""
    data_dir = Path(data_dir)
    if cfg.dataset == SYNTH:
        from repro.data import synth

        preset = resolved_config(cfg)["preset"]
        root = layout.synth_root(data_dir, preset)
        if preset not in synth.PRESETS:
            # a custom preset someone generated there (e.g. a test's tiny one) is used as it is
            if (root / "meta.json").is_file() and synth.read_meta(root).get("preset") == preset:
                return root
            raise NotRunnable(f"synth preset '{preset}' is not built in (known: {sorted(synth.PRESETS)}) "
                              f"and {root} holds no benchmark generated with it")
        return Path(synth.generate(root, preset, seed=0, progress=progress))  # returns at once when present
    root = data_dir / cfg.dataset
    if not root.is_dir():
        raise NotRunnable(f"dataset '{cfg.dataset}' not found at {root} (put it there or pass --data-dir)")
    return root


def num_classes_of(dataset: Dataset) -> int:
    for attr in ("num_classes",):
        value = getattr(dataset, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    classes = getattr(dataset, "classes", None)
    if classes:
        return len(classes)
    raise ValueError(f"{type(dataset).__name__} tells neither num_classes nor classes")


def resolve_pair_flow(name: str) -> PairFlow:
    """The two-frame function of the ``repro.flow`` method ``name`` (e.g. ``"tvl1"``,
    ``"dis-fast"``, ``"tvnet-1-1-50"``): ``(H, W, 3) uint8, (H, W, 3) uint8 -> (H, W, 2)`` pixels."""
    from repro.flow.methods import create_flow_method

    try:
        return create_flow_method(name)
    except ValueError as e:
        raise NotRunnable(f"flow: {e}") from None


def flow_workers(num_workers: int | None) -> int:
    """Processes for the built-in benchmark's one-time flow cache: ``--workers`` when given (0:
    this process alone), else every core (nothing else runs while the cache is computed)."""
    return (os.cpu_count() or 1) if num_workers is None else max(1, num_workers)


#: What ``--smoke`` reads: this many training clips and test videos (one view each).
SMOKE_CLIPS = 4


def run_fold(cfg: RunConfig) -> int | None:
    """The UCF101 / HMDB51 fold of a one-fold run (``split: 1`` / ``"1"`` / ``"split1"``); None
    for datasets without folds.  A several-fold split is run fold by fold by the engine
    (:func:`repro.engine.job.train_row`), never here."""
    folds = split_folds(cfg.split)
    if folds is None:
        return None
    if len(folds) > 1:
        raise ValueError(f"split {cfg.split!r}: one fold per run (the engine runs folds {folds} one by one)")
    return folds[0]


def build_run_data(cfg: RunConfig, data_dir: Path | str, scale: str, *, seed: int = 0, progress: bool = True,
                   cache: bool | None = None, pair_flow: PairFlow | None = None, wants_flow: bool = True,
                   smoke: bool = False, flow_workers: int = 1) -> RunData:
    """Train and validation datasets of a run (validation with the row's test views).

    ``seed`` seeds the datasets' random augmentation (item ``i`` of epoch ``e`` draws from a
    generator seeded by ``(seed, e, i)``).  ``cache`` (default: for the built-in benchmark)
    serves decoded frames from :func:`decoded_split`.  ``cfg.flow``: ``"gt"`` adds the dataset's
    exact flow; a flow method name adds that method's flow: for the built-in benchmark computed
    once per video into the cache by ``pair_flow`` (default: the named method over ``flow_workers``
    processes), for a real dataset read from its extraction (``<dataset>/flow/<method>/``,
    :mod:`repro.flow.extract`).
    ``wants_flow=False`` (the model takes no flow) reads no flow whatever ``cfg.flow`` says.
    ``smoke``: the first :data:`SMOKE_CLIPS` training clips and test videos, one test view.
    """
    flow = None if cfg.flow in (None, "none") or not wants_flow else cfg.flow
    use_cache = cache if cache is not None else cfg.dataset == SYNTH
    root = dataset_root(cfg, data_dir, progress=progress)
    if flow not in (None, "gt"):
        if use_cache:
            resolve_pair_flow(flow)  # an unknown method fails here, before any work
        elif (reason := flow_missing(cfg, root, flow)) is not None:
            raise NotRunnable(reason)
    resolved = resolved_config(cfg)
    views = (1, 1) if smoke else (resolved["test_clips"], resolved["test_crops"])
    common: dict[str, Any] = dict(frames=resolved["frames"], step=cfg.step, size=resolved["size"],
                                  with_flow=flow == "gt", seed=seed)
    if flow not in (None, "gt") and not use_cache:
        common["flow"] = flow
    if cfg.dataset in NO_FLIP_DATASETS:
        common["flip"] = False
    if cfg.segments:
        # TSN: `frames` is the clip's whole length T = segments x snippet length (LGD-2D: 3 x 1,
        # Dynamics w/ TSN: 3 x 8); each segment gives one snippet of consecutive frames.
        if resolved["frames"] % cfg.segments:
            raise NotRunnable(f"segments: {cfg.segments} must divide frames ({resolved['frames']}): "
                              f"frames = segments x snippet length")
        common.update(segments=cfg.segments, snippet_len=resolved["frames"] // cfg.segments)
    try:
        fold = run_fold(cfg)
    except ValueError as e:
        raise NotRunnable(str(e)) from None
    if fold is not None:
        common["fold"] = fold  # UCF101 / HMDB51 split 1..3
    try:
        train = build_dataset(cfg.dataset, root, "train", train=True, **common)
        val = build_dataset(cfg.dataset, root, "val", train=False, views=views, **common)
    except (FileNotFoundError, ValueError) as e:
        raise NotRunnable(f"dataset '{cfg.dataset}' at {root}: {e}") from None
    if smoke:
        _keep_first(train, SMOKE_CLIPS)
        _keep_first(val, SMOKE_CLIPS)
    if use_cache:
        cached = dict(flow=flow, pair_flow=pair_flow, progress=progress, workers=flow_workers)
        train = CachedClipDataset.wrap(train, decoded_split(root, "train", train, **cached))
        val = CachedClipDataset.wrap(val, decoded_split(root, "val", val, **cached))
    n_train, n_val = len(train), len(val)  # type: ignore[arg-type]
    if not n_train or not n_val:
        raise NotRunnable(f"dataset '{cfg.dataset}' at {root}: {n_train} training / {n_val} test videos found "
                          f"(are the videos where the split files say?)")
    if cfg.dataset == SYNTH:
        desc = f"built-in benchmark (synth {resolved['preset']}, {n_train} train / {n_val} val clips)"
    else:
        split = f" split {fold}" if fold is not None else f" {cfg.split}" if cfg.split else ""
        desc = f"{cfg.dataset}{split} ({n_train} train / {n_val} val videos)"
    if flow and flow != "none":  # which flow a flow-taking model was fed is part of what was measured
        desc += f", flow: {'ground truth' if flow == 'gt' else flow}"
    return RunData(train, val, num_classes_of(train), root, desc)


def _keep_first(dataset: Any, n: int) -> None:
    """Keep the first ``n`` videos of a :class:`VideoClipDataset` (``--smoke``)."""
    dataset.records = dataset.records[:n]


#: (dataset root, method, dataset, fold) whose extraction was found complete in this process.
_FLOW_COMPLETE: set[tuple] = set()
#: (dataset root, dataset, fold) whose split files and videos were found in this process.
_DATA_FOUND: set[tuple] = set()


def flow_missing(cfg: RunConfig, root: Path, flow: str) -> str | None:
    """Why the pre-computed ``flow`` of the run's videos cannot be read (None: every video of
    both splits has it under ``root/flow/<flow>/``)."""
    from repro.data.readers import flow_root
    from repro.flow.extract import missing_videos

    where = flow_root(root, flow)
    fold = (split_folds(cfg.split) or [1])[0]  # any fold's train + test lists name every video
    key = (str(root), flow, cfg.dataset, fold)
    if key in _FLOW_COMPLETE:
        return None
    records = []
    try:
        for split in ("train", "val"):
            records += build_dataset(cfg.dataset, root, split, fold=fold, flow=flow).records
    except (FileNotFoundError, ValueError) as e:
        return f"dataset '{cfg.dataset}' at {root}: {e}"
    missing = missing_videos(root, flow, records)
    if not missing:
        _FLOW_COMPLETE.add(key)  # a complete extraction stays complete: `list` checks it once
    else:
        return (f"flow '{flow}' not extracted for {len(missing)} of {len(records)} videos under {where} "
                f"(first: {missing[0]}); run `python -m repro flow extract --dataset {cfg.dataset} "
                f"--data-dir {root.parent} --method {flow}`")
    return None


def data_missing(cfg: RunConfig, data_dir: Path | str, *, wants_flow: bool = True) -> str | None:
    """What a run of ``cfg`` would miss in ``data_dir`` (None: it would start): the dataset
    folder, its split files, videos, pre-computed flow.  Fast: reads the split files and checks
    that files exist, decodes nothing.  (The built-in benchmark is generated on first use.)"""
    if cfg.dataset == SYNTH:
        if resolved_config(cfg)["preset"] in _synth_presets():
            return None  # generated on first use
        try:
            dataset_root(cfg, data_dir, progress=False)
        except NotRunnable as e:
            return str(e)
        return None
    root = Path(data_dir) / cfg.dataset
    if not root.is_dir():
        return f"dataset '{cfg.dataset}' not found at {root} (see README: data layout)"
    for fold in (split_folds(cfg.split) if cfg.dataset in ("ucf101", "hmdb51") else None) or [1]:
        if (str(root), cfg.dataset, fold) in _DATA_FOUND:
            continue
        try:
            sizes = [len(build_dataset(cfg.dataset, root, s, fold=fold).records) for s in ("train", "val")]
        except (FileNotFoundError, ValueError) as e:
            return f"dataset '{cfg.dataset}': {e}"
        if not all(sizes):
            return f"dataset '{cfg.dataset}' at {root}: {sizes[0]} training / {sizes[1]} test videos found"
        _DATA_FOUND.add((str(root), cfg.dataset, fold))  # `list` reads a dataset's lists once
    flow = None if cfg.flow in (None, "none") or not wants_flow else cfg.flow
    if flow == "gt":
        return f"flow 'gt' (ground truth) exists only for the built-in benchmark, not for '{cfg.dataset}'"
    if flow is not None:
        return flow_missing(cfg, root, flow)
    return None


def _synth_presets() -> set[str]:
    from repro.data import synth

    return set(synth.PRESETS)


# ------------------------------------------------------------------------------ decoded cache
@dataclass
class DecodedSplit:
    """A split's decoded videos: ``frames (N, F, H, W, 3)`` uint8, ``lengths (N,)``, and with flow
    ``flow_fwd``/``flow_bwd`` ``(N, F-1, H, W, 2)`` float32 (pair ``t`` = frames t -> t+1 /
    t+1 -> t); ``bad`` lists the indices that failed to decode."""

    frames: np.ndarray
    lengths: np.ndarray
    video_ids: list[str]
    bad: list[int]
    flow_fwd: np.ndarray | None = None
    flow_bwd: np.ndarray | None = None


def _cache_key(root: Path, records: list) -> str:
    """Identity of the decoded data (:func:`repro.identity.files_fingerprint`): the benchmark's
    meta.json and every video file's size and modification time."""
    return files_fingerprint(root / "meta.json", [(rec.video_id, Path(rec.path)) for rec in records])


#: A two-frame flow method: ``(frame0, frame1)`` uint8 ``(H, W, 3)`` -> flow ``(H, W, 2)`` float32
#: in pixels with ``frame0(x) ~ frame1(x + flow(x))``.
PairFlow = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _decode_frames(root: Path, folder: Path, split: str, records: list, key: str, progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from repro.data.video_io import VideoDecodeError, read_video
    from repro.results import atomic_write_text

    frames_list, lengths, bad = [], [], []
    for i, rec in enumerate(tqdm(records, desc=f"decoding {split} once", unit="video", leave=False,
                                 disable=not progress, file=sys.stderr)):
        try:
            frames = read_video(rec.path)
        except VideoDecodeError as err:
            log.warning("%s: cannot decode %s (%s); skipped", split, rec.path, err)
            frames = None
            bad.append(i)
        frames_list.append(frames)
        lengths.append(0 if frames is None else len(frames))
    good = [f for f in frames_list if f is not None]
    if not good:
        raise RuntimeError(f"{root}: no video of split '{split}' could be decoded")
    F, H, W = max(len(f) for f in good), good[0].shape[1], good[0].shape[2]
    out = np.zeros((len(records), F, H, W, 3), np.uint8)
    for i, f in enumerate(frames_list):
        if f is not None:
            out[i, :len(f)] = f
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(folder / f"{split}-frames.npy", out)
    index = {"key": key, "video_ids": [r.video_id for r in records], "lengths": lengths, "bad": bad}
    atomic_write_text(folder / f"{split}-index.json", json.dumps(index))
    return index


#: A flow computation saves what it has every this many seconds (see :func:`_compute_flows`).
FLOW_CHECKPOINT_SECONDS = 120.0


def _video_flows(frames: np.ndarray, lengths: np.ndarray, records: list, flow: str, dataset: Any,
                 pair_flow: PairFlow | None, start: int, workers: int, frames_path: Path | None):
    """``(i, fwd_i, bwd_i)`` for videos ``start, start + 1, ...`` in order: the dataset's exact
    flow (``"gt"``), ``pair_flow``, or the registered method ``flow`` over ``workers`` processes."""
    from repro.flow.extract import method_pool, video_flows_from_file, video_pair_flows

    todo = range(start, len(records))
    if flow == "gt":
        for i in todo:
            n = int(lengths[i])
            f, b, _, _ = dataset.flow_source(records[i], list(range(n - 1)), n) if n >= 2 else (None,) * 4
            yield i, f, b
    elif pair_flow is not None or workers <= 1 or frames_path is None:
        pair_flow = pair_flow or resolve_pair_flow(flow)
        for i in todo:
            yield (i, *video_pair_flows(frames[i], int(lengths[i]), pair_flow))
    else:
        with method_pool(flow, workers) as pool:  # leaving the block (done, killed) ends the workers
            yield from pool.imap(video_flows_from_file, ((str(frames_path), i, int(lengths[i])) for i in todo))


def _compute_flows(frames: np.ndarray, lengths: np.ndarray, records: list, flow: str, dataset: Any,
                   pair_flow: PairFlow | None, split: str, progress: bool, *, partial: Path | None = None,
                   key: str = "", workers: int = 1, frames_path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flow of every neighbouring pair of every video, both directions.

    ``pair_flow`` ``None``: the registered method ``flow`` (:mod:`repro.flow.methods`), computed
    over ``workers`` processes that each map ``frames_path`` (the same numbers as one process).
    With ``partial`` (a path prefix) the videos done so far are saved there every
    :data:`FLOW_CHECKPOINT_SECONDS` (atomically), and a computation that was killed resumes from
    them when the cache ``key`` still matches: TV-L1 of the mini train split is ~30 min on a free
    core, about an hour beside a training run (docs/builtin_benchmark.md).
    """
    from tqdm.auto import tqdm

    from repro.results import atomic_write_text

    N, F, H, W, _ = frames.shape
    fwd = np.zeros((N, max(F - 1, 1), H, W, 2), np.float32)
    bwd = np.zeros_like(fwd)
    done = 0
    if partial is not None:
        state_path, saved_fwd, saved_bwd = (partial.with_name(partial.name + ext)
                                            for ext in (".json", "-fwd.npy", "-bwd.npy"))
        if state_path.is_file() and saved_fwd.is_file() and saved_bwd.is_file():
            state = json.loads(state_path.read_text())
            if state.get("key") == key and state.get("flow") == flow:
                done = int(state["done"])
                fwd[:done], bwd[:done] = np.load(saved_fwd)[:done], np.load(saved_bwd)[:done]
                log.info("%s flow of %s: resuming after %d of %d videos", flow, split, done, N)
    last_save = time.monotonic()
    bar = tqdm(total=len(records), initial=done, desc=f"{flow} flow of {split} once", unit="video", leave=False,
               disable=not progress, file=sys.stderr)
    for i, f, b in _video_flows(frames, lengths, records, flow, dataset, pair_flow, done, workers, frames_path):
        n = int(lengths[i])
        if n >= 2:
            fwd[i, :n - 1], bwd[i, :n - 1] = f, b
        bar.update()
        if partial is not None and time.monotonic() - last_save > FLOW_CHECKPOINT_SECONDS and i + 1 < N:
            atomic_save_npy(saved_fwd, fwd[:i + 1])
            atomic_save_npy(saved_bwd, bwd[:i + 1])
            atomic_write_text(state_path, json.dumps({"key": key, "flow": flow, "done": i + 1}))
            last_save = time.monotonic()
    bar.close()
    return fwd, bwd


def decoded_split(root: Path | str, split: str, dataset: Any, *, flow: str | None = None,
                  pair_flow: PairFlow | None = None, progress: bool = True, workers: int = 1) -> DecodedSplit:
    """Decode every video of ``dataset`` (a :class:`repro.data.datasets.VideoClipDataset`) once
    into ``<root>/decoded/`` and memory-map it; later calls (and other processes) only map it.

    ``flow``: ``None``, ``"gt"`` (the dataset's own ``flow_source``, i.e. the benchmark's exact
    flow) or the name of a flow method computed on every pair of neighbouring frames, both
    directions, once per video (e.g. OpenCV TV-L1): by ``pair_flow`` when given, else by the
    registered method of that name over ``workers`` processes.
    """
    root = Path(root)
    folder = layout.decoded_dir(root)
    records = dataset.records
    key = _cache_key(root, records)
    ids = [r.video_id for r in records]

    def fresh(index_path: Path, *files: Path) -> dict[str, Any] | None:
        if not index_path.is_file() or not all(f.is_file() for f in files):
            return None
        index = json.loads(index_path.read_text())
        return index if index.get("key") == key and index.get("video_ids") == ids else None

    frames_path, index_path = folder / f"{split}-frames.npy", folder / f"{split}-index.json"
    # One lock per file set: a long flow computation (TV-L1: about an hour for the mini train
    # split) must not block other runs that only read the frames or another flow.
    with file_lock(folder / f".{split}-frames.lock"):
        index = fresh(index_path, frames_path) or _decode_frames(root, folder, split, records, key, progress)
    frames = np.load(frames_path, mmap_mode="r")
    flow_fwd = flow_bwd = None
    if flow is not None:
        tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in flow)
        fwd_path, bwd_path = folder / f"{split}-flow-{tag}-fwd.npy", folder / f"{split}-flow-{tag}-bwd.npy"
        flow_index = folder / f"{split}-flow-{tag}.json"
        with file_lock(folder / f".{split}-flow-{tag}.lock"):
            if fresh(flow_index, fwd_path, bwd_path) is None:
                partial = folder / f".{split}-flow-{tag}-partial"
                fwd, bwd = _compute_flows(frames, np.asarray(index["lengths"]), records, flow, dataset, pair_flow,
                                          split, progress, partial=partial, key=key, workers=workers,
                                          frames_path=frames_path)
                atomic_save_npy(fwd_path, fwd)
                atomic_save_npy(bwd_path, bwd)
                from repro.results import atomic_write_text

                atomic_write_text(flow_index, json.dumps({"key": key, "video_ids": ids, "flow": flow}))
                for leftover in folder.glob(partial.name + "*"):
                    leftover.unlink()
        flow_fwd, flow_bwd = np.load(fwd_path, mmap_mode="r"), np.load(bwd_path, mmap_mode="r")
    return DecodedSplit(frames=frames, lengths=np.asarray(index["lengths"]), video_ids=ids, bad=list(index["bad"]),
                        flow_fwd=flow_fwd, flow_bwd=flow_bwd)


class CachedFlowSource:
    """The ``flow_source`` callable of :class:`repro.data.datasets.VideoClipDataset`, served from
    a :class:`DecodedSplit` (same semantics: fwd of the last frame and bwd of the first are 0
    and invalid)."""

    def __init__(self, decoded: DecodedSplit):
        if decoded.flow_fwd is None or decoded.flow_bwd is None:
            raise ValueError("the decoded split holds no flow (decode it with flow='gt' or a flow method)")
        self.decoded = decoded
        self._row = {vid: i for i, vid in enumerate(decoded.video_ids)}

    def __call__(self, record: Any, indices: Sequence[int], num_frames: int):
        i = self._row[record.video_id]
        fwd_all, bwd_all = self.decoded.flow_fwd[i], self.decoded.flow_bwd[i]
        idx = np.asarray(indices)
        fwd_ok, bwd_ok = idx < num_frames - 1, idx >= 1
        fwd = np.where(fwd_ok[:, None, None, None], fwd_all[np.clip(idx, 0, num_frames - 2)], 0).astype(np.float32)
        bwd = np.where(bwd_ok[:, None, None, None], bwd_all[np.clip(idx - 1, 0, num_frames - 2)], 0).astype(np.float32)
        return fwd, bwd, fwd_ok, bwd_ok


class CachedClipDataset(VideoClipDataset):
    """A :class:`~repro.data.datasets.VideoClipDataset` whose frames (and GT flow) come from a
    :class:`DecodedSplit` instead of the video files; sampling, augmentation, views and the item
    format are the wrapped dataset's own."""

    in_memory = True

    @classmethod
    def wrap(cls, dataset: VideoClipDataset, decoded: DecodedSplit) -> "CachedClipDataset":
        if [r.video_id for r in dataset.records] != decoded.video_ids:
            raise ValueError("the decoded split does not list the dataset's videos")
        obj = cls.__new__(cls)
        obj.__dict__.update(dataset.__dict__)
        obj.decoded = decoded
        obj._num_frames = {i: int(n) for i, n in enumerate(decoded.lengths) if n > 0}
        for i in decoded.bad:
            if i not in obj._bad:
                obj._skip(i, RuntimeError("could not be decoded"))
        if decoded.flow_fwd is not None:  # GT flow, or a flow method's, computed once per video
            obj.flow_source = CachedFlowSource(decoded)
        return obj

    # Overrides VideoClipDataset's one decoding hook: frames come from the decoded array.
    def _load_frames(self, rec, index: int, wanted: Sequence[int]) -> np.ndarray:
        return np.asarray(self.decoded.frames[index][np.asarray(wanted, dtype=np.int64)])
