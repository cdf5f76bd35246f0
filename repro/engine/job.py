"""The ``train`` job: train a table row's model as its spec says and report its accuracy.

A row names a model (``row.model``) and, per scale, a ``RunConfig`` (dataset, sampling,
optimisation, seeds).  :func:`train_row` trains one model per seed in the row's work folder
(:func:`repro.layout.row_work_dir` / ``seed<k>``), resuming an interrupted run from its
``last.pt`` and re-using a finished one (``final.pt``) when its settings are unchanged, and
returns the seeds' mean metrics (percent) and every seed's own.  A finished run is recorded in the
identity index (:func:`repro.identity.run_key`); a row that is the very same run as one already
finished (same model, settings, data and seed) re-uses it by looking its key up.

Initialisation (``RunConfig.init``): a local checkpoint path, or ``row:<paper>:<table>:<row>``
for the trained weights of another row at the same scale (the papers' Kinetics ->
Something-Something / UCF101 chains; the classifier is dropped when its shape differs).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from repro import layout
from repro.engine import checkpoint as ckpt_io
from repro.engine.aggregate import SeedRun, aggregate_seeds
from repro.engine.data import RunData, build_run_data, flow_workers
from repro.engine.distributed import barrier, dist_info
from repro.engine.trainer import evaluate, fit, resolve_settings, same_settings
from repro.identity import code_fingerprint, data_fingerprint, run_key
from repro.jobs.base import JobContext, JobOutput, NotRunnable
from repro.jobs.train import TRAIN_KEYS
from repro.models.contract import takes_flow, training_stages
from repro.registry import create_model
from repro.spec.refs import parse_row_ref
from repro.engine.optim import iteration_schedule
from repro.spec.schema import Row, RunConfig, TableSpec, resolved_config, split_folds

__all__ = ["RowRun", "train_row", "evaluate_row", "train_job", "build_row_model"]

log = logging.getLogger("repro.engine")

#: RunConfig fields that ask for a model's training stage of the same name (repro.models.contract).
_STAGE_FIELDS = ("motionnet_pretrain",)
#: RunConfig fields that do not change what a run computes (left out of its identity).
_NOT_IDENTITY = {"seeds", "notes", "test_clips", "test_crops", "eval_chunk"}


@dataclass
class RowRun:
    metrics: dict[str, float]
    per_seed: dict[int, dict[str, float]]
    data: str
    seeds: list[int]
    details: dict[str, Any] = field(default_factory=dict)


def _config(row: Row, scale: str, where: str) -> RunConfig:
    if row.model is None:
        raise NotRunnable(row.needs or f"{where}: the row names no model")
    cfg = row.run_config(scale)
    if cfg is None:
        raise NotRunnable(f"{where}: no '{scale}' configuration in the spec")
    return cfg


def _pass_flow(cfg: RunConfig, model: torch.nn.Module, where: str) -> bool:
    """Whether the model is given flow: ``flow: gt`` or a flow method, and the model declares flow
    inputs (a row inheriting its table's ``flow`` whose model takes none is run without)."""
    return cfg.flow not in (None, "none") and takes_flow(model)


def row_takes_flow(row: Row, cfg: RunConfig) -> bool:
    """Whether the row's model declares flow inputs (:func:`repro.models.contract.takes_flow`),
    asked of a model built on the ``meta`` device (no memory, no initialisation cost)."""
    if cfg.flow in (None, "none"):
        return False
    args = {**row.model.args, **cfg.model_args}
    try:
        with torch.device("meta"):
            model = create_model(row.model.name, **args)
    except Exception:  # a builder that computes on its tensors in __init__: build it for real
        model = create_model(row.model.name, **args)
    return takes_flow(model)


def build_row_model(row: Row, cfg: RunConfig, num_classes: int, imagenet_file: Path | None = None) -> torch.nn.Module:
    """The row's model with the run's ``model_args`` merged in; ``num_classes`` from the data
    unless the run's ``model_args`` give it (the row's own args carry the full-scale count).
    ``imagenet_file``: ImageNet weights (``init: imagenet``) the model's builder loads (a 2D
    checkpoint is inflated into the video model's spatial convolutions)."""
    args = {**row.model.args, **cfg.model_args}
    if "num_classes" not in cfg.model_args:
        args["num_classes"] = num_classes
    if imagenet_file is None:
        return create_model(row.model.name, **args)
    try:
        return create_model(row.model.name, pretrained_file=str(imagenet_file), **args)
    except TypeError as e:
        raise NotRunnable(f"init: imagenet, but model {row.model.name} takes no pretrained_file ({e})") from None


#: Where ``init: imagenet`` finds its file when ``--init-file`` is not given.
IMAGENET_ENV = "REPRO_IMAGENET_INIT"


def imagenet_file(cfg: RunConfig, given: Path | str | None = None) -> Path | None:
    """The ImageNet weights of an ``init: imagenet`` run: ``given`` (``--init-file``), else
    ``$REPRO_IMAGENET_INIT``; None when the run asks for no ImageNet init.  Missing: NotRunnable."""
    if cfg.init != "imagenet":
        return None
    path = given or os.environ.get(IMAGENET_ENV)
    if not path:
        raise NotRunnable(f"init: imagenet needs the ImageNet weights file: pass --init-file FILE or set "
                          f"${IMAGENET_ENV} (nothing is downloaded)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotRunnable(f"init: imagenet: ImageNet weights file {path} not found (--init-file / ${IMAGENET_ENV})")
    return path


def _init_path(cfg: RunConfig, work_root: Path, scale: str, seed: int, where: str) -> Path | None:
    if not cfg.init or cfg.init == "imagenet":  # ImageNet weights are loaded by the builder
        return None
    if cfg.init.startswith("row:"):
        paper, table, row_id = parse_row_ref(cfg.init[4:])
        src_dir = layout.row_work_dir(work_root, scale, paper, table, row_id)
        candidates = [layout.seed_dir(src_dir, seed) / "final.pt"] + sorted(src_dir.glob("seed*/final.pt"))
        for path in candidates:
            if path.is_file():
                return path
        raise NotRunnable(f"{where}: init {cfg.init!r} needs that row trained first at scale '{scale}' "
                          f"(no final.pt under {src_dir}); run `python -m repro train {cfg.init[4:]} --scale {scale}`")
    path = Path(cfg.init).expanduser()
    if not path.is_file():  # absent, as a dataset or an unrun init row is: the row is missing, not failed
        raise NotRunnable(f"{where}: init checkpoint {path} not found")
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
        out = stages[name].cache_path(layout.stage_cache_root(work_root, scale), keyed, data.description, seed)
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


def _index_finished_run(work_root: Path, scale: str, key: str, run_dir: Path) -> None:
    """Record ``run_dir`` (holding a finished ``final.pt``) under its identity ``key``."""
    if not dist_info().is_main:
        return
    from repro.fileio import atomic_write_json

    path = layout.identity_index_path(work_root, scale, key)
    rel = os.path.relpath(run_dir, path.parent)
    if path.is_file() and _indexed_final(path) is not None:
        return  # the first run with this identity stays the one others re-use
    atomic_write_json(path, {"run_dir": rel, "code": code_fingerprint()})


def _indexed_final(path: Path) -> Path | None:
    try:
        final = (path.parent / json.loads(path.read_text())["run_dir"] / "final.pt").resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable index entry names no run
    return final if final.is_file() else None


def _identical_finished_run(work_root: Path, scale: str, key: str, data_root: Path, exclude: Path) -> Path | None:
    """The ``final.pt`` of a finished run of another row with identity ``key``: the same run.

    A lookup in the identity index.  Checkpoints do not record a custom benchmark's definition,
    only its name; a benchmark regenerated from a new definition is newer than every run trained
    on the old one, so a candidate must be newer than the data's ``meta.json``.
    """
    index = layout.identity_index_path(work_root, scale, key)
    if dist_info().is_main and not index.parent.is_dir():
        from repro.migrations.index_runs import index_finished_runs

        index_finished_runs(work_root, scale)  # once: runs finished before the index existed
    barrier()
    candidate = _indexed_final(index)
    meta = Path(data_root) / "meta.json"
    data_time = meta.stat().st_mtime if meta.is_file() else 0.0
    if candidate is None or candidate.parent == Path(exclude).resolve() or candidate.stat().st_mtime <= data_time:
        return None
    return candidate


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


def _train_folds(spec: TableSpec, row: Row, scale: str, folds: list[int], **kwargs: Any) -> RowRun:
    """A several-fold split (``split: "1,2,3"``): one run per fold, each in its own work folder
    (``<row>-split<k>``), and their mean -- "averaged over the three splits", as the papers report."""
    cfg = row.run_config(scale)
    runs = {}
    for fold in folds:
        one = row.model_copy(update={"id": f"{row.id}-split{fold}", scale: cfg.model_copy(update={"split": str(fold)})})
        runs[fold] = train_row(spec, one, scale, **kwargs)
    keys = [k for k in runs[folds[0]].metrics if all(k in r.metrics for r in runs.values())]
    mean = {k: sum(float(r.metrics[k]) for r in runs.values()) / len(runs) for k in keys}
    first = runs[folds[0]]
    data = first.data.replace(f" split {folds[0]} ", f" splits {','.join(map(str, folds))} (mean over folds) ", 1)
    details = {**first.details, "folds": {str(f): r.metrics for f, r in runs.items()}}
    return RowRun(metrics=mean, per_seed=first.per_seed, data=data, seeds=first.seeds, details=details)


def train_row(spec: TableSpec, row: Row, scale: str, *, work_root: Path | str, data_dir: Path | str,
              seeds: list[int] | None = None, resume: bool = True, progress: bool = True,
              overrides: dict[str, Any] | None = None, init_file: Path | str | None = None,
              smoke: bool = False) -> RowRun:
    """Train (or resume, or re-use) the row's model for each seed; mean and per-seed metrics.

    ``overrides`` are :class:`~repro.engine.trainer.TrainSettings` fields (``epochs``,
    ``num_workers``, ``checkpoint_interval_s``, ``amp``, ...); ``epochs`` and ``batch_size``
    override the spec, for smoke runs.  ``init_file``: the ImageNet weights of an
    ``init: imagenet`` row (else ``$REPRO_IMAGENET_INIT``).  ``smoke``: a few clips, one step
    per seed... (see :data:`repro.engine.data.SMOKE_CLIPS`); only for a throw-away ``work_root``.
    """
    where = f"{spec.paper}:table{spec.table}:{row.id} ({scale})"
    cfg = _config(row, scale, where)
    folds = split_folds(cfg.split)
    if folds and len(folds) > 1 and smoke:  # the set-up check of the first fold is enough
        folds = folds[:1]
        row = row.model_copy(update={scale: cfg.model_copy(update={"split": str(folds[0])})})
        cfg = row.run_config(scale)
    if folds and len(folds) > 1 and cfg.dataset in ("ucf101", "hmdb51"):
        return _train_folds(spec, row, scale, folds, work_root=work_root, data_dir=data_dir, seeds=seeds,
                            resume=resume, progress=progress, overrides=overrides, init_file=init_file, smoke=smoke)
    imagenet = imagenet_file(cfg, init_file)
    wants_flow = row_takes_flow(row, cfg)
    work_root = Path(work_root)
    row_dir = layout.row_work_dir(work_root, scale, spec.paper, spec.table, row.id)
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
        run_dir = layout.seed_dir(row_dir, seed)
        # a smoke run checks the set-up, not the chain: another row's weights are not needed for it
        init = None if smoke and (cfg.init or "").startswith("row:") else _init_path(cfg, work_root, scale, seed, where)
        # the datasets' own augmentation streams are seeded by the run's seed too
        data = build_run_data(cfg, data_dir, scale, seed=seed, progress=progress, wants_flow=wants_flow, smoke=smoke,
                              flow_workers=flow_workers(overrides.get("num_workers")))
        if smoke:  # one step of a batch that fits: the set-up check, not a measurement
            overrides.update(epochs=1, batch_size=min(2, len(data.train)), eval_batch_size=1)
        elif len(data.train) < resolved_config(cfg)["batch_size"] and overrides.get("batch_size") is None:
            raise NotRunnable(f"{where}: {len(data.train)} training videos, fewer than one batch of "
                              f"{resolved_config(cfg)['batch_size']} (pass --batch-size)")
        if cfg.iterations:  # the paper's schedule in iterations, as epochs of this dataset
            batch = overrides.get("batch_size") or resolved_config(cfg)["batch_size"]
            epochs, sched = iteration_schedule(cfg.iterations, resolved_config(cfg)["lr_schedule"],
                                               max(1, len(data.train) // batch))
            overrides.setdefault("lr_schedule", sched)
            if overrides.get("epochs") is None:
                overrides["epochs"] = epochs
        if cfg.eval_chunk and overrides.get("eval_chunk") is None:
            overrides["eval_chunk"] = cfg.eval_chunk
        if overrides.get("num_workers") is None:
            # One worker even for the decoded cache: a worker runs torch with one thread, while
            # the main process's multi-threaded small ops (resize, normalise) are ~10x slower
            # on a busy 2-core machine (measured: 239 vs 23 clips/s).
            overrides["num_workers"] = 1 if getattr(data.train, "in_memory", False) else min(4, os.cpu_count() or 1)
        settings = resolve_settings(cfg, seed=seed, **overrides)
        settings.identity = _identity(row, cfg, data.num_classes, init or imagenet)
        fingerprint = settings.fingerprint()
        key = run_key(fingerprint, data_fingerprint(cfg))
        _set_aside_if_stale(run_dir, fingerprint)
        final = run_dir / "final.pt"
        if resume and not final.is_file() and not (run_dir / "last.pt").is_file():
            twin = _identical_finished_run(work_root, scale, key, data.root, exclude=run_dir)
            if twin is not None and dist_info().is_main:
                # Another table's row is the very same run (same model, settings, data and seed:
                # e.g. TrajectoryNet Table 7's MotionNet-(17) row at mini is Table 5's): re-use it.
                log.info("%s seed %d: the same run as %s; re-using it", where, seed, twin)
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(twin, final)
                same_run_as[seed] = layout.relative_to_work(twin.parent, work_root)  # no machine's paths
            barrier()
        if resume and final.is_file():
            done = ckpt_io.load_checkpoint(final)
            if done.get("metrics"):
                log.info("%s seed %d: already trained (%s)", where, seed, final)
                _index_finished_run(work_root, scale, key, run_dir)
                per_seed[seed], histories[seed] = dict(done["metrics"]), list(done["history"])
                times[seed] = float(done["train_time_s"])
                threads[seed] = done.get("threads")
                if done.get("motionnet_pretrain") is not None:
                    pretrain_reports[seed] = done["motionnet_pretrain"]
                continue
        ckpt_io.seed_everything(seed)  # model initialisation: identical on every process
        model = build_row_model(row, cfg, data.num_classes, imagenet)
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
        _index_finished_run(work_root, scale, key, run_dir)
        per_seed[seed], histories[seed], times[seed] = result.metrics, result.history, result.train_time_s
        threads[seed] = torch.get_num_threads()

    runs = {s: SeedRun(per_seed[s], histories[s], times[s], threads[s], init=init_reports.get(s),
                       motionnet_pretrain=pretrain_reports.get(s), same_run_as=same_run_as.get(s)) for s in seeds}
    mean, seed_details = aggregate_seeds(runs)
    details: dict[str, Any] = {
        "run_config": _run_config(row, cfg, overrides),
        "skipped_videos": data.skipped,
        "epochs": resolve_settings(cfg, seed=seeds[0], **overrides).epochs,
        "model": row.model.name,
        "num_classes": data.num_classes,
        **seed_details,
    }
    return RowRun(metrics=mean, per_seed=per_seed, data=data.measured_on(), seeds=seeds, details=details)


def _run_config(row: Row, cfg: RunConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """The resolved configuration that ran (``details.run_config``): the spec's run config with
    its defaults filled in, the optimisation settings the trainer used (a smoke run's overrides
    included), and the model's merged arguments -- what a table's stand-ins are generated from."""
    ran = resolved_config(cfg)
    settings = resolve_settings(cfg, seed=cfg.seeds[0], **overrides)  # the optimisation that ran
    ran.update({k: getattr(settings, k) for k in ("epochs", "batch_size", "optimizer", "lr", "momentum",
                                                   "weight_decay", "lr_schedule", "warmup_epochs")})
    ran["model"] = row.model.name
    ran["model_args"] = {k: v for k, v in {**row.model.args, **cfg.model_args}.items() if k != "num_classes"}
    return ran


def evaluate_row(spec: TableSpec, row: Row, scale: str, *, work_root: Path | str, data_dir: Path | str,
                 seed: int | None = None, checkpoint: Path | str | None = None, progress: bool = True,
                 batch_size: int | None = None, num_workers: int = 0,
                 eval_chunk: int | None = None) -> tuple[dict[str, float], RunData]:
    """Evaluate a trained row (its ``final.pt``, else ``last.pt``, or ``checkpoint``) on the
    validation set with the row's test views."""
    where = f"{spec.paper}:table{spec.table}:{row.id} ({scale})"
    cfg = _config(row, scale, where)
    seed = cfg.seeds[0] if seed is None else seed
    if checkpoint is None:
        run_dir = layout.seed_dir(layout.row_work_dir(work_root, scale, spec.paper, spec.table, row.id), seed)
        checkpoint = next((p for p in (run_dir / "final.pt", run_dir / "last.pt") if p.is_file()), None)
        if checkpoint is None:
            raise FileNotFoundError(f"{where}: no checkpoint in {run_dir}; train it first "
                                    f"(python -m repro train {spec.paper}:table{spec.table}:{row.id} --scale {scale})")
    data = build_run_data(cfg, data_dir, scale, seed=seed, progress=progress, wants_flow=row_takes_flow(row, cfg))
    model = build_row_model(row, cfg, data.num_classes)
    state = ckpt_io.load_checkpoint(checkpoint)
    model.load_state_dict(state.get("model", state))
    device = torch.device("cuda", dist_info().local_rank) if torch.cuda.is_available() else torch.device("cpu")
    model.to(device)
    metrics = evaluate(model, data.val, num_classes=data.num_classes,
                       batch_size=batch_size or max(1, resolved_config(cfg)["batch_size"] // int(getattr(data.val, "num_views", 1))),
                       num_workers=num_workers, device=device,
                       pass_flow=_pass_flow(cfg, model, where), progress=progress,
                       eval_chunk=eval_chunk or cfg.eval_chunk)
    metrics["checkpoint"] = str(checkpoint)  # type: ignore[assignment]
    return metrics, data


def _limit_opencv_threads(threads: int) -> None:
    try:
        import cv2
    except ImportError:  # OpenCV is the optional `flow` extra
        return
    cv2.setNumThreads(threads)


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
    run = train_row(ctx.spec, ctx.row, ctx.scale, work_root=ctx.work_dir, data_dir=ctx.data_dir, seeds=seeds,
                    resume=ctx.resume, progress=ctx.progress, overrides=opts)
    missing = [k for k in ctx.wanted if k not in run.metrics]
    if missing:
        raise NotRunnable(f"the run measured no {missing} (e.g. 'epe' needs a model that predicts flow "
                          "and a dataset with ground-truth flow)")
    seed: int | list[int] = run.seeds[0] if len(run.seeds) == 1 else run.seeds
    return JobOutput(metrics=run.metrics, data=run.data, seed=seed, details=run.details)
