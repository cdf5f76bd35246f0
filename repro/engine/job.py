"""The ``train`` job: train a table row's model as its spec says and report its accuracy.

A row names a model (``row.model``) and, per scale, a ``RunConfig`` (dataset, sampling,
optimisation, seeds).  :func:`train_row` trains one model per seed in the row's work folder
(``<work>/<scale>/<paper>/table<N>/<row>/seed<k>``), resuming an interrupted run from its
``last.pt`` and re-using a finished one (``final.pt``) when its settings are unchanged, and
returns the seeds' mean metrics (percent) and every seed's own.

Initialisation (``RunConfig.init``): a local checkpoint path, or ``row:<paper>:<table>:<row>``
for the trained weights of another row at the same scale (the papers' Kinetics ->
Something-Something / UCF101 chains; the classifier is dropped when its shape differs).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from repro.engine import checkpoint as ckpt_io
from repro.engine.data import RunData, build_run_data
from repro.engine.distributed import barrier, dist_info
from repro.engine.trainer import evaluate, fit, resolve_settings, same_settings
from repro.jobs import JobContext, JobOutput, NotRunnable, register_job
from repro.models.contract import model_inputs, takes_flow, training_stages
from repro.registry import create_model
from repro.spec.schema import Row, RunConfig, TableSpec

__all__ = ["TRAIN_KEYS", "RowRun", "parse_row_ref", "train_row", "evaluate_row", "train_job", "build_row_model"]

log = logging.getLogger("repro.engine")

#: Metrics the train job reports (``measure: "train:<key>"``).
TRAIN_KEYS = ("top1", "top5", "avg_top1_top5", "mean_class_acc", "epe")
#: RunConfig fields that ask for a model's training stage of the same name (repro.models.contract).
_STAGE_FIELDS = ("motionnet_pretrain",)
#: RunConfig fields that do not change what a run computes (left out of its identity).
_NOT_IDENTITY = {"seeds", "notes", "test_clips", "test_crops"}


@dataclass
class RowRun:
    metrics: dict[str, float]
    per_seed: dict[int, dict[str, float]]
    data: str
    seeds: list[int]
    details: dict[str, Any] = field(default_factory=dict)


def parse_row_ref(ref: str) -> tuple[str, int, str]:
    """``paper:table3:row`` or ``paper:3:row`` -> ``("paper", 3, "row")``."""
    parts = ref.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"row reference: expected '<paper>:<table>:<row>' (e.g. trajectorynet:table3:appearance), got {ref!r}")
    paper, table, row = parts
    digits = table[5:] if table.startswith("table") else table
    if not digits.isdigit():
        raise ValueError(f"row reference {ref!r}: table must be 'table<N>' or '<N>', got {table!r}")
    return paper, int(digits), row


def find_row(specs: dict[str, TableSpec], ref: str) -> tuple[TableSpec, Row]:
    paper, table, row_id = parse_row_ref(ref)
    key = f"{paper}:table{table}"
    if key not in specs:
        raise ValueError(f"row reference {ref!r}: no spec {key} (known: {', '.join(specs) or 'none'})")
    spec = specs[key]
    try:
        return spec, spec.row(row_id)
    except KeyError:
        raise ValueError(f"row reference {ref!r}: {key} has no row '{row_id}' "
                         f"(rows: {', '.join(r.id for r in spec.rows)})") from None


def _config(row: Row, scale: str, where: str) -> RunConfig:
    if row.model is None:
        raise NotRunnable(row.needs or f"{where}: the row names no model")
    cfg = row.run_config(scale)
    if cfg is None:
        raise NotRunnable(f"{where}: no '{scale}' configuration in the spec")
    return cfg


def _pass_flow(cfg: RunConfig, model: torch.nn.Module, where: str) -> bool:
    """Whether the model is given flow: ``flow: gt`` or a flow method; ``none``/unset: not."""
    if cfg.flow in (None, "none"):
        return False
    if not takes_flow(model):
        raise ValueError(f"{where}: flow '{cfg.flow}' is given but model {type(model).__name__} takes no flow "
                         f"(its inputs: {', '.join(model_inputs(model))})")
    return True


def build_row_model(row: Row, cfg: RunConfig, num_classes: int) -> torch.nn.Module:
    """The row's model with the run's ``model_args`` merged in; ``num_classes`` from the data
    unless the run's ``model_args`` give it (the row's own args carry the full-scale count)."""
    args = {**row.model.args, **cfg.model_args}
    if "num_classes" not in cfg.model_args:
        args["num_classes"] = num_classes
    return create_model(row.model.name, **args)


def _init_path(cfg: RunConfig, work_root: Path, scale: str, seed: int, where: str) -> Path | None:
    if not cfg.init:
        return None
    if cfg.init.startswith("row:"):
        paper, table, row_id = parse_row_ref(cfg.init[4:])
        src_dir = ckpt_io.row_work_dir(work_root, scale, paper, table, row_id)
        candidates = [ckpt_io.seed_dir(src_dir, seed) / "final.pt"] + sorted(src_dir.glob("seed*/final.pt"))
        for path in candidates:
            if path.is_file():
                return path
        raise NotRunnable(f"{where}: init {cfg.init!r} needs that row trained first at scale '{scale}' "
                          f"(no final.pt under {src_dir}); run `python -m repro train {cfg.init[4:]} --scale {scale}`")
    path = Path(cfg.init).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{where}: init checkpoint {path} not found")
    return path


def _run_training_stages(model: torch.nn.Module, cfg: RunConfig, data: RunData, work_root: Path, scale: str,
                         seed: int, where: str, progress: bool) -> dict[str, Any]:
    """Run the training stages the model declares (:meth:`repro.models.contract.VideoModel.training_stages`)
    that the run config asks for (a field named as the stage, e.g. ``motionnet_pretrain``); results are
    cached under ``<work>/<scale>/`` by the stage, rank 0 runs, the others load.  Returns
    ``{stage name: report}``."""
    stages = {stage.name: stage for stage in training_stages(model)}
    reports: dict[str, Any] = {}
    for name in _STAGE_FIELDS:
        pre = getattr(cfg, name, None)
        if pre is None:
            continue
        if name not in stages:
            raise ValueError(f"{where}: {name} is set but {type(model).__name__} declares no such training stage "
                             f"(it declares {sorted(stages) or 'none'})")
        settings = pre.model_dump()
        keyed = {**settings, "size": cfg.size, "frames": cfg.frames, "step": cfg.step}  # what the clips were
        out = stages[name].cache_path(work_root / scale, keyed, data.description, seed)
        if dist_info().is_main:
            report = stages[name].run(data.train, settings, out=out, seed=seed, progress=progress)
        barrier()
        if not dist_info().is_main:  # every process starts from rank 0's result
            report = stages[name].load(out)
        reports[name] = {"file": str(out), **report, **settings}
    return reports


def _identity(row: Row, cfg: RunConfig, num_classes: int, init: Path | None) -> dict[str, Any]:
    return {"model": row.model.name, "model_args": {**row.model.args, **cfg.model_args},
            "num_classes": num_classes, "init": str(init) if init else None,
            "config": {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _NOT_IDENTITY}}


def _identical_finished_run(work_root: Path, scale: str, seed: int, fingerprint: dict[str, Any], data_root: Path,
                            exclude: Path) -> Path | None:
    """A finished run (``final.pt`` with metrics) of another row at ``scale`` whose settings --
    model and arguments, run config, seed -- are exactly ``fingerprint``: the same run.

    Checkpoints do not record a built-in benchmark's definition, only its name; a benchmark
    regenerated from a new definition is newer than every run trained on the old one, so a
    candidate must be newer than the data's ``meta.json``.
    """
    meta = Path(data_root) / "meta.json"
    data_time = meta.stat().st_mtime if meta.is_file() else 0.0
    for candidate in sorted(Path(work_root, scale).glob(f"*/table*/*/seed{seed}/final.pt")):
        if candidate.parent.resolve() == Path(exclude).resolve() or candidate.stat().st_mtime <= data_time:
            continue
        try:
            done = ckpt_io.load_checkpoint(candidate)
        except ValueError:
            continue  # an unreadable checkpoint is nobody's twin
        if done.get("metrics") and same_settings(done.get("settings"), fingerprint):
            return candidate
    return None


def _set_aside_if_stale(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Checkpoints written under other settings (the spec changed) are moved to ``stale-<time>``."""
    stale = [p for p in (run_dir / "last.pt", run_dir / "final.pt") if p.is_file()
             and not same_settings(ckpt_io.load_checkpoint(p).get("settings"), fingerprint)]
    if stale and dist_info().is_main:
        aside = run_dir / f"stale-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir(parents=True, exist_ok=True)
        for p in stale:
            shutil.move(str(p), aside / p.name)
        log.warning("%s: settings changed; old checkpoints moved to %s", run_dir, aside)
    barrier()  # no process may look for last.pt while rank 0 moves it


def train_row(spec: TableSpec, row: Row, scale: str, *, work_root: Path | str, data_dir: Path | str,
              seeds: list[int] | None = None, resume: bool = True, progress: bool = True,
              overrides: dict[str, Any] | None = None) -> RowRun:
    """Train (or resume, or re-use) the row's model for each seed; mean and per-seed metrics.

    ``overrides`` are :class:`~repro.engine.trainer.TrainSettings` fields (``epochs``,
    ``num_workers``, ``checkpoint_interval_s``, ``amp``, ...); ``epochs`` and ``batch_size``
    override the spec, for smoke runs.
    """
    where = f"{spec.paper}:table{spec.table}:{row.id} ({scale})"
    cfg = _config(row, scale, where)
    work_root = Path(work_root)
    row_dir = ckpt_io.row_work_dir(work_root, scale, spec.paper, spec.table, row.id)
    seeds = list(seeds if seeds is not None else cfg.seeds)
    overrides = dict(overrides or {})

    per_seed: dict[int, dict[str, float]] = {}
    histories: dict[int, list] = {}
    times: dict[int, float] = {}
    threads: dict[int, int | None] = {}  # torch threads each seed trained with (None: not recorded)
    init_reports: dict[int, Any] = {}
    pretrain_reports: dict[int, Any] = {}
    same_run_as: dict[int, str] = {}
    for seed in seeds:
        run_dir = ckpt_io.seed_dir(row_dir, seed)
        init = _init_path(cfg, work_root, scale, seed, where)
        # the datasets' own augmentation streams are seeded by the run's seed too
        data = build_run_data(cfg, data_dir, scale, seed=seed, progress=progress)
        if overrides.get("num_workers") is None:
            # One worker even for the decoded cache: a worker runs torch with one thread, while
            # the main process's multi-threaded small ops (resize, normalise) are ~10x slower
            # on a busy 2-core machine (measured: 239 vs 23 clips/s).
            overrides["num_workers"] = 1 if getattr(data.train, "in_memory", False) else min(4, os.cpu_count() or 1)
        settings = resolve_settings(cfg, seed=seed, **overrides)
        settings.identity = _identity(row, cfg, data.num_classes, init)
        fingerprint = settings.fingerprint()
        _set_aside_if_stale(run_dir, fingerprint)
        final = run_dir / "final.pt"
        if resume and not final.is_file() and not (run_dir / "last.pt").is_file():
            twin = _identical_finished_run(work_root, scale, seed, fingerprint, data.root, exclude=run_dir)
            if twin is not None and dist_info().is_main:
                # Another table's row is the very same run (same model, settings, data and seed:
                # e.g. TrajectoryNet Table 7's MotionNet-(17) row at mini is Table 5's): re-use it.
                log.info("%s seed %d: the same run as %s; re-using it", where, seed, twin)
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(twin, final)
                same_run_as[seed] = str(twin.parent)
            barrier()
        if resume and final.is_file():
            done = ckpt_io.load_checkpoint(final)
            if done.get("metrics"):
                log.info("%s seed %d: already trained (%s)", where, seed, final)
                per_seed[seed], histories[seed] = dict(done["metrics"]), list(done["history"])
                times[seed] = float(done["train_time_s"])
                threads[seed] = done.get("threads")
                if done.get("motionnet_pretrain") is not None:
                    pretrain_reports[seed] = done["motionnet_pretrain"]
                continue
        ckpt_io.seed_everything(seed)  # model initialisation: identical on every process
        model = build_row_model(row, cfg, data.num_classes)
        stage_reports = _run_training_stages(model, cfg, data, work_root, scale, seed, where, progress)
        if "motionnet_pretrain" in stage_reports:
            pretrain_reports[seed] = stage_reports["motionnet_pretrain"]
        if init is not None:
            report = ckpt_io.load_init_weights(model, init)
            init_reports[seed] = {"from": str(init), "dropped": report["dropped"], "missing": report["missing"]}
        pass_flow = _pass_flow(cfg, model, where)
        result = fit(model, data.train, data.val, settings, run_dir, num_classes=data.num_classes,
                     resume=resume, progress=progress, pass_flow=pass_flow,
                     # in final.pt, so a result assembled later from it (or from an identical row's
                     # copy of it) still says which MotionNet pre-training the run started from
                     record={"motionnet_pretrain": pretrain_reports.get(seed)})
        per_seed[seed], histories[seed], times[seed] = result.metrics, result.history, result.train_time_s
        threads[seed] = torch.get_num_threads()

    keys = sorted(set.intersection(*(set(m) for m in per_seed.values())) - {"count"})
    mean = {k: sum(per_seed[s][k] for s in seeds) / len(seeds) for k in keys}
    details: dict[str, Any] = {
        "skipped_videos": data.skipped,
        "epochs": resolve_settings(cfg, seed=seeds[0], **overrides).epochs,
        "train_time_s": round(sum(times.values()) / len(times), 2),
        "history": histories[seeds[0]] if len(seeds) == 1 else {str(s): histories[s] for s in seeds},
        "model": row.model.name,
        "num_classes": data.num_classes,
        "val_videos": int(per_seed[seeds[0]].get("count", 0)),
    }
    if len(seeds) > 1:
        details["per_seed"] = {str(s): {k: per_seed[s][k] for k in keys} for s in seeds}
        details["train_time_s_per_seed"] = {str(s): round(times[s], 2) for s in seeds}
    details["train_threads"] = {str(s): threads[s] for s in seeds}
    if init_reports:
        details["init"] = {str(s): r for s, r in init_reports.items()}
    if pretrain_reports:
        details["motionnet_pretrain"] = {str(s): r for s, r in pretrain_reports.items()}
    if same_run_as:
        details["same_run_as"] = {str(s): p for s, p in same_run_as.items()}
    return RowRun(metrics=mean, per_seed=per_seed, data=data.description, seeds=seeds, details=details)


def evaluate_row(spec: TableSpec, row: Row, scale: str, *, work_root: Path | str, data_dir: Path | str,
                 seed: int | None = None, checkpoint: Path | str | None = None, progress: bool = True,
                 batch_size: int | None = None, num_workers: int = 0) -> tuple[dict[str, float], RunData]:
    """Evaluate a trained row (its ``final.pt``, else ``last.pt``, or ``checkpoint``) on the
    validation set with the row's test views."""
    where = f"{spec.paper}:table{spec.table}:{row.id} ({scale})"
    cfg = _config(row, scale, where)
    seed = cfg.seeds[0] if seed is None else seed
    if checkpoint is None:
        run_dir = ckpt_io.seed_dir(ckpt_io.row_work_dir(work_root, scale, spec.paper, spec.table, row.id), seed)
        checkpoint = next((p for p in (run_dir / "final.pt", run_dir / "last.pt") if p.is_file()), None)
        if checkpoint is None:
            raise FileNotFoundError(f"{where}: no checkpoint in {run_dir}; train it first "
                                    f"(python -m repro train {spec.paper}:table{spec.table}:{row.id} --scale {scale})")
    data = build_run_data(cfg, data_dir, scale, seed=seed, progress=progress)
    model = build_row_model(row, cfg, data.num_classes)
    state = ckpt_io.load_checkpoint(checkpoint)
    model.load_state_dict(state.get("model", state))
    device = torch.device("cuda", dist_info().local_rank) if torch.cuda.is_available() else torch.device("cpu")
    model.to(device)
    metrics = evaluate(model, data.val, num_classes=data.num_classes,
                       batch_size=batch_size or max(1, (cfg.batch_size or 16) // int(getattr(data.val, "num_views", 1))),
                       num_workers=num_workers, device=device,
                       pass_flow=_pass_flow(cfg, model, where), progress=progress)
    metrics["checkpoint"] = str(checkpoint)  # type: ignore[assignment]
    return metrics, data


def _work_root(ctx: JobContext) -> Path:
    """The runner hands a row's own folder (``<work>/<scale>/<paper>/table<N>/<row>``); the
    root is what chains between rows resolve against."""
    wd = Path(ctx.work_dir)
    expected = (ctx.scale, ctx.spec.paper, f"table{ctx.spec.table}", ctx.row.id)
    if len(wd.parts) >= 4 and tuple(wd.parts[-4:]) == expected:
        return wd.parents[3]
    return wd


def _limit_opencv_threads(threads: int) -> None:
    try:
        import cv2
    except ImportError:  # OpenCV is the optional `flow` extra
        return
    cv2.setNumThreads(threads)


@register_job("train")
def train_job(ctx: JobContext) -> JobOutput:
    """Train and evaluate the row at ``ctx.scale``; metrics in percent (mean over seeds)."""
    unknown = set(ctx.wanted) - set(TRAIN_KEYS)
    if unknown:
        raise NotRunnable(f"the train job does not measure {sorted(unknown)} (it reports {list(TRAIN_KEYS)})")
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
        _limit_opencv_threads(ctx.threads)  # pre-computed flow (e.g. TV-L1) runs in OpenCV
    opts = dict(ctx.options)
    seeds = opts.pop("seeds", None)
    run = train_row(ctx.spec, ctx.row, ctx.scale, work_root=_work_root(ctx), data_dir=ctx.data_dir, seeds=seeds,
                    resume=ctx.resume, progress=ctx.progress, overrides=opts)
    missing = [k for k in ctx.wanted if k not in run.metrics]
    if missing:
        raise NotRunnable(f"the run measured no {missing} (e.g. 'epe' needs a model that predicts flow "
                          "and a dataset with ground-truth flow)")
    seed: int | list[int] = run.seeds[0] if len(run.seeds) == 1 else run.seeds
    return JobOutput(metrics=run.metrics, data=run.data, seed=seed, details=run.details)
