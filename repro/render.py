"""Render a table spec + measured results as ``tables/<paper>/table<N>.{md,csv,tex,png}``.

Every table shows, per metric, the paper's number ("reported"), this code's number
("reproduced") and their difference, plus *where* each reproduced number comes from (scale and
data), because a number measured on the built-in mini benchmark is not the paper's number on
Something-Something.  A reproduced number that is a mean over seeds says how many.  Cited rows
are marked; claims are listed as held / failed / not run (or n/a where a claim compares with a
cited row, which has no reproduced number), tested on the means and, where both rows ran the same
two or more seeds, also seed by seed ("on 1 of 2 seeds").
Tables are regenerated from specs and results, never edited by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from repro.claims import ClaimResult, check_claims, reported_values, seed_tally
from repro.jobs import JOBS
from repro.results import Result, ResultKey, atomic_write_text
from repro.spec.schema import Claim, TableSpec

__all__ = ["RenderedTable", "build_table", "write_table", "scale_label"]

#: How each scale is labelled wherever a reproduced number is shown.
SCALE_LABELS = {
    "mini": "mini scale",
    "small": "small scale",
    "full": "full scale",
}


def scale_label(result: Result) -> str:
    data = result.data or "?"
    seeds = f"; mean of {len(result.per_seed)} seeds" if len(result.per_seed) > 1 else ""
    return f"{SCALE_LABELS.get(result.scale, result.scale)}: {data}{seeds}"


@dataclass
class RenderedTable:
    spec: TableSpec
    scale: str
    frame: pd.DataFrame  # one row per spec row; machine-readable columns
    rows: list[dict[str, Any]]  # JSON form: id, label, kind, reported, reproduced, sources, status
    reported_claims: list[ClaimResult]
    reproduced_claims: list[ClaimResult]  # on the reproduced numbers at ``scale``
    #: claim id -> (seeds it held on, seeds both rows ran), where the rows share two or more seeds
    reproduced_seed_tallies: dict[str, tuple[int, int]] = field(default_factory=dict)


def _fmt(v: float | None, digits: int | None = None) -> str:
    """Two decimals; three below 1 (sub-pixel EPEs, seconds), so close values stay distinguishable."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if abs(v) >= 1e5 and float(v).is_integer():
        return f"{int(v):,}"
    if digits is None:
        digits = 3 if 0 < abs(v) < 1 else 2
    return f"{v:.{digits}f}"


def _reproduced_for(spec: TableSpec, row_id: str, results: dict, scale: str
                    ) -> tuple[dict[str, float], dict[str, Result], dict[int, dict[str, float]]]:
    """Reproduced value of each metric of a row: the job's result at the scale it runs at; and,
    where that is a mean over seeds, each seed's value (``{seed: {metric: value}}``)."""
    values: dict[str, float] = {}
    sources: dict[str, Result] = {}
    per_seed: dict[int, dict[str, float]] = {}
    for m in spec.metrics:
        if not m.job:
            continue
        run_scale = JOBS[m.job].scale_for(scale)
        res = results.get((run_scale, spec.paper, spec.table, row_id, m.job))
        if res is not None and m.job_key in res.metrics:
            values[m.key] = res.metrics[m.job_key]
            sources[m.key] = res
            for seed, seed_metrics in res.per_seed.items():
                if m.job_key in seed_metrics:
                    per_seed.setdefault(seed, {})[m.key] = seed_metrics[m.job_key]
    return values, sources, per_seed


def build_table(spec: TableSpec, results: dict[ResultKey, Result], scale: str = "mini",
                status: dict[str, str] | None = None) -> RenderedTable:
    """``status[row_id]``: what to say for rows without reproduced numbers (e.g. what is missing)."""
    status = status or {}
    records, json_rows = [], []
    reproduced_all: dict[str, dict[str, float]] = {}
    per_seed_all: dict[str, dict[int, dict[str, float]]] = {}
    for row in spec.rows:
        values, sources, per_seed = _reproduced_for(spec, row.id, results, scale)
        reproduced_all[row.id], per_seed_all[row.id] = values, per_seed
        ref = row.cite.split()[0] if row.cite else ""
        label = row.label + (f" {ref}" if row.kind == "cited" and ref and ref not in row.label else "")
        rec: dict[str, Any] = {"id": row.id, "Method": label, "kind": row.kind}
        for c in spec.text_columns:
            rec[c.label] = row.cells.get(c.key, "")
        for m in spec.metrics:
            rep = row.reported.get(m.key)
            got = values.get(m.key)
            rec[f"{m.label} (reported)"] = rep
            if m.job:
                rec[f"{m.label} (reproduced)"] = got
                rec[f"{m.label} Δ"] = (got - rep) if (got is not None and rep is not None) else None
        where = sorted({scale_label(r) for r in sources.values()})
        if row.kind == "cited":
            note = "cited"
        else:
            pending = status.get(row.id) or (None if values else (f"needs: {row.needs}" if row.needs else "not run"))
            note = "; ".join(filter(None, [*where, pending]))
        rec["reproduced on"] = note
        records.append(rec)
        json_rows.append({
            "id": row.id, "label": row.label, "kind": row.kind, "cells": dict(row.cells),
            "reported": dict(row.reported), "reproduced": values,
            "reproduced_per_seed": {str(seed): v for seed, v in sorted(per_seed.items())},
            "sources": {k: {"scale": r.scale, "data": r.data, "commit": r.provenance.get("commit"),
                            "file": str(r.path)} for k, r in sources.items()},
            "status": note,
        })
    tallies = {c.id: tally for c in spec.claims if (tally := seed_tally(c, per_seed_all)) is not None}
    return RenderedTable(spec, scale, pd.DataFrame.from_records(records), json_rows,
                         check_claims(spec, reported_values(spec)), check_claims(spec, reproduced_all), tallies)


def _display_frame(t: RenderedTable) -> pd.DataFrame:
    df = t.frame.drop(columns=["id", "kind"]).copy()
    for col in df.columns:
        if col.endswith("(reported)") or col.endswith("(reproduced)") or col.endswith("Δ"):
            signed = col.endswith("Δ")
            df[col] = [("+" if signed and v is not None and not math.isnan(v) and v > 0 else "") + _fmt(v)
                       if v is not None else "" for v in df[col]]
    return df.fillna("")


def to_markdown(t: RenderedTable) -> str:
    spec = t.spec
    from repro.spec.schema import PAPERS

    lines = [f"# {PAPERS[spec.paper]} — Table {spec.table}: {spec.title}", ""]
    if spec.caption:
        lines += [f"> {spec.caption}", ""]
    lines += ["Generated by `python -m repro` from `specs/` and `results/`; do not edit by hand. "
              "*Reported*: the paper's number. *Reproduced*: measured by this code, at the scale and on the data "
              "named in the last column (mini-scale numbers come from the built-in synthetic benchmark on a CPU and "
              "are not comparable in absolute value to the paper's; Δ is shown for completeness).", ""]
    lines.append(_display_frame(t).to_markdown(index=False))
    if spec.recovery:
        lines += ["", f"**How rows were recovered from the text:** {spec.recovery.strip()}"]
    if spec.claims:
        lines += ["", "## Claims", "", "| claim | on reported numbers | reproduced (" + t.scale + ") |", "|---|---|---|"]
        repro_claims = {c.id: c for c in t.reproduced_claims}
        for c in t.reported_claims:
            r = repro_claims.get(c.id)
            if r is None or r.status == "not run":
                got = "not run"
            elif r.status == "cited":
                got = "n/a: compares with a cited row"
            else:
                tally = t.reproduced_seed_tallies.get(c.id)
                seeds = f"; on {tally[0]} of {tally[1]} seeds" if tally else ""
                got = f"{r.status} ({_fmt(r.a)} vs {_fmt(r.b)}{seeds})"
            lines.append(f"| {c.claim.text}{_claim_slack(c.claim)} | {c.status} ({_fmt(c.a)} vs {_fmt(c.b)}) | {got} |")
    return "\n".join(lines) + "\n"


def _claim_slack(claim: Claim) -> str:
    """How far from a plain ``a op b`` the claim's test is, for the reader of the table."""
    if claim.margin:
        return f" (by at least {_fmt(claim.margin)})"
    if claim.tolerance:
        return f" (tolerance {_fmt(claim.tolerance)})"
    return ""


def to_latex(t: RenderedTable) -> str:
    return _display_frame(t).to_latex(index=False, escape=True, caption=f"{t.spec.title} (Table {t.spec.table})")


def plot_png(t: RenderedTable, path: Path) -> bool:
    """Reported vs reproduced bars per metric, where both exist. Returns False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = []
    for m in t.spec.metrics:
        rep_col, got_col = f"{m.label} (reported)", f"{m.label} (reproduced)"
        if got_col not in t.frame:
            continue
        sub = t.frame[["Method", rep_col, got_col]].dropna()
        if len(sub):
            pairs.append((m, sub))
    if not pairs:
        return False
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 + 1.2 * max(len(s) for _, s in pairs), 4), squeeze=False)
    for ax, (m, sub) in zip(axes[0], pairs):
        x = range(len(sub))
        ax.bar([i - 0.2 for i in x], sub[f"{m.label} (reported)"], width=0.4, label="reported (paper)")
        ax.bar([i + 0.2 for i in x], sub[f"{m.label} (reproduced)"], width=0.4, label="reproduced (this code)")
        ax.set_xticks(list(x), [s[:28] for s in sub["Method"]], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{m.label} [{m.unit}]" if m.unit else m.label)
        ax.legend(fontsize=7)
    scales = sorted({s for r in t.rows for s in (v["scale"] for v in r["sources"].values())})
    fig.suptitle(f"{t.spec.paper} Table {t.spec.table}: reported vs reproduced ({', '.join(scales)} scale)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return True


def write_table(t: RenderedTable, tables_dir: Path) -> list[Path]:
    """Write ``tables/<paper>/table<N>.{md,csv,tex[,png]}`` atomically; return the paths."""
    out = Path(tables_dir) / t.spec.paper
    stem = out / f"table{t.spec.table}"
    atomic_write_text(stem.with_suffix(".md"), to_markdown(t))
    atomic_write_text(stem.with_suffix(".csv"), t.frame.to_csv(index=False))
    atomic_write_text(stem.with_suffix(".tex"), to_latex(t))
    paths = [stem.with_suffix(s) for s in (".md", ".csv", ".tex")]
    png = stem.with_suffix(".png")
    if plot_png(t, png):
        paths.append(png)
    return paths
