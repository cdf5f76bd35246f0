"""Check a table's claims (``a op b`` on a metric) against reported or reproduced numbers."""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Literal, Mapping

from repro.spec.schema import Claim, TableSpec

__all__ = ["ClaimResult", "check_claim", "check_claims", "seed_tally"]

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
    return ClaimResult(claim, "held" if _holds(claim, a, b) else "failed", float(a), float(b))


def _holds(claim: Claim, a: float, b: float) -> bool:
    # ``margin`` is how much better than b the claim says a is, in the direction of the operator;
    # ``tolerance`` how much worse it may be (a "negligible" difference).
    better_by = claim.margin - claim.tolerance
    shifted = b + better_by if claim.op in (">", ">=") else b - better_by
    return bool(_OPS[claim.op](a, shifted))


def seed_tally(claim: Claim, per_seed: Mapping[str, Mapping[int, Mapping[str, float]]]) -> tuple[int, int] | None:
    """On how many seeds the claim holds, of the seeds both sides were run with:
    ``per_seed[row_id][seed][metric]``.  Seed k of row a is compared with seed k of row b (same
    data order and augmentation stream).  None unless at least two seeds are shared: a claim
    checked on means alone can hide that it held on one seed and failed on the other."""
    a_seeds = per_seed.get(claim.a, {})
    if isinstance(claim.b, (int, float)):
        pairs = [(m.get(claim.metric), float(claim.b)) for m in a_seeds.values()]
    else:
        b_seeds = per_seed.get(claim.b, {})
        shared = sorted(set(a_seeds) & set(b_seeds))
        pairs = [(a_seeds[s].get(claim.metric), b_seeds[s].get(claim.metric)) for s in shared]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if len(pairs) < 2:
        return None
    return sum(_holds(claim, a, b) for a, b in pairs), len(pairs)


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
