"""Load and validate table specs; every user error names the file, the row and the field.

    >>> from repro.spec.loader import load_specs
    >>> specs = load_specs("specs")          # {"trajectorynet:table3": TableSpec, ...}

Errors are :class:`SpecError` (never a traceback at the CLI):
``specs/trajectorynet/table3.yaml: row 'appearance' (rows[0]), field model.name: unknown model
's3d_resnt18'; did you mean 's3d_resnet18'?``
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from repro.spec.schema import SCALES, TableSpec

__all__ = ["SpecError", "load_spec", "load_specs", "default_specs_dir"]


class SpecError(ValueError):
    """A spec file is malformed.  ``str(err)`` is the message a user sees."""

    def __init__(self, path: Path | str, message: str, row: str | None = None, field: str | None = None):
        self.path, self.row, self.field, self.message = str(path), row, field, message
        where = ", ".join(part for part in (row, f"field {field}" if field else None) if part)
        super().__init__(f"{self.path}: {where + ': ' if where else ''}{message}")


def default_specs_dir() -> Path:
    """``specs/`` of the checkout this package is installed from (editable installs)."""
    return Path(__file__).resolve().parents[2] / "specs"


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _row_label(raw: dict[str, Any], index: int) -> str:
    rows = raw.get("rows") if isinstance(raw, dict) else None
    rid = rows[index].get("id") if isinstance(rows, list) and index < len(rows) and isinstance(rows[index], dict) else None
    return f"row '{rid}' (rows[{index}])" if rid else f"rows[{index}]"


def _from_validation_error(path: Path, raw: dict[str, Any], err: ValidationError) -> SpecError:
    first = err.errors()[0]
    loc = list(first["loc"])
    row = None
    if len(loc) >= 2 and loc[0] == "rows" and isinstance(loc[1], int):
        row = _row_label(raw, loc[1])
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] in ("claims", "metrics", "text_columns") and isinstance(loc[1], int):
        row = f"{loc[0]}[{loc[1]}]"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc) or None
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(first["loc"])
        msg = f"unknown key '{loc[-1] if loc else '?'}'" + (_hint(str(loc[-1]), allowed) if loc and allowed else "")
    elif first["type"] == "missing":
        msg = "required field is missing"
    else:
        got = first.get("input")
        if not isinstance(got, (dict, list)) and repr(got) not in msg:
            msg += f" (got {got!r})"
    more = len(err.errors()) - 1
    if more:
        msg += f" [+{more} more error{'s' if more > 1 else ''}]"
    return SpecError(path, msg, row, field)


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names allowed at the parent of ``loc`` (for 'did you mean' on unknown keys)."""
    from repro.spec import schema

    model: Any = TableSpec
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        fld = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        if fld is None:
            model = None
            break
        ann = fld.annotation
        model = next(
            (c for c in vars(schema).values() if isinstance(c, type) and c.__name__ in str(ann) and hasattr(c, "model_fields")),
            None,
        )
    return list(model.model_fields) if model is not None and hasattr(model, "model_fields") else []


def _check_defaults(path: Path, defaults: Any) -> None:
    """A typo in ``defaults:`` is reported against the defaults block, not against the first row it
    is merged into."""
    from repro.spec.schema import RunConfig

    if defaults is None:
        return
    if not isinstance(defaults, dict):
        raise SpecError(path, f"expected a mapping of scale -> settings, got {type(defaults).__name__}", "defaults")
    fields = list(RunConfig.model_fields)
    for scale, block in defaults.items():
        if scale not in SCALES:
            raise SpecError(path, f"unknown scale '{scale}'{_hint(str(scale), list(SCALES))}; expected one of "
                            f"{list(SCALES)}", "defaults", str(scale))
        if not isinstance(block, dict):
            raise SpecError(path, f"expected a mapping of settings, got {type(block).__name__}", "defaults", str(scale))
        for key in block:
            if key not in fields:
                raise SpecError(path, f"unknown key '{key}'{_hint(str(key), fields)}", "defaults", f"{scale}.{key}")
        try:  # the values' types, with a placeholder for the one field a block may leave to its rows
            RunConfig.model_validate({"dataset": "-", **block})
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise SpecError(path, f"{first['msg']} (got {first.get('input')!r})", "defaults", f"{scale}.{loc}") from None


def _merge_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Shallow, one-level merge of ``defaults.<scale>`` under each row's ``<scale>`` config."""
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict) or not isinstance(raw.get("rows"), list):
        return raw
    rows = []
    for row in raw["rows"]:
        if isinstance(row, dict) and row.get("kind") != "cited" and (row.get("model") or row.get("flow_method") or row.get("needs")):
            row = dict(row)
            for scale, base in defaults.items():
                if not isinstance(base, dict) or row.get(scale) is False:
                    continue
                own = row.get(scale) or {}
                if isinstance(own, dict):
                    merged = {**base, **own}
                    if "model_args" in base and "model_args" in own:
                        merged["model_args"] = {**base["model_args"], **own["model_args"]}
                    row[scale] = merged
        if isinstance(row, dict):
            # `<scale>: false`: the row is not run at that scale (its `needs` says why)
            row = {k: v for k, v in row.items() if not (k in SCALES and v is False)}
        rows.append(row)
    return {**raw, "rows": rows}


def _check_measures(path: Path, spec: TableSpec) -> None:
    """Every column's ``measure`` names a job and a key that job declares it reports."""
    from repro.jobs import JOBS

    for i, m in enumerate(spec.metrics):
        if m.measure is None:
            continue
        where = f"metrics[{i}] (column '{m.key}')"
        job = JOBS.get(m.job)
        if job is None:
            raise SpecError(path, f"unknown job '{m.job}' in {m.measure!r}: expected '<job>:<metric>' with job one of "
                            f"{sorted(JOBS)}{_hint(m.job, list(JOBS))}", where, "measure")
        if not (job.offers(m.job_key) or job.plans(m.job_key)):
            raise SpecError(path, f"the {job.name} job reports no '{m.job_key}'"
                            f"{_hint(m.job_key, [k for k in job.keys if not k.endswith('*')])}; it offers "
                            f"{', '.join(job.keys)}", where, "measure")


def _cross_check(path: Path, spec: TableSpec, check_models: bool) -> None:
    from repro.registry import is_model, list_models

    _check_measures(path, spec)

    seen: dict[str, int] = {}
    metric_keys = [m.key for m in spec.metrics]
    text_keys = [c.key for c in spec.text_columns]
    for i, row in enumerate(spec.rows):
        where = f"row '{row.id}' (rows[{i}])"
        if row.id in seen:
            raise SpecError(path, f"duplicate row id (first at rows[{seen[row.id]}])", where, "id")
        seen[row.id] = i
        for key in row.reported:
            if key not in metric_keys:
                raise SpecError(path, f"'{key}' is not a metric of this table{_hint(key, metric_keys)}", where, f"reported.{key}")
        for key in row.cells:
            if key not in text_keys:
                raise SpecError(path, f"'{key}' is not a text column of this table{_hint(key, text_keys)}", where, f"cells.{key}")
        if row.model is not None and check_models and not is_model(row.model.name):
            raise SpecError(path, f"unknown model '{row.model.name}'{_hint(row.model.name, list_models())}", where, "model.name")
        if row.model is not None and row.needs and row.full is not None and row.mini is not None:
            raise SpecError(path, "a row names either a model or what it still needs, not both (a row with a "
                            "model may say what it needs only for a scale it leaves out, e.g. `mini: false`)",
                            where, "needs")
    for j, claim in enumerate(spec.claims):
        where = f"claim '{claim.id}' (claims[{j}])"
        for side in ("a", "b"):
            ref = getattr(claim, side)
            if isinstance(ref, str) and ref not in seen:
                raise SpecError(path, f"names row '{ref}', which this table does not have{_hint(ref, list(seen))}", where, side)
        if claim.metric not in metric_keys:
            raise SpecError(path, f"'{claim.metric}' is not a metric of this table{_hint(claim.metric, metric_keys)}", where, "metric")


def load_spec(path: Path | str, check_models: bool = True) -> TableSpec:
    """Load one spec file; raise :class:`SpecError` naming the file, row and field on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(path, f"cannot read: {e.strerror}") from None
    try:
        # libyaml's parser where built (the pure-Python one was most of `list`'s 3 s); same result.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(path, f"not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise SpecError(path, f"expected a mapping at the top level, got {type(raw).__name__}")
    _check_defaults(path, raw.get("defaults"))
    raw = _merge_defaults(raw)
    try:
        spec = TableSpec.model_validate(raw)
    except ValidationError as e:
        raise _from_validation_error(path, raw, e) from None
    _cross_check(path, spec, check_models)
    expected = f"table{spec.table}"
    if path.stem != expected:
        raise SpecError(path, f"file name should match its table number: expected '{expected}.yaml'", None, "table")
    return spec


def load_specs(specs_dir: Path | str | None = None, check_models: bool = True) -> dict[str, TableSpec]:
    """All specs under ``specs_dir`` (``<paper>/table<N>.yaml``), keyed ``"<paper>:table<N>"``,
    ordered by paper then table number."""
    root = Path(specs_dir) if specs_dir is not None else default_specs_dir()
    if not root.is_dir():
        raise SpecError(root, "spec folder not found (expected <dir>/<paper>/table<N>.yaml files)")
    specs: dict[str, TableSpec] = {}
    for path in sorted(root.glob("*/table*.y*ml")):
        spec = load_spec(path, check_models=check_models)
        if spec.paper != path.parent.name:
            raise SpecError(path, f"paper '{spec.paper}' does not match its folder '{path.parent.name}'", None, "paper")
        if spec.key in specs:
            raise SpecError(path, f"{spec.key} is defined twice")
        specs[spec.key] = spec
    return dict(sorted(specs.items(), key=lambda kv: (kv[1].paper, kv[1].table)))

