"""A rendered table as JSON -- the one form ``table<N> --format json`` prints and the report reads,
so whatever :mod:`repro.render` adds to its rows (labels, stand-ins) reaches both."""
from __future__ import annotations

from typing import Any

__all__ = ["table_payload", "coverage"]


def table_payload(t) -> dict[str, Any]:
    """``t``: a :class:`repro.render.RenderedTable`."""
    spec = t.spec
    return {"paper": spec.paper, "table": spec.table, "title": spec.title, "scale": t.scale,
            "caption": spec.caption, "rows": t.rows,
            "metrics": [{"key": m.key, "label": m.label, "unit": m.unit, "job": m.job} for m in spec.metrics],
            "text_columns": [{"key": c.key, "label": c.label} for c in spec.text_columns],
            "claims": t.claims_json()}


def coverage(payload: dict[str, Any]) -> dict[str, int]:
    """How much of a table is reproduced: rows with any reproduced number (of the rows that are not
    cited), and reproduced cells (of the cells a job could measure)."""
    measured = [m["key"] for m in payload["metrics"] if m["job"]]
    own = [r for r in payload["rows"] if r["kind"] != "cited"]
    cells = sum(1 for r in own for k in measured if k in r["reproduced"])
    return {"rows": len(own), "rows_reproduced": sum(1 for r in own if r["reproduced"]),
            "cells": len(own) * len(measured), "cells_reproduced": cells,
            "claims": len(payload["claims"]),
            "claims_held": sum(1 for c in payload["claims"] if c["reproduced"] == "held")}
