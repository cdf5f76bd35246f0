"""What a job is: its declaration (:class:`Job`), what it is given (:class:`JobContext`) and what
it returns (:class:`JobOutput`).

A job reproduces some of a table row's metrics.  Everything the harness knows about a job is in
its one :class:`Job` declaration (``repro/jobs/<name>.py``): the metric keys it reports (checked
against every column's ``measure`` when a spec loads), the scales it runs at, whether it reads the
row's dataset (then its cached results depend on the data too), when a row is runnable by it, and
how it runs.  The runner, the renderer and ``repro list`` ask the declaration; none repeats its
rules.  Declarations are light: the heavy module that runs a job is imported inside ``run``.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.spec.schema import Row, RunConfig, TableSpec

__all__ = ["Job", "JobContext", "JobOutput", "NotRunnable"]


class NotRunnable(RuntimeError):
    """The row cannot be run by this job at this scale; the message says what is missing."""


@dataclass
class JobContext:
    spec: TableSpec
    row: Row
    scale: str
    #: The metric keys this job must report for the row (the ``<key>`` of ``measure``).
    wanted: list[str]
    results_dir: Path
    work_dir: Path  # the work root: <work> of repro.layout (checkpoints, caches)
    data_dir: Path  # where datasets (the built-in benchmark included) live
    progress: bool = True
    resume: bool = True
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> RunConfig | None:
        return self.row.run_config(self.scale)


@dataclass
class JobOutput:
    metrics: dict[str, float]
    data: str  # what the numbers were measured on, shown beside them in every table
    seed: int | list[int] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """One job's declaration.

    ``keys``: the metric keys it reports; an entry ending in ``*`` (``part_ms_per_frame:*``) is a
    family of keys whose suffix the model names.  ``planned``: keys specs already name that the job
    does not report yet (a spec may name them; the row is then "missing" with that reason).  ``scales``: where it runs; a job with one scale
    (``profile``: ``full``) runs there whatever scale is asked for.  ``needs``: the reason a row is
    not runnable by it at a scale (None: runnable).  ``run``: the job itself.
    """

    name: str
    keys: tuple[str, ...]
    scales: tuple[str, ...]
    reads_data: bool
    needs: Callable[[Row, str], str | None]
    run: Callable[[JobContext], JobOutput]
    planned: tuple[str, ...] = ()
    doc: str = ""
    #: What a row would miss in the user's data (``--data-dir``) to start (None: it would start);
    #: asked by ``repro list`` when given a data folder.  Jobs that read no data have none.
    data_needs: Callable[[Row, str, Path], str | None] | None = None
    #: Whether a row's run configuration (its ``mini:`` / ``full:`` recipe) changes what the job
    #: measures: not for ``profile`` (the model and its input only), so a new training recipe keeps
    #: its results (:func:`repro.identity.spec_payload`).
    uses_run_config: bool = True

    def offers(self, key: str) -> bool:
        return _matches(key, self.keys)

    def plans(self, key: str) -> bool:
        return _matches(key, self.planned)

    def scale_for(self, asked: str) -> str | None:
        """The scale this job runs at when ``asked`` is requested (None: it does not run there)."""
        if len(self.scales) == 1:
            return self.scales[0]
        return asked if asked in self.scales else None

    def missing_reason(self, row: Row, scale: str, wanted: list[str] = (), data_dir: Path | None = None) -> str | None:
        """Why the row is not runnable by this job at ``scale`` (None: runnable); with
        ``data_dir``, also what the data there lacks (:attr:`data_needs`)."""
        if row.kind == "cited":
            return "cited from another paper"
        reason = self.needs(row, scale)
        if reason is None and (later := [k for k in wanted if not self.offers(k)]):
            reason = f"the {self.name} job does not measure {', '.join(later)} yet"
        if reason is None and data_dir is not None and self.data_needs is not None:
            reason = self.data_needs(row, scale, Path(data_dir))
        return reason


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) if p.endswith("*") else key == p for p in patterns)
