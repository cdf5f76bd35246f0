"""Check a table's claims on reported numbers (a point check) and on reproduced ones (a verdict).

Every claim form (:class:`repro.spec.schema.Claim`) is oriented as ``diff > margin``:

=============  ==========================  ====================
form, op       diff                        margin
=============  ==========================  ====================
difference >   a - b                       margin - tolerance
difference <   b - a                       margin - tolerance
ratio >        a / b - 1                   ratio - 1
ratio <        1 - a / b                   1 - ratio
within         -|a - b|                    -tolerance
=============  ==========================  ====================

Reported numbers are the paper's: a claim on them is ``held`` or ``failed`` (:func:`check_claim`).

Reproduced numbers get a three-valued verdict (:func:`verdict`): ``held`` when the whole 95 %
interval of ``diff`` clears the margin, ``failed`` when the whole interval is on the other side,
``inconclusive`` otherwise.  The interval depends on how the numbers were measured:

* trained rows (one number per seed): a Student t-interval with n - 1 degrees of freedom over the
  seeds' paired differences -- seed k of row a against seed k of row b (same initialisation and
  data order wherever the two architectures allow).  Fewer than :data:`MIN_SEEDS` paired seeds
  read ``inconclusive`` ("2 paired seeds; need >= 3").  For ``within`` the interval of ``a - b``
  must lie inside ``[-tolerance, tolerance]`` (held) or wholly outside it (failed) -- an equivalence test;
* seed-independent measurements (the ``profile`` job: parameter and MAC counts, exact; latency,
  whose spread over repeats is its 10th-90th percentile range; per-part times and time ratios of
  one interleaved run, whose spread is the 10th-90th percentile over the rounds -- of the
  per-round paired ratio for a ratio, ``details.spread``): the interval is the range of ``diff``
  over the two sides' ranges (a point for exact counts).  One latency run is not a sample of
  seeds: such an interval says how steady the measurement was on this machine, not how it would
  vary across machines.  Two rows' timings are **not paired** (``paired: false``): each row's
  profile job times it in its own run, minutes apart, so load that drifts between the runs is
  in the difference and no pairing cancels it (the per-round paired ratio exists only for parts
  of one row, timed in one interleaved run: a ``part_time_ratio`` key); the corner interval
  assumes nothing about how the two runs' repeats relate, and it is not a confidence interval, so
  such a claim is decided only on the interval with each side widened by :data:`RUN_DRIFT`
  (``drift_ci``): a 4.7x speed-up is decided, a 10 % overhead is not;

Rows whose results were produced by different code (provenance ``code``, see
:func:`repro.identity.code_fingerprint`), or whose code is unknown, are never compared: ``stale``
("stale: re-run").  A claim with a side not measured reads ``not run``; one that compares with a
cited row (another paper's number) ``n/a``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Literal, Mapping

from repro.spec.schema import Claim, TableSpec

__all__ = ["ClaimResult", "Side", "Verdict", "MIN_SEEDS", "CONFIDENCE", "PAIRED_SEEDS", "UNPAIRED_RUNS", "RUN_DRIFT", "check_claim", "check_claims", "orient",
           "t_interval", "median_interval", "seeds_needed", "verdict", "reported_values"]

#: Paired seeds a trained-row verdict needs; fewer read "inconclusive".
MIN_SEEDS = 3
#: Two-sided confidence of every interval.
CONFIDENCE = 0.95

#: How far one row's timing may drift between two profile runs of it on this machine: decisions
#: between two rows timed in separate runs allow it on each side (measured: the same S3D row timed
#: twice 14 min apart, same code, moved 19 %; TrajectoryNet Table 6).
RUN_DRIFT = 0.25
#: ``reproduced_detail.method`` of a claim between two rows' timings (the module docstring).
UNPAIRED_RUNS = ("unpaired: each row timed in its own profile run (minutes apart; load drift between the runs "
                 "is not cancelled); interval: the range of the difference over each run's 10th-90th "
                 "percentile over its repeats, not a confidence interval; decided only if it still clears "
                 f"the margin with each side widened by ±{RUN_DRIFT:.0%} run-to-run drift (drift_ci)")

#: ``reproduced_detail.method`` of a claim between two trained rows (one number per seed).
PAIRED_SEEDS = f"{int(CONFIDENCE * 100)} % Student t-interval over paired seed differences (n - 1 df)"

Status = Literal["held", "failed", "inconclusive", "stale", "not run", "n/a"]


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    status: Status
    a: float | None
    b: float | None
    #: ``{diff, ci, margin, seeds, paired, same_code, method}`` (plus ``reason``) for verdicts on
    #: reproduced numbers; empty for the point check on reported numbers.
    detail: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.claim.id


# ------------------------------------------------------------------------------ orientation
def orient(claim: Claim, a: float, b: float) -> float:
    """``diff`` of one pair of numbers (see the module's table); ``within`` gives ``-|a - b|``."""
    if claim.form == "ratio":
        r = a / b if b else math.inf * (1 if a >= 0 else -1)
        return r - 1 if claim.op in (">", ">=") else 1 - r
    if claim.form == "within":
        return -abs(a - b)
    return a - b if claim.op in (">", ">=") else b - a


def margin_of(claim: Claim) -> float:
    if claim.form == "ratio":
        return claim.ratio - 1 if claim.op in (">", ">=") else 1 - claim.ratio
    if claim.form == "within":
        return -claim.tolerance
    return claim.margin - claim.tolerance


def _clears(claim: Claim, diff: float, margin: float) -> bool:
    """``diff`` beats ``margin`` as the claim's operator says (``>=``, ``<=`` and within: or ties)."""
    inclusive = claim.form == "within" or claim.op in (">=", "<=")
    return diff >= margin - 1e-12 if inclusive else diff > margin


# ------------------------------------------------------------------------------ reported numbers
def _lookup(values: Mapping[str, Mapping[str, float | None]], claim: Claim) -> tuple[float | None, float | None]:
    a = values.get(claim.a, {}).get(claim.metric)
    b = claim.b if isinstance(claim.b, (int, float)) else values.get(claim.b, {}).get(claim.metric)
    return a, b


def check_claim(claim: Claim, values: Mapping[str, Mapping[str, float | None]]) -> ClaimResult:
    """Point check of ``values[row_id][metric]`` (the paper's numbers); missing numbers: "not run"."""
    a, b = _lookup(values, claim)
    if a is None or b is None:
        return ClaimResult(claim, "not run", a, b)
    held = _clears(claim, orient(claim, float(a), float(b)), margin_of(claim))
    return ClaimResult(claim, "held" if held else "failed", float(a), float(b))


def reported_values(spec: TableSpec) -> dict[str, dict[str, float | None]]:
    return {row.id: dict(row.reported) for row in spec.rows}


# ------------------------------------------------------------------------------ reproduced numbers
@dataclass(frozen=True)
class Side:
    """One side of a claim as measured: its (mean) ``value``; ``per_seed`` (``{seed: value}``) for
    trained rows; ``spread`` (``(lo, hi)``) for a seed-independent measurement (``None`` with no
    ``per_seed``: exact); the ``code`` fingerprint that produced it (``None``: unknown)."""

    value: float
    per_seed: Mapping[int, float] = field(default_factory=dict)
    spread: tuple[float, float] | None = None
    code: str | None = None
    seeded: bool = True  # False: a seed-independent measurement (profile job)
    outdated: bool = False  # measured under another recipe or data than the spec now gives its row
    timed: bool = False  # a seed-independent timing (not an exact count): needs its spread to be decided


def t_interval(samples: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: Student t-interval of the mean, ``mean -/+ t(1-α/2, n-1) s / sqrt(n)``."""
    from scipy.stats import t

    n = len(samples)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 samples, got {n}")
    mean = statistics.fmean(samples)
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * statistics.stdev(samples) / math.sqrt(n)
    return mean, mean - half, mean + half


def median_interval(samples: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(median, lo, hi)``: distribution-free interval of the median -- the order statistics ``k``
    and ``n+1-k`` for the largest ``k`` with ``P(Binomial(n, 1/2) < k) <= (1-confidence)/2``
    (coverage at least ``confidence``; the whole range when ``n`` is too small for it).  For
    timings, whose rounds are skewed by other processes, where a t-interval of the mean is not."""
    values = sorted(samples)
    n = len(values)
    if n == 0:
        raise ValueError("a median interval needs at least 1 sample")
    below, k = 0.0, 0  # below = P(Binomial(n, 1/2) < k)
    while k < n // 2 and below + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
        below += math.comb(n, k) / 2**n
        k += 1
    k = max(k, 1)
    return statistics.median(values), values[k - 1], values[n - k]


#: :func:`seeds_needed` looks no further than this many seeds.
MAX_SEEDS_NEEDED = 200


def seeds_needed(samples: list[float], bound: float | tuple[float, float],
                 confidence: float = CONFIDENCE) -> int | None:
    """Paired seeds an inconclusive verdict would need, if more seeds kept the mean and spread of
    ``samples`` (the paired differences seen so far): the smallest ``n`` whose t-interval
    ``mean -/+ t(1-α/2, n-1) s / sqrt(n)`` no longer contains ``bound`` (the margin; for a within
    claim the pair ``(-tolerance, tolerance)``).  ``None`` when even :data:`MAX_SEEDS_NEEDED`
    would not do, or the mean sits on the bound -- a planning estimate, not a verdict."""
    from scipy.stats import t

    if len(samples) < 2:
        return None
    mean, sd = statistics.fmean(samples), statistics.stdev(samples)
    bounds = bound if isinstance(bound, tuple) else (bound,)
    gap = min(abs(mean - x) for x in bounds)
    if sd == 0.0:
        return len(samples) if gap > 0 else None
    for n in range(max(2, len(samples)), MAX_SEEDS_NEEDED + 1):
        if float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n) < gap:
            return n
    return None


def _within_interval(lo: float, hi: float) -> tuple[float, float]:
    """Interval of ``-|d|`` given the interval ``[lo, hi]`` of ``d``."""
    far = max(abs(lo), abs(hi))
    near = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
    return -far, -near


def _decide(claim: Claim, lo: float, hi: float, margin: float) -> str:
    if _clears(claim, lo, margin):
        return "held"
    if not _clears(claim, hi, margin):
        return "failed"
    return "inconclusive"


def _raw(claim: Claim, a: float, b: float) -> float:
    """The quantity an interval is taken over: ``diff``, except ``a - b`` for within claims."""
    return a - b if claim.form == "within" else orient(claim, a, b)


def verdict(claim: Claim, a: Side | None, b: Side | None) -> ClaimResult:
    """Three-valued verdict of ``claim`` on measured sides ``a`` and ``b`` (``b`` a :class:`Side`,
    or ``None`` when ``claim.b`` is a number); ``None`` for ``a``: not run."""
    number = isinstance(claim.b, (int, float))
    if number:
        b = Side(float(claim.b), seeded=False, code=a.code if a else None)
    if a is None or b is None:
        return ClaimResult(claim, "not run", a.value if a else None, b.value if b else None)
    margin = margin_of(claim)
    detail: dict = {"diff": orient(claim, a.value, b.value), "ci": None, "margin": margin, "seeds": 0,
                    "paired": False, "same_code": a.code is not None and a.code == b.code, "method": ""}
    if a.outdated or b.outdated:
        detail["reason"] = "stale: re-run (a result was measured under an earlier recipe or data than the spec's)"
        return ClaimResult(claim, "stale", a.value, b.value, detail)
    if not detail["same_code"]:
        detail["reason"] = ("stale: re-run (code unknown: a result predates code fingerprints)"
                            if a.code is None or b.code is None else
                            f"stale: re-run (rows produced by different code: {a.code} vs {b.code})")
        return ClaimResult(claim, "stale", a.value, b.value, detail)
    if a.seeded or b.seeded:
        return _seeded_verdict(claim, a, b, detail)
    # seed-independent measurements: the range of diff over both sides' spreads
    if any(side.timed and side.spread is None for side in (a, b)):
        detail.update(method="one measurement without its spread over repeats")
        detail["reason"] = "a timing stored without its spread over repeats: re-profile to decide"
        return ClaimResult(claim, "inconclusive", a.value, b.value, detail)
    a_range, b_range = a.spread or (a.value, a.value), b.spread or (b.value, b.value)
    lo, hi = _corner_interval(claim, a_range, b_range)
    exact = a.spread is None and b.spread is None
    separate_runs = a.timed and b.timed  # two rows: each timed by its own profile run, not paired
    detail.update(ci=[lo, hi], paired=not separate_runs,
                  method="exact count (one deterministic measurement)" if exact else
                  UNPAIRED_RUNS if separate_runs else
                  "one measurement; interval over each side's 10th-90th percentile over repeats")
    if separate_runs:
        # Drift between runs is not in the corner interval: decide only on the interval widened
        # by RUN_DRIFT on each side (the same row timed twice 14 min apart moved 19 % here).
        wide_lo, wide_hi = _corner_interval(claim, *((lo_ * (1 - RUN_DRIFT), hi_ * (1 + RUN_DRIFT))
                                                      for lo_, hi_ in (a_range, b_range)))
        status = _decide(claim, wide_lo, wide_hi, margin)
        detail["drift_ci"] = [wide_lo, wide_hi]
        if status == "inconclusive":
            detail["reason"] = (f"two rows timed in separate runs: within ±{RUN_DRIFT:.0%} drift between runs; "
                                "timing both in one interleaved run would decide it")
        return ClaimResult(claim, status, a.value, b.value, detail)
    return ClaimResult(claim, _decide(claim, lo, hi, margin), a.value, b.value, detail)


def _corner_interval(claim: Claim, a_range: tuple[float, float], b_range: tuple[float, float]) -> tuple[float, float]:
    """The range of the claim's interval quantity (:func:`_raw`) over the corners of ``a``'s and
    ``b``'s ranges (an equivalence interval for ``within``)."""
    corners = [_raw(claim, x, y) for x in a_range for y in b_range]
    lo, hi = min(corners), max(corners)
    return _within_interval(lo, hi) if claim.form == "within" else (lo, hi)


def _seeded_verdict(claim: Claim, a: Side, b: Side, detail: dict) -> ClaimResult:
    seeds = sorted(set(a.per_seed) & set(b.per_seed)) if a.seeded and b.seeded else \
        sorted(a.per_seed if a.seeded else b.per_seed)
    pairs = [(a.per_seed[s] if a.seeded else a.value, b.per_seed[s] if b.seeded else b.value) for s in seeds]
    raw = [_raw(claim, x, y) for x, y in pairs]
    detail.update(seeds=len(seeds), paired=bool(seeds), method=PAIRED_SEEDS)
    if raw:
        detail["diff"] = statistics.fmean(orient(claim, x, y) for x, y in pairs)
    bound = (-claim.tolerance, claim.tolerance) if claim.form == "within" else detail["margin"]
    if len(raw) < MIN_SEEDS:
        detail["reason"] = f"need >= {MIN_SEEDS}"
        if len(raw) >= 2:  # one seed shows no spread to plan from
            needed = seeds_needed(raw, bound)
            detail["seeds_needed"] = max(needed, MIN_SEEDS) if needed else None
        return ClaimResult(claim, "inconclusive", a.value, b.value, detail)
    _, lo, hi = t_interval(raw)
    if claim.form == "within":
        lo, hi = _within_interval(lo, hi)
    detail["ci"] = [lo, hi]
    status = _decide(claim, lo, hi, detail["margin"])
    if status == "inconclusive":  # how many seeds would decide it, if the spread stays as it is
        detail["seeds_needed"] = seeds_needed(raw, bound)
    return ClaimResult(claim, status, a.value, b.value, detail)


def check_claims(spec: TableSpec, values: Mapping[str, Mapping[str, float | None]]) -> list[ClaimResult]:
    """Point checks of every claim on ``values`` (the paper's numbers: :func:`reported_values`)."""
    return [check_claim(claim, values) for claim in spec.claims]


def verdicts(spec: TableSpec, sides: Mapping[str, Mapping[str, Side]]) -> list[ClaimResult]:
    """Verdict of every claim on measured ``sides[row_id][metric]``; a claim comparing with a cited
    row (nothing this code builds) reads "n/a"."""
    cited = {row.id for row in spec.rows if row.kind == "cited"}
    out = []
    for claim in spec.claims:
        if {claim.a, claim.b} & cited:
            out.append(ClaimResult(claim, "n/a", None, None, {"reason": "compares with a cited row"}))
            continue
        b = None if isinstance(claim.b, (int, float)) else sides.get(claim.b, {}).get(claim.metric)
        out.append(verdict(claim, sides.get(claim.a, {}).get(claim.metric), b))
    return out
