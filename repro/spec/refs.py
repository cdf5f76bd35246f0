"""Row references: ``<paper>:table<N>:<row>`` (or ``<paper>:<N>:<row>``), e.g.
``trajectorynet:table3:appearance`` -- how the CLI (``repro train``, ``repro profile``) and a spec's
``init: row:...`` name one row of one table.  The one parser of them."""
from __future__ import annotations

from repro.spec.schema import Row, TableSpec

__all__ = ["parse_row_ref", "format_row_ref", "find_row", "looks_like_row_ref"]


def looks_like_row_ref(text: str) -> bool:
    """Whether ``text`` is meant as a row reference (model names have no ``:``)."""
    return ":" in text


def parse_row_ref(ref: str) -> tuple[str, int, str]:
    """``paper:table3:row`` or ``paper:3:row`` -> ``("paper", 3, "row")``; ValueError otherwise."""
    parts = ref.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"row reference: expected '<paper>:<table>:<row>' (e.g. trajectorynet:table3:appearance), got {ref!r}")
    paper, table, row = parts
    digits = table[5:] if table.startswith("table") else table
    if not digits.isdigit():
        raise ValueError(f"row reference {ref!r}: table must be 'table<N>' or '<N>', got {table!r}")
    return paper, int(digits), row


def format_row_ref(paper: str, table: int, row: str) -> str:
    return f"{paper}:table{table}:{row}"


def find_row(specs: dict[str, TableSpec], ref: str) -> tuple[TableSpec, Row]:
    """The spec and row ``ref`` names; ValueError naming what does not exist."""
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
