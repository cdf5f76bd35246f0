"""A rendered table as JSON -- the one form ``table<N> --format json`` prints and the report reads,
so whatever :mod:`repro.render` adds to its rows (labels, stand-ins) reaches both."""
from __future__ import annotations

from typing import Any

__all__ = ["table_payload", "coverage"]


def _claim(reported, reproduced, tally) -> dict[str, Any]:
    out = {"id": reported.id, "text": reported.claim.text, "reported": reported.status,
           "reproduced": reproduced.status, "reported_values": [reported.a, reported.b],
           "reproduced_values": [reproduced.a, reproduced.b],
           "seeds": {"held": tally[0], "of": tally[1]} if tally else None}
    for side, result in (("reported", reported), ("reproduced", reproduced)):
        interval = getattr(result, "interval", None)  # where the claims module gives one
        if interval is not None:
            out[f"{side}_interval"] = interval
    return out


def table_payload(t) -> dict[str, Any]:
    """``t``: a :class:`repro.render.RenderedTable`."""
    spec = t.spec
    return {"paper": spec.paper, "table": spec.table, "title": spec.title, "scale": t.scale,
            "caption": spec.caption, "rows": t.rows,
            "metrics": [{"key": m.key, "label": m.label, "unit": m.unit, "job": m.job} for m in spec.metrics],
            "text_columns": [{"key": c.key, "label": c.label} for c in spec.text_columns],
            "claims": [_claim(c, r, t.reproduced_seed_tallies.get(c.id))
                       for c, r in zip(t.reported_claims, t.reproduced_claims)]}


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
