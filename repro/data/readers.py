"""Annotation readers: turn a data set's official lists into :class:`VideoRecord` lists.

Each ``read_*`` function returns an :class:`Annotations` (records, class names, skipped items).
A record whose video file (or frame folder) is missing is not returned but listed in ``skipped``
with the reason, so a run can report it; corrupt files are found later, when decoded, by the
dataset (:mod:`repro.data.datasets`).

Layouts understood (``root`` is the dataset's own folder, i.e. ``<--data-dir>/<dataset>/`` --
``ucf101/``, ``hmdb51/``, ``sthv1/``, ``kinetics400/`` -- when the engine runs a row; the first
existing candidate is used):

* **synth** (built-in benchmark, :mod:`repro.data.synth`): ``{train,val}.csv``, ``classes.txt``.
* **UCF101**: videos ``root/UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` (or ``root/<Class>/...``);
  official lists ``root/ucfTrainTestlist/{classInd.txt, trainlist0N.txt, testlist0N.txt}`` (or in
  ``root``).  ``classInd.txt`` lines are ``"1 ApplyEyeMakeup"`` (1-based), ``trainlist`` lines
  ``"ApplyEyeMakeup/v_..._c01.avi 1"``, ``testlist`` lines carry no label (class from the folder).
* **HMDB51**: videos ``root/<class>/<name>.avi`` (or under ``hmdb51_org/`` or ``videos/``); split
  files ``root/testTrainMulti_7030_splits/<class>_test_splitN.txt`` (or ``splits/`` or ``root``)
  with lines ``"<name>.avi F"``: F = 1 training, 2 testing, 0 unused.  Classes sorted by name.
* **Something-Something V1**: JPEG folders ``root/20bn-something-something-v1/<id>/00001.jpg``
  (or ``root/frames/<id>`` or ``root/<id>``); CSVs ``something-something-v1-{labels,train,
  validation}.csv`` (in ``root`` or ``root/annotations``), ``;``-separated: ``"<id>;<label text>"``;
  label index = line number in ``labels.csv``.
* **Kinetics-400/600**: CSVs with header ``label,youtube_id,time_start,time_end,split[,is_cc]``,
  named ``{train,val,validate,test}.csv`` or ``kinetics[-_]{400,600}_{split}.csv`` /
  ``kinetics{400,600}_{split}.csv`` (in ``root`` or ``root/annotations``); videos named
  ``<youtube_id>_<start:06d>_<end:06d>.{mp4,mkv,webm,avi}`` anywhere under ``root`` (flat or per
  class folder).  Classes: the sorted labels of the training CSV.
* **Pre-computed flow** (any of the above; :mod:`repro.flow.extract` writes it, TSN / MMAction2
  extractions are read too): ``root/flow/<method>/<video_id>/x_00001.jpg, y_00001.jpg, ...``
  (or ``flow_x_``/``flow_y_``), file ``k`` = frames ``k-1 -> k``, quantised in ``[-20, 20]`` px;
  optional backward ``bx_``/``by_`` files; see :func:`flow_video_dir`.
* **Middlebury flow**: ``root/other-data/<seq>/frame10.png, frame11.png`` and
  ``root/other-gt-flow/<seq>/flow10.flo`` (sequences without GT flow are left out).
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "VideoRecord",
    "SkippedItem",
    "Annotations",
    "FlowPairRecord",
    "read_synth",
    "read_ucf101",
    "read_hmdb51",
    "read_sthv1",
    "read_kinetics",
    "read_middlebury",
    "VIDEO_SUFFIXES",
    "kinetics_file_stem",
    "flow_root",
    "flow_video_dir",
    "flow_group",
]

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video.  ``kind`` is ``"video"`` (a file PyAV decodes) or ``"frames"`` (a folder
    of JPEGs, Something-Something V1).  ``num_frames`` is None when the annotations do not say."""

    video_id: str
    path: Path
    label: int
    num_frames: int | None = None
    kind: str = "video"


@dataclass(frozen=True)
class SkippedItem:
    """A video left out of a data set, and why (``"missing"``, or the decode error)."""

    video_id: str
    path: str
    reason: str


@dataclass
class Annotations:
    records: list[VideoRecord]
    classes: list[str]
    skipped: list[SkippedItem] = field(default_factory=list)


@dataclass(frozen=True)
class FlowPairRecord:
    name: str
    frame1: Path
    frame2: Path
    flow: Path


def _first_existing(candidates: Iterable[Path], what: str, root: Path, is_dir: bool = False) -> Path:
    tried = []
    for c in candidates:
        tried.append(str(c))
        if (c.is_dir() if is_dir else c.is_file()):
            return c
    raise FileNotFoundError(f"{what} not found under {root}; tried: {', '.join(tried)}")


def _check_split(split: str, allowed: dict[str, str], dataset: str) -> str:
    if split not in allowed:
        raise ValueError(f"{dataset}: unknown split {split!r}; expected one of {sorted(allowed)}")
    return allowed[split]


def _keep_existing(records: list[VideoRecord], check_files: bool) -> tuple[list[VideoRecord], list[SkippedItem]]:
    if not check_files:
        return records, []
    kept, skipped = [], []
    for r in records:
        ok = r.path.is_dir() if r.kind == "frames" else r.path.is_file()
        if ok:
            kept.append(r)
        else:
            skipped.append(SkippedItem(r.video_id, str(r.path), "missing"))
    if skipped:
        log.warning("%d of %d videos missing (first: %s)", len(skipped), len(records), skipped[0].path)
    return kept, skipped


# ----------------------------------------------------------------------------------------------
def read_synth(root: str | os.PathLike, split: str, check_files: bool = True) -> Annotations:
    """The built-in benchmark written by :func:`repro.data.synth.generate`."""
    root = Path(root)
    split = _check_split(split, {"train": "train", "val": "val", "test": "val"}, "synth")
    classes_path = root / "classes.txt"
    csv_path = root / f"{split}.csv"
    for p in (classes_path, csv_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: generate the benchmark with `python -m repro data synth --out {root}`")
    classes = [c for c in classes_path.read_text().splitlines() if c]
    records = []
    with open(csv_path, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            try:
                records.append(VideoRecord(row["video_id"], root / row["path"], int(row["label"]), int(row["num_frames"])))
            except (KeyError, ValueError) as err:
                raise ValueError(f"{csv_path}, row {i + 2}: bad row {row} ({err})") from None
    kept, skipped = _keep_existing(records, check_files)
    return Annotations(kept, classes, skipped)


# ----------------------------------------------------------------------------------------------
def read_ucf101(root: str | os.PathLike, split: str, fold: int = 1, check_files: bool = True) -> Annotations:
    """UCF101 with the official ``classInd.txt`` / ``trainlist0{fold}`` / ``testlist0{fold}``."""
    root = Path(root)
    split = _check_split(split, {"train": "train", "test": "test", "val": "test"}, "ucf101")
    if fold not in (1, 2, 3):
        raise ValueError(f"ucf101: fold must be 1, 2 or 3, got {fold}")
    splits_dir = _first_existing([root / "ucfTrainTestlist", root / "splits", root], "UCF101 classInd.txt folder", root, True)
    class_ind = _first_existing([splits_dir / "classInd.txt"], "classInd.txt", root)
    videos_dir = next((d for d in (root / "UCF-101", root / "UCF101", root / "videos") if d.is_dir()), root)
    classes: list[str] = []
    for n, line in enumerate(class_ind.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{class_ind}, line {n}: expected '<index> <ClassName>', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise ValueError(f"{class_ind}, line {n}: class index {parts[0]} out of order (expected {len(classes) + 1})")
        classes.append(parts[1])
    index = {c: i for i, c in enumerate(classes)}
    list_path = _first_existing([splits_dir / f"{split}list0{fold}.txt"], f"UCF101 {split}list0{fold}.txt", root)
    records = []
    for n, line in enumerate(list_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rel = line.split()[0]
        class_name = rel.split("/")[0]
        if class_name not in index:
            raise ValueError(f"{list_path}, line {n}: class folder {class_name!r} not in {class_ind}")
        records.append(VideoRecord(Path(rel).stem, videos_dir / rel, index[class_name]))
    kept, skipped = _keep_existing(records, check_files)
    return Annotations(kept, classes, skipped)


# ----------------------------------------------------------------------------------------------
def read_hmdb51(root: str | os.PathLike, split: str, fold: int = 1, check_files: bool = True) -> Annotations:
    """HMDB51 with the official ``<class>_test_split{fold}.txt`` files (1 = train, 2 = test)."""
    root = Path(root)
    flag = _check_split(split, {"train": "1", "test": "2", "val": "2"}, "hmdb51")
    if fold not in (1, 2, 3):
        raise ValueError(f"hmdb51: fold must be 1, 2 or 3, got {fold}")
    suffix = f"_test_split{fold}.txt"
    splits_dir = next(
        (d for d in (root / "testTrainMulti_7030_splits", root / "splits", root) if d.is_dir() and any(d.glob(f"*{suffix}"))),
        None,
    )
    if splits_dir is None:
        raise FileNotFoundError(f"no HMDB51 '*{suffix}' split files under {root} (looked in testTrainMulti_7030_splits/, splits/, .)")
    split_files = sorted(splits_dir.glob(f"*{suffix}"))
    classes = [p.name[: -len(suffix)] for p in split_files]
    videos_dir = next((d for d in (root / "hmdb51_org", root / "videos") if d.is_dir()), root)
    records = []
    for label, (class_name, path) in enumerate(zip(classes, split_files)):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}, line {n}: expected '<video>.avi <0|1|2>', got {line!r}")
            if parts[1] == flag:
                records.append(VideoRecord(Path(parts[0]).stem, videos_dir / class_name / parts[0], label))
    kept, skipped = _keep_existing(records, check_files)
    return Annotations(kept, classes, skipped)


# ----------------------------------------------------------------------------------------------
def read_sthv1(root: str | os.PathLike, split: str, check_files: bool = True) -> Annotations:
    """Something-Something V1: JPEG folders + ``;``-separated CSVs."""
    root = Path(root)
    split = _check_split(split, {"train": "train", "val": "validation", "validation": "validation"}, "sthv1")
    ann_dirs = [root, root / "annotations"]
    labels_csv = _first_existing([d / "something-something-v1-labels.csv" for d in ann_dirs], "something-something-v1-labels.csv", root)
    split_csv = _first_existing([d / f"something-something-v1-{split}.csv" for d in ann_dirs], f"something-something-v1-{split}.csv", root)
    frames_dir = next((d for d in (root / "20bn-something-something-v1", root / "frames") if d.is_dir()), root)
    classes = [line.strip() for line in labels_csv.read_text(encoding="utf-8").splitlines() if line.strip()]
    index = {c: i for i, c in enumerate(classes)}
    records = []
    for n, line in enumerate(split_csv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(";", 1)
        if len(parts) != 2:
            raise ValueError(f"{split_csv}, line {n}: expected '<id>;<label>', got {line!r}")
        vid, label_text = parts[0].strip(), parts[1].strip()
        if label_text not in index:
            raise ValueError(f"{split_csv}, line {n}: label {label_text!r} not in {labels_csv}")
        records.append(VideoRecord(vid, frames_dir / vid, index[label_text], None, kind="frames"))
    kept, skipped = _keep_existing(records, check_files)
    return Annotations(kept, classes, skipped)


# ----------------------------------------------------------------------------------------------
def _kinetics_csv(root: Path, version: int, split: str) -> Path:
    names = {"train": ["train"], "val": ["val", "validate"], "test": ["test"]}[split]
    candidates = []
    for d in (root, root / "annotations"):
        for s in names:
            candidates += [d / f"{s}.csv", d / f"kinetics-{version}_{s}.csv", d / f"kinetics_{version}_{s}.csv", d / f"kinetics{version}_{s}.csv"]
    return _first_existing(candidates, f"Kinetics-{version} {split} CSV", root)


def _read_kinetics_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"youtube_id", "time_start", "time_end"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected columns label,youtube_id,time_start,time_end,split; got {reader.fieldnames}")
        return list(reader)


def kinetics_file_stem(youtube_id: str, time_start: str | float, time_end: str | float) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>``, the name the official downloader gives a clip."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def read_kinetics(root: str | os.PathLike, split: str, version: int = 400, check_files: bool = True) -> Annotations:
    """Kinetics-400/600: CSV annotations and ``<youtube_id>_<start>_<end>`` video files."""
    root = Path(root)
    split = _check_split(split, {"train": "train", "val": "val", "validation": "val", "test": "test"}, f"kinetics{version}")
    if version not in (400, 600, 700):
        raise ValueError(f"kinetics: version must be 400, 600 or 700, got {version}")
    split_csv = _kinetics_csv(root, version, split)
    rows = _read_kinetics_csv(split_csv)
    try:
        train_rows = rows if split == "train" else _read_kinetics_csv(_kinetics_csv(root, version, "train"))
    except FileNotFoundError:
        train_rows = rows
    classes = sorted({r["label"] for r in train_rows if r.get("label")})
    index = {c: i for i, c in enumerate(classes)}
    files: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file():
            files.setdefault(p.stem, p)
    records = []
    for n, r in enumerate(rows, 2):
        try:
            stem = kinetics_file_stem(r["youtube_id"], r["time_start"], r["time_end"])
        except ValueError as err:
            raise ValueError(f"{split_csv}, line {n}: bad time_start/time_end ({err})") from None
        label_text = r.get("label")
        if label_text and label_text not in index:
            raise ValueError(f"{split_csv}, line {n}: label {label_text!r} not among the training labels")
        label = index[label_text] if label_text else -1
        records.append(VideoRecord(stem, files.get(stem, root / split / (stem + ".mp4")), label))
    kept, skipped = _keep_existing(records, check_files)
    return Annotations(kept, classes, skipped)


# ----------------------------------------------------------------------------------------------
def read_middlebury(root: str | os.PathLike, sequences: Sequence[str] | None = None) -> list[FlowPairRecord]:
    """Middlebury flow pairs ``frame10 -> frame11`` that have ground truth ``flow10.flo``."""
    root = Path(root)
    data_dir = _first_existing([root / "other-data"], "Middlebury other-data/ folder", root, True)
    gt_dir = _first_existing([root / "other-gt-flow"], "Middlebury other-gt-flow/ folder", root, True)
    names = sorted(p.name for p in gt_dir.iterdir() if (p / "flow10.flo").is_file())
    if sequences is not None:
        unknown = sorted(set(sequences) - set(names))
        if unknown:
            raise ValueError(f"middlebury: sequences {unknown} have no GT flow under {gt_dir}; available: {names}")
        names = [n for n in names if n in set(sequences)]
    pairs = []
    for name in names:
        f1, f2 = data_dir / name / "frame10.png", data_dir / name / "frame11.png"
        if not (f1.is_file() and f2.is_file()):
            log.warning("middlebury: %s has GT flow but no frame10/frame11.png in %s; skipped", name, data_dir / name)
            continue
        pairs.append(FlowPairRecord(name, f1, f2, gt_dir / name / "flow10.flo"))
    if not pairs:
        raise FileNotFoundError(f"no Middlebury sequences with frames and GT flow under {root}")
    return pairs


# ----------------------------------------------------------------------------------------------
def flow_root(root: str | os.PathLike, method: str) -> Path:
    """Where the flow ``method`` of the dataset at ``root`` is stored: ``root/flow/<method>``."""
    if not method or "/" in method or method.startswith("."):
        raise ValueError(f"flow method: expected a method name such as 'tvl1', got {method!r}")
    return Path(root) / "flow" / method


def flow_video_dir(root: str | os.PathLike, method: str, video_id: str, group: str | None = None) -> Path:
    """The folder of one video's flow JPEGs (``x_00001.jpg``, ...; see :mod:`repro.flow.extract`):
    ``<method>/<video_id>``, or MMAction2's per-class ``<method>/<group>/<video_id>`` (UCF101 /
    HMDB51 rawframes) when only that one exists (``group``: the video's class folder)."""
    flat = flow_root(root, method) / video_id
    if group and not flat.exists() and (flow_root(root, method) / group / video_id).is_dir():
        return flow_root(root, method) / group / video_id
    return flat


def flow_group(record: VideoRecord) -> str | None:
    """The class folder a video file sits in (MMAction2 nests flow by it), None for frame folders."""
    return record.path.parent.name if record.kind == "video" else None
