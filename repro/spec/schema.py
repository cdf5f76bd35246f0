"""Typed schema of a paper table spec (``specs/<paper>/table<N>.yaml``).

One YAML file per paper table, one row per printed row, in the paper's order, with the numbers
the paper reports.  Reproduced numbers never live here: they come from ``results/`` written by
runs.  The schema is strict (``extra="forbid"`` everywhere) so a typo fails at load time with
the file, the row and the field (see :mod:`repro.spec.loader`).

Layout of a spec::

    paper: trajectorynet          # one of PAPERS
    table: 3                      # the paper's table number
    title: Sources of input to the trajectory convolution
    caption: <the paper's caption, verbatim>
    kind: numeric                 # or "features" for non-numeric comparison tables
    recovery: <how lost check marks were recovered from the body text, if any>
    text_columns:                 # descriptive columns, printed as in the paper
      - {key: source, label: Source}
    metrics:                      # numeric columns
      - {key: params, label: "# param.", unit: M, measure: "profile:params_m"}
      - {key: top1, label: Top-1 Acc., unit: "%", measure: "train:top1"}
    defaults:                     # shallow, one level: merged under each row's full/mini
      full: {dataset: sthv1, frames: 16, ...}
      mini: {dataset: synth, preset: mini, ...}
    rows:
      - id: appearance
        label: appearance
        kind: baseline            # method | baseline | cited
        cells: {source: appearance, usage: None}
        reported: {params: 15.2, top1: 34.96, top5: 66.24}
        model: {name: s3d_resnet18, args: {num_classes: 174}}
        input_shape: [1, 3, 16, 112, 112]
    claims:
      - {id: traj-beats-temporal, metric: top1, a: traj_dim4, op: ">", b: appearance}
      - {id: overhead, form: ratio, metric: forward_s, a: traj, op: "<", b: s3d, ratio: 1.10}
      - {id: same-params, form: within, metric: params, a: traj_dim4, b: appearance, tolerance: 0.05}
    departures:                   # how what runs departs from the paper (also per row)
      - {what: init, paper: ImageNet-initialised, here: from scratch, why: no hub weights, scales: [mini]}
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PAPERS: dict[str, str] = {
    "trajectorynet": "Trajectory Convolution for Action Recognition (Zhao, Xiong, Lin; NeurIPS 2018)",
    "tvnet": "End-to-End Learning of Motion Representation for Video Understanding (Fan et al.; CVPR 2018)",
    "dynamics": "Recognize Actions by Disentangling Components of Dynamics (Zhao, Xiong, Lin; CVPR 2018)",
    "lgd": "Learning Spatio-Temporal Representation with Local and Global Diffusion (Qiu et al.; CVPR 2019)",
}

#: Scales a row can be run at.  ``mini`` is the embedded default (built-in benchmark, 2 CPU cores).
SCALES = ("mini", "small", "full")

_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextColumn(_Strict):
    """A descriptive (non-numeric) column, e.g. TrajectoryNet Table 2's "Usage of Traj. Conv."."""

    key: str
    label: str


class Metric(_Strict):
    """A numeric column of the paper's table."""

    key: str
    label: str
    unit: Literal["%", "M", "G", "GMACs", "GFLOPs", "s", "ms", "fps", "px", ""] = ""
    higher_is_better: bool | None = None
    #: ``"<job>:<key>"``: which job reproduces this column and the key it reports, e.g.
    #: ``"profile:params_m"``, ``"train:top1"``, ``"flow:epe"``; ``None``: not reproducible
    #: (a property of the setting, e.g. "effective coverage").  The loader checks the job and
    #: the key against the job's declaration (:mod:`repro.jobs`).
    measure: str | None = None

    @field_validator("measure")
    @classmethod
    def _measure_names_a_job(cls, v: str | None) -> str | None:
        if v is None:
            return v
        job, sep, key = v.partition(":")
        if not sep or not job or not key:
            raise ValueError(f"expected '<job>:<metric>', e.g. 'train:top1', got {v!r}")
        return v

    @property
    def job(self) -> str | None:
        return self.measure.partition(":")[0] if self.measure else None

    @property
    def job_key(self) -> str | None:
        return self.measure.partition(":")[2] if self.measure else None


class LRSchedule(_Strict):
    """How the learning rate decays.  ``milestones`` / ``step_size`` count epochs, or iterations
    with ``unit: iteration`` (TVNet Sec. 5.2: "18000 iterations, lr /10 after 10000 and 16000";
    the run then needs ``RunConfig.iterations``, and the engine converts both to its epochs)."""

    type: Literal["constant", "step", "multistep", "cosine"] = "multistep"
    milestones: list[int] = Field(default_factory=list)  # epochs (or iterations), for multistep
    step_size: int | None = None  # epochs (or iterations), for step
    gamma: float = 0.1
    unit: Literal["epoch", "iteration"] = "epoch"


class MotionNetPretrain(_Strict):
    """Unsupervised pre-training of a model's MotionNet on the run's training clips before the
    run (TrajectoryNet §3.5; see :mod:`repro.models.motionnet_pretrain`).  Adam."""

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)


class RunConfig(_Strict):
    """How a row is trained and evaluated at one scale (dataset, sampling, optimisation).

    ``full`` reproduces the paper's protocol on the real dataset (GPU scale); ``mini`` runs on
    the built-in motion benchmark on a laptop CPU.  Fields not given take the engine's defaults.
    """

    dataset: str
    #: The official fold(s) (UCF101 / HMDB51): ``1``, ``"1"``, ``"split1"``; ``"1,2,3"`` trains
    #: and tests each fold and reports the mean over folds (the papers' "average over 3 splits").
    #: Other datasets: ``val`` / ``test`` (their one official split).  See :func:`split_folds`.
    split: str | None = None
    preset: str | None = None  # built-in benchmark preset (mini | small)
    frames: int | None = None
    step: int = 1
    size: int | None = None  # crop size (pixels, square)
    segments: int | None = None  # TSN segments
    epochs: int | None = None
    #: Iterations (optimiser steps at the paper's batch size) instead of epochs, as a paper states
    #: its schedule (TVNet: 18000); the engine converts them to epochs of the dataset at hand
    #: (``ceil(iterations / steps per epoch)``, :func:`repro.engine.optim.iteration_schedule`).
    iterations: int | None = Field(None, ge=1)
    batch_size: int | None = None
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    lr_schedule: LRSchedule | None = None
    warmup_epochs: float = 0.0
    clip_grad: float | None = None
    partial_bn: bool = False
    branch_lr: dict[str, float] = Field(default_factory=dict)  # param-name prefix -> lr multiplier
    loss_weights: dict[str, float] = Field(default_factory=dict)  # auxiliary loss name -> weight
    test_clips: int | None = None
    test_crops: int | None = None
    #: Test views that go through the model in one forward (bounds evaluation memory; the scores
    #: do not depend on it).  ``None``: all views of a batch at once.
    eval_chunk: int | None = Field(None, ge=1)
    #: Flow given to models that take it: "gt" (the benchmark's exact flow), "none", or a
    #: ``repro.flow`` method name ("tvl1", "tvl1-5-5-50", "dis-fast", "tvnet-1-1-50", ...).
    flow: str | None = None
    #: A local checkpoint path, ``"row:<paper>:<table>:<row>"`` to chain runs, or ``"imagenet"``:
    #: ImageNet weights from a file the user provides (``--init-file`` or ``$REPRO_IMAGENET_INIT``;
    #: nothing is downloaded).
    init: str | None = None
    motionnet_pretrain: MotionNetPretrain | None = None  # pre-train the model's MotionNet first
    model_args: dict[str, Any] = Field(default_factory=dict)  # merged over the row's model args
    seeds: list[int] = Field(default_factory=lambda: [0])
    notes: str | None = None

    @field_validator("split", mode="before")
    @classmethod
    def _split_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _iteration_schedule_has_iterations(self) -> "RunConfig":
        if self.lr_schedule is not None and self.lr_schedule.unit == "iteration" and self.iterations is None:
            raise ValueError("lr_schedule.unit 'iteration' needs 'iterations' (the schedule's length)")
        if self.iterations is not None and self.epochs is not None:
            raise ValueError("give 'epochs' or 'iterations', not both")
        split_folds(self.split)  # a split that names no fold fails here, not at the run's start
        frames = self.frames if self.frames is not None else RUN_DEFAULTS["frames"]
        if self.segments and frames % self.segments:
            # TSN: `frames` is the whole clip T = segments x snippet length (LGD-2D: 3 x 1)
            raise ValueError(f"segments: {self.segments} must divide frames ({frames}): "
                             "frames = segments x snippet length")
        return self


_FOLD = re.compile(r"^(?:split)?([1-9])$")


def split_folds(split: str | int | None) -> list[int] | None:
    """The folds a ``split`` names: ``1`` / ``"1"`` / ``"split1"`` -> ``[1]``; ``"1,2,3"`` ->
    ``[1, 2, 3]``; ``None`` or a split name (``"val"``, ``"test"``, ``"train"``) -> ``None``."""
    if split is None:
        return None
    text = str(split).strip()
    if text.isalpha():
        return None
    folds = []
    for part in text.split(","):
        m = _FOLD.match(part.strip())
        if m is None:
            raise ValueError(f"split: expected a fold (1, \"1\", \"split1\"), folds (\"1,2,3\") or a split name "
                             f"(val, test), got {split!r}")
        folds.append(int(m.group(1)))
    if len(set(folds)) != len(folds):
        raise ValueError(f"split: fold repeated in {split!r}")
    return folds


#: What a ``RunConfig`` field left empty (``None``) means: the mini protocol.  The one place the
#: engine's defaults live (:func:`resolved_config`); the spec keeps ``None`` so that a row's hash
#: and its checkpoints' fingerprints do not change when a default does not.
RUN_DEFAULTS: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 16,
    "lr": 0.05,
    "weight_decay": 1e-4,
    "lr_schedule": {"type": "cosine"},
    "frames": 8,
    "size": 56,
    "preset": "mini",  # built-in benchmark preset, for dataset: synth
    "test_clips": 1,
    "test_crops": 1,
}


def resolved_config(cfg: "RunConfig | None") -> dict[str, Any]:
    """Every ``RunConfig`` field with the value a run uses: the spec's, else the schema's field
    default, else :data:`RUN_DEFAULTS` (``cfg=None``: a run with nothing specified)."""
    given = cfg.model_dump() if cfg is not None else {
        name: f.get_default(call_default_factory=True) for name, f in RunConfig.model_fields.items()}
    return {k: (RUN_DEFAULTS[k] if v is None and k in RUN_DEFAULTS else v) for k, v in given.items()}


class Departure(_Strict):
    """A way the protocol that runs departs from the paper's, written where it is decided (the
    spec) and rendered under the table: ``what`` departs, the ``paper``'s protocol, what runs
    ``here`` and ``why``; ``scales`` it applies to (all when empty)."""

    what: str
    paper: str
    here: str
    why: str = ""
    scales: list[Literal["full", "mini", "small"]] = Field(default_factory=list)

    def applies(self, scale: str) -> bool:
        return not self.scales or scale in self.scales


class ModelRef(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class Row(_Strict):
    id: str
    label: str
    kind: Literal["method", "baseline", "cited"]
    cells: dict[str, str] = Field(default_factory=dict)
    reported: dict[str, float | None] = Field(default_factory=dict)
    #: Where a cited number comes from (the paper's reference, e.g. "[36] Tran et al. 2018").
    cite: str | None = None
    model: ModelRef | None = None
    #: For optical-flow rows (TVNet Tables 1-2): a method name of ``repro.flow`` such as
    #: ``"tvl1-5-5-50"``, ``"dis-fast"``, ``"tvnet-1-1-50"``; run by the ``flow`` job.
    flow_method: str | None = None
    #: How a trainable flow method is trained before it is measured ("none" | "u0" | "all").
    flow_training: Literal["none", "u0", "all"] | None = None
    #: What is missing before this row can be built (shown instead of reproduced numbers).
    needs: str | None = None
    input_shape: list[int] | None = None
    #: How the row runs at each scale (merged over the table's ``defaults``); ``<scale>: false``
    #: in the YAML leaves the row out at that scale, and ``needs`` then says why.
    full: RunConfig | None = None
    mini: RunConfig | None = None
    small: RunConfig | None = None
    note: str | None = None
    #: Ways this row's protocol departs from the paper's, beyond the table's (:class:`Departure`).
    departures: list[Departure] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"row id must be lower-case letters, digits, '-' or '_' (got {v!r})")
        return v

    @model_validator(mode="after")
    def _cited_rows_cite(self) -> "Row":
        if self.kind == "cited" and (self.model is not None or self.flow_method is not None):
            raise ValueError("a cited row reports another paper's number; it names no model to run")
        return self

    def run_config(self, scale: str) -> RunConfig | None:
        return getattr(self, scale)


class Claim(_Strict):
    """A claim the paper makes about its table, checked on reported and reproduced numbers.

    Three forms (``form``), each on ``metric`` between row ``a`` and ``b`` (a row id or a number):

    * ``difference`` (default): ``a op b``, ``op`` one of ``>``, ``>=``, ``<``, ``<=``; ``margin``
      demands ``a`` beat ``b`` by at least that much; ``tolerance`` lets ``a`` fall short of ``b``
      by up to that much -- the encoding of "not worse than" claims.  Both are in the metric's
      unit and may not both be set.
    * ``ratio``: ``a / b op ratio`` -- "less than 10 % slower" is ``op: "<", ratio: 1.10``.
    * ``within``: ``|a - b| <= tolerance`` -- "a negligible increase of parameters" is
      ``tolerance: 0.05`` (M).

    :mod:`repro.claims` orients every form as ``diff > margin`` (``claims[].reproduced_detail``).
    """

    id: str
    text: str
    metric: str
    a: str
    form: Literal["difference", "ratio", "within"] = "difference"
    op: Literal[">", ">=", "<", "<="] | None = None
    b: str | float
    margin: float = Field(default=0.0, ge=0.0)
    tolerance: float = Field(default=0.0, ge=0.0)
    ratio: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _form_fields(self) -> "Claim":
        if self.margin and self.tolerance:
            raise ValueError(f"claim {self.id!r}: set margin (a must win by it) or tolerance (a may lose by it), "
                             "not both")
        if self.form in ("difference", "ratio") and self.op is None:
            raise ValueError(f"claim {self.id!r}: a {self.form} claim needs op ('>', '>=', '<' or '<=')")
        if self.form == "ratio" and (self.ratio is None or self.margin or self.tolerance):
            raise ValueError(f"claim {self.id!r}: a ratio claim gives ratio (a / b op ratio), no margin or tolerance")
        if self.form != "ratio" and self.ratio is not None:
            raise ValueError(f"claim {self.id!r}: ratio is only for form: ratio")
        if self.form == "within" and (not self.tolerance or self.op is not None or self.margin):
            raise ValueError(f"claim {self.id!r}: a within claim gives tolerance (|a - b| <= tolerance) and no op "
                             "or margin")
        return self


class TableSpec(_Strict):
    paper: str
    table: int = Field(ge=1)
    title: str
    caption: str = ""
    kind: Literal["numeric", "features"] = "numeric"
    recovery: str | None = None
    text_columns: list[TextColumn] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)
    defaults: dict[Literal["full", "mini", "small"], dict[str, Any]] = Field(default_factory=dict)
    rows: list[Row]
    claims: list[Claim] = Field(default_factory=list)
    #: Ways every row's protocol departs from the paper's (:class:`Departure`); rows add their own.
    departures: list[Departure] = Field(default_factory=list)

    def departures_for(self, row: Row, scale: str) -> list[Departure]:
        """The table's and the row's departures that apply at ``scale``."""
        return [d for d in (*self.departures, *row.departures) if d.applies(scale)]

    @field_validator("paper")
    @classmethod
    def _known_paper(cls, v: str) -> str:
        if v not in PAPERS:
            raise ValueError(f"unknown paper {v!r}; expected one of {sorted(PAPERS)}")
        return v

    @property
    def key(self) -> str:
        return f"{self.paper}:table{self.table}"

    def row(self, row_id: str) -> Row:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise KeyError(row_id)

    def metric(self, key: str) -> Metric:
        for m in self.metrics:
            if m.key == key:
                return m
        raise KeyError(key)

