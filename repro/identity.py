"""A run's identity: what it computed from (resolved config, data, seed) and the code that ran.

One normalisation (:func:`normal`) and one digest (:func:`digest`) serve every key the harness
derives from settings:

* a result's freshness key (:func:`result_key`, provenance ``spec_hash``): the row's spec entry and
  its table's metric columns, plus the data definition for jobs that read data;
* a train run's key (:func:`run_key`): its checkpoint fingerprint (resolved settings, model, data
  name, seed) normalised by :func:`normal_settings`, plus the data definition.  Checkpoints are
  resumed only under the same normalised fingerprint, and a finished run is found again -- by
  another row that is the very same run -- by looking its key up (:mod:`repro.layout`'s
  ``by-identity`` index), never by loading every checkpoint;
* cache keys: the MotionNet pre-training cache (:func:`digest`) and the decoded-frame cache
  (:func:`files_fingerprint`).

The code that ran is fingerprinted by :func:`code_fingerprint` (a hash of the ``repro`` package's
source files that compute results -- every module but the presentation-only ones listed in
:data:`PRESENTATION_ONLY` -- independent of git, so a clean clone or an installed copy gives the
same value).  It
is *recorded* (provenance ``code``, the identity index) and part of ``run_id``, but it does not
invalidate cached results or checkpoints: a refactor that leaves every number unchanged must not
retrain every table.  Reuse is keyed by what a run computes from; ``run_id`` says which code did.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["normal", "digest", "code_fingerprint", "data_fingerprint", "spec_payload", "result_key", "normal_config",
           "normal_settings", "run_key", "run_id", "files_fingerprint"]


def normal(obj: Any) -> Any:
    """``obj`` as plain JSON types: pydantic models without fields at their default, dataclasses
    as dicts, tuples as lists, paths as strings.  Dict order does not matter (digests sort keys)."""
    from pydantic import BaseModel

    if isinstance(obj, BaseModel):
        return normal(obj.model_dump(mode="json", exclude_defaults=True))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return normal(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): normal(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [normal(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def digest(obj: Any, length: int = 16) -> str:
    """Hex digest of :func:`normal` ``(obj)`` (sorted keys): the one hash of every settings key."""
    return hashlib.sha256(json.dumps(normal(obj), sort_keys=True).encode()).hexdigest()[:length]


#: Modules that only read, render or migrate stored results, or run only on a GPU build (TensorRT):
#: they cannot change a number a run computes here, so they are outside :func:`code_fingerprint`
#: -- a fix to a table's Markdown must not make every reproduced row "stale: re-run".  Paths are
#: relative to the package; a trailing "/" names a sub-package.
PRESENTATION_ONLY = ("report/", "migrations/", "deploy/tensorrt/", "render.py", "claims.py", "standins.py",
                     "cli_output.py")


def _computes_results(relative: str) -> bool:
    return not any(relative.startswith(p) if p.endswith("/") else relative == p for p in PRESENTATION_ONLY)


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the contents of every ``.py`` file of the ``repro`` package that computes results
    (path-sorted; :data:`PRESENTATION_ONLY` excluded)."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts or not _computes_results(path.relative_to(package).as_posix()):
            continue
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------ results
def data_fingerprint(cfg: Any) -> dict | None:
    """The definition of the built-in benchmark preset a run with ``RunConfig`` ``cfg`` reads
    (None for real datasets, which the spec names completely, and for custom presets)."""
    if not cfg or cfg.dataset != "synth":
        return None
    from repro.data import synth
    from repro.spec.schema import resolved_config

    preset = synth.PRESETS.get(resolved_config(cfg)["preset"])
    return None if preset is None else {"synth": preset.to_dict(), "generator": synth.GENERATOR_VERSION}


#: Row fields that do not change what a run measures (labels and the paper's own numbers).
_ROW_PRESENTATION = {"label", "note", "cells", "reported", "cite", "departures"}


def spec_payload(spec: Any, row_id: str, job: str, scale: str) -> dict[str, Any]:
    """What in a spec defines a row's result for ``job`` at ``scale``: the row entry without
    presentation fields and without the configurations of the *other* scales (a full-scale recipe
    does not change what a mini run measured; ``profile`` reads none), and the definitions of the table's columns that
    ``job`` fills.  Fields at their default are left out, so adding a defaulted field to the schema
    keeps every cached result valid."""
    from repro.jobs import get_job
    from repro.spec.schema import SCALES

    row = spec.row(row_id)
    other_scales = {s for s in SCALES if s != scale or not get_job(job).uses_run_config}
    return {
        "row": row.model_dump(mode="json", exclude_defaults=True, exclude=_ROW_PRESENTATION | other_scales),
        "metrics": [normal(m) for m in spec.metrics if m.job == job],
    }


def result_key(spec: Any, row: Any, job: str, scale: str) -> str:
    """Freshness key of a row's result for ``job`` at ``scale`` (provenance ``spec_hash``): the
    spec's part in it (:func:`spec_payload`) plus, for jobs that read data, the built-in
    benchmark preset's definition (redefining a preset invalidates results measured on the old one)."""
    from repro.jobs import get_job

    payload = spec_payload(spec, row.id, job, scale)
    data = data_fingerprint(row.run_config(scale)) if get_job(job).reads_data else None
    if data:
        payload["data"] = data
    return digest(payload)


def run_id(key: str) -> str:
    """``key`` of a result or run joined with the code that ran: names one execution exactly."""
    return f"{key}-{code_fingerprint()}"


# ------------------------------------------------------------------------------------ train runs
def normal_config(config: dict[str, Any]) -> dict[str, Any]:
    """A ``RunConfig`` dump without fields at their schema default (the spec's explicit
    ``flow: none`` is the default, no flow), so a checkpoint written before a defaulted field
    existed still matches."""
    from repro.spec.schema import RunConfig

    defaults = {name: f.get_default(call_default_factory=True) for name, f in RunConfig.model_fields.items()}
    if config.get("flow") == "none":
        config = {**config, "flow": None}
    return {k: v for k, v in config.items() if k not in defaults or v != defaults[k]}


def normal_settings(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's settings fingerprint (``TrainSettings.fingerprint()``) in normal form."""
    identity = fingerprint.get("identity") or {}
    config = identity.get("config")
    if not isinstance(config, dict):
        return normal(fingerprint)
    model_args = identity.get("model_args")
    if isinstance(model_args, dict) and "num_classes" in identity:
        # the spec's head size (174 for Sth-Sth, 400 for Kinetics) is replaced by the data's
        # class count, which ``identity.num_classes`` records: the built model is the same
        model_args = {k: v for k, v in model_args.items() if k != "num_classes"}
    return normal({**fingerprint, "identity": {**identity, "config": normal_config(config), "model_args": model_args}})


def run_key(fingerprint: dict[str, Any], data: dict[str, Any] | None) -> str:
    """Key of a train run: its normalised settings (model, config, seed) and its data definition."""
    return digest({"settings": normal_settings(fingerprint), "data": data})


# ------------------------------------------------------------------------------------ data cache
def files_fingerprint(meta: Path, files: list[tuple[str, Path]]) -> str:
    """Identity of decoded data: a dataset's ``meta`` file's bytes and every ``(id, path)``'s size
    and modification time (a regenerated or replaced video invalidates what was decoded from it)."""
    h = hashlib.sha256()
    h.update(meta.read_bytes() if meta.is_file() else b"")
    for video_id, path in files:
        try:
            st = Path(path).stat()
            h.update(f"{video_id}:{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            h.update(f"{video_id}:missing;".encode())
    return h.hexdigest()[:16]
