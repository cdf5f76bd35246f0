"""Check a table's claims (``a op b`` on a metric) against reported or reproduced numbers."""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Literal, Mapping

from repro.spec.schema import Claim, TableSpec

__all__ = ["ClaimResult", "check_claim", "check_claims"]

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}

# "cited": one side is a cited row (another paper's number, nothing this code builds), so the claim
# has no reproduced counterpart at any scale.
Status = Literal["held", "failed", "not run", "cited"]


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    status: Status
    a: float | None
    b: float | None

    @property
    def id(self) -> str:
        return self.claim.id


def check_claim(claim: Claim, values: Mapping[str, Mapping[str, float | None]]) -> ClaimResult:
    """``values[row_id][metric]``; a claim whose numbers are missing is "not run"."""
    a = values.get(claim.a, {}).get(claim.metric)
    b = claim.b if isinstance(claim.b, (int, float)) else values.get(claim.b, {}).get(claim.metric)
    if a is None or b is None:
        return ClaimResult(claim, "not run", a, b)
    # ``margin`` is how much better than b the claim says a is, in the direction of the operator;
    # ``tolerance`` how much worse it may be (a "negligible" difference).
    better_by = claim.margin - claim.tolerance
    shifted = b + better_by if claim.op in (">", ">=") else b - better_by
    held = _OPS[claim.op](a, shifted)
    return ClaimResult(claim, "held" if held else "failed", float(a), float(b))


def check_claims(spec: TableSpec, values: Mapping[str, Mapping[str, float | None]]) -> list[ClaimResult]:
    cited = {row.id for row in spec.rows if row.kind == "cited"}
    results = []
    for claim in spec.claims:
        result = check_claim(claim, values)
        if result.status == "not run" and {claim.a, claim.b} & cited:
            result = replace(result, status="cited")
        results.append(result)
    return results


def reported_values(spec: TableSpec) -> dict[str, dict[str, float | None]]:
    return {row.id: dict(row.reported) for row in spec.rows}
