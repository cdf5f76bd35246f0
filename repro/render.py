"""Render a table spec + measured results as ``tables/<paper>/table<N>.{md,csv,tex,png}``.

Every table shows, per metric, the paper's number ("reported") and this code's ("reproduced"),
and labels what each reproduced column was measured on (e.g. "mini: synthetic, 12 classes,
chance 8.3 %"), never the paper's dataset name.  A difference Δ is shown only where the numbers
come from the same scale as the paper's (the ``profile`` job's counts of the full-size model);
mini numbers are on other data.  Each row's reproduced numbers name how their protocol departs
from the paper's (:mod:`repro.standins`: generated from the spec and the run config that ran),
as lettered notes under the table with the spec's written departures.  Claims are checked on the
reported numbers (held / failed) and given a verdict on the reproduced ones (held / failed /
inconclusive / stale / not run / n/a, :mod:`repro.claims`) with the difference and its interval.
Tables are regenerated from specs and results, never edited by hand.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from repro.claims import PAIRED_SEEDS, RUN_DRIFT, UNPAIRED_RUNS, ClaimResult, Side, check_claims, reported_values, verdicts
from repro.jobs import JOBS
from repro.results import Result, ResultKey, atomic_write_text
from repro.identity import result_key
from repro.spec.schema import Claim, Metric, Row, TableSpec, resolved_config
from repro.standins import DATASETS, chance, classes_of, data_label, stand_ins

__all__ = ["RenderedTable", "build_table", "write_table", "scale_label", "to_markdown", "reproduced_name"]

#: Profile keys whose spread over repeats a result records (10th / 90th percentile, in ms).
_LATENCY_SPREAD = {"latency_ms": 1.0, "latency_s": 1e-3}


def scale_label(result: Result) -> str:
    data = result.data or "?"
    seeds = f"; mean of {len(result.per_seed)} seeds" if len(result.per_seed) > 1 else ""
    return f"{result.scale} scale: {data}{seeds}"


@dataclass
class RenderedTable:
    spec: TableSpec
    scale: str
    frame: pd.DataFrame  # one row per spec row; machine-readable columns
    rows: list[dict[str, Any]]  # JSON form: id, label, kind, reported, reproduced, sources, stand_ins, status
    reported_claims: list[ClaimResult]
    reproduced_claims: list[ClaimResult]  # verdicts on the reproduced numbers at ``scale``
    #: metric key -> what its reproduced numbers were measured on ("mini: synthetic, 12 classes, ...")
    column_data: dict[str, str] = field(default_factory=dict)
    #: metric key -> chance level (%) on the reproduced data, for accuracies
    chance: dict[str, float] = field(default_factory=dict)
    #: lettered notes: letter -> stand-ins shared by the rows that cite it
    notes: dict[str, list[str]] = field(default_factory=dict)

    def claims_json(self) -> list[dict[str, Any]]:
        """``claims[]`` of the JSON output: reported and reproduced verdicts, and the latter's detail."""
        return [{"id": c.id, "text": c.claim.text, "reported": c.status, "reproduced": r.status,
                 "reported_values": [c.a, c.b], "reproduced_values": [r.a, r.b],
                 "reproduced_detail": r.detail or None}
                for c, r in zip(self.reported_claims, self.reproduced_claims)]


def _fmt(v: float | None, digits: int | None = None) -> str:
    """Two decimals; three below 1 (sub-pixel EPEs, seconds), so close values stay distinguishable."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if abs(v) >= 1e5 and float(v).is_integer():
        return f"{int(v):,}"
    if digits is None:
        digits = 3 if 0 < abs(v) < 1 else 2
    return f"{v:.{digits}f}"


def _side(res: Result, key: str, outdated: bool = False) -> Side:
    value = res.metrics[key]
    if outdated:  # measured under another recipe or data than the spec's: shown, never compared
        return Side(value, per_seed=res.seed_values(key), code=res.code, seeded=res.job != "profile", outdated=True)
    if res.job == "profile":  # seed-independent: exact counts, latency with its spread over repeats
        spread = (res.details.get("spread") or {}).get(key)  # per-part times and ratios (repro.jobs.profile)
        spread = tuple(spread) if spread else None
        if key in _LATENCY_SPREAD and "latency_p10_ms" in res.details and "latency_p90_ms" in res.details:
            k = _LATENCY_SPREAD[key]
            spread = (res.details["latency_p10_ms"] * k, res.details["latency_p90_ms"] * k)
        return Side(value, spread=spread, code=res.code, seeded=False, timed=is_timed(key))
    return Side(value, per_seed=res.seed_values(key), code=res.code)


def is_timed(key: str) -> bool:
    """Whether a profile key is a timing (latency, FPS, ms, time ratios) rather than an exact count."""
    return any(part in key for part in ("latency", "fps", "_ms", "time"))


def outdated(spec: TableSpec, row: Row, res: Result) -> bool:
    """Whether ``res`` was measured under another recipe or data than the spec now gives its row
    (its ``spec_hash`` is not :func:`repro.identity.result_key`; a result without one: unknown, kept)."""
    stored = res.provenance.get("spec_hash")
    return stored is not None and stored != result_key(spec, row, res.job, res.scale)


def _reproduced_for(spec: TableSpec, row: Row, results: dict, scale: str
                    ) -> tuple[dict[str, float], dict[str, Result], dict[str, Side]]:
    """Reproduced value of each metric of a row (the job's result at the scale it runs at), its
    result, and the side a claim's verdict reads (per-seed values, spread, code, out of date)."""
    values: dict[str, float] = {}
    sources: dict[str, Result] = {}
    sides: dict[str, Side] = {}
    for m in spec.metrics:
        if not m.job:
            continue
        res = results.get((JOBS[m.job].scale_for(scale), spec.paper, spec.table, row.id, m.job))
        if res is not None and m.job_key in res.metrics:
            side = _side(res, m.job_key, outdated(spec, row, res))
            values[m.key], sources[m.key], sides[m.key] = res.metrics[m.job_key], res, side
    return values, sources, sides


def _column_config(spec: TableSpec, m: Metric, scale: str, results: dict) -> dict[str, Any] | None:
    """The resolved config a column's numbers ran with: the first recorded run config, else the
    first row's spec config at the job's scale."""
    run_scale = JOBS[m.job].scale_for(scale)
    for row in spec.rows:
        res = results.get((run_scale, spec.paper, spec.table, row.id, m.job))
        if res is not None and res.details.get("run_config"):
            return res.details["run_config"]
    for row in spec.rows:
        if row.kind != "cited" and row.run_config(run_scale) is not None:
            return resolved_config(row.run_config(run_scale))
    return None


def _paper_dataset(spec: TableSpec) -> str | None:
    for row in spec.rows:
        if row.full is not None:
            return DATASETS.get(row.full.dataset, row.full.dataset)
    return None


def _duplicate_text_columns(spec: TableSpec) -> set[str]:
    """Text columns that only repeat the row label (TrajectoryNet Table 3's Source)."""
    return {c.key for c in spec.text_columns
            if all(row.cells.get(c.key, "") in ("", row.label) for row in spec.rows)}


def build_table(spec: TableSpec, results: dict[ResultKey, Result], scale: str = "mini",
                status: dict[str, str] | None = None) -> RenderedTable:
    """``status[row_id]``: what to say for rows without reproduced numbers (e.g. what is missing)."""
    status = status or {}
    column_data: dict[str, str] = {}
    chances: dict[str, float] = {}
    for m in spec.metrics:
        if m.job:
            cfg = _column_config(spec, m, scale, results) or {}
            run_scale = JOBS[m.job].scale_for(scale)
            column_data[m.key] = data_label(cfg, run_scale, m.job, m.job_key)
            level = chance(m.job_key, classes_of(cfg)) if m.job == "train" else None
            if level is not None:
                chances[m.key] = level
    dropped = _duplicate_text_columns(spec)
    records, json_rows, sides_all, notes = [], [], {}, {}
    for row in spec.rows:
        values, sources, sides = _reproduced_for(spec, row, results, scale)
        sides_all[row.id] = sides
        ref = row.cite.split()[0] if row.cite else ""
        label = row.label + (f" {ref}" if row.kind == "cited" and ref and ref not in row.label else "")
        rec: dict[str, Any] = {"id": row.id, "Method": label, "kind": row.kind}
        for c in spec.text_columns:
            if c.key not in dropped:
                cell = row.cells.get(c.key, "")
                rec[c.label] = "—" if cell in ("None", "-") else cell  # the paper's "None": no such part
        for m in spec.metrics:
            rep, got = row.reported.get(m.key), values.get(m.key)
            rec[f"{m.label} (reported)"] = rep
            if m.job:
                rec[reproduced_name(m)] = got
                same_data = m.key in sources and sources[m.key].scale == "full"
                rec[f"{m.label} Δ"] = (got - rep) if (same_data and got is not None and rep is not None) else None
        # how the non-full-scale numbers depart from the paper's protocol, lettered
        off_scale = [r for r in sources.values() if r.scale != "full"]
        row_stand_ins: list[str] = []
        if off_scale:
            run_cfg = next((r.details.get("run_config") for r in off_scale if r.details.get("run_config")), None)
            row_stand_ins = stand_ins(spec, row, off_scale[0].scale, run_cfg)
        letter = ""
        if row_stand_ins:
            key = tuple(row_stand_ins)
            letter = next((k for k, v in notes.items() if tuple(v) == key), None) or chr(ord("a") + len(notes))
            notes.setdefault(letter, row_stand_ins)
        if row.kind == "cited":
            note = "cited"
        else:
            pending = status.get(row.id) or (None if values else (f"needs: {row.needs}" if row.needs else "not run"))
            seeds = max((len(r.per_seed) for r in sources.values()), default=0)
            old = "out of date (an earlier recipe or data): re-run" if any(
                side.outdated for side in sides.values()) else ""
            note = "; ".join(filter(None, [f"[{letter}]" if letter else "",
                                           f"mean of {seeds} seeds" if seeds > 1 else "", old, pending]))
        rec["stand-ins / status"] = note
        records.append(rec)
        json_rows.append({
            "id": row.id, "label": row.label, "kind": row.kind, "cells": dict(row.cells),
            "reported": dict(row.reported), "reproduced": values,
            "reproduced_per_seed": {str(s): v for s, v in sorted(_per_seed(spec, sources).items())},
            "sources": {k: {"scale": r.scale, "data": r.data, "data_label": column_data.get(k),
                            "commit": r.provenance.get("commit"), "code": r.code, "file": str(r.path)}
                        for k, r in sources.items()},
            "stand_ins": row_stand_ins,
            "status": note,
        })
    frame = pd.DataFrame.from_records(records)
    frame = frame[[c for c in frame.columns if not (c.endswith(" Δ") and frame[c].isna().all())]]
    return RenderedTable(spec, scale, frame, json_rows, check_claims(spec, reported_values(spec)),
                         verdicts(spec, sides_all), column_data, chances, notes)


#: What a job's key measures, for a reproduced column whose paper label is a dataset's name.
_KEY_NAMES = {"top1": "Top-1", "top5": "Top-5", "avg_top1_top5": "avg. of Top-1 and Top-5",
              "mean_class_acc": "mean class acc.", "epe": "EPE"}


def reproduced_name(m: Metric) -> str:
    """The column name of ``m``'s reproduced numbers: the paper's label, unless that label is a
    dataset's name (TVNet Table 3's "UCF101"), which a number on other data must not sit under."""
    names = {n.lower() for n in DATASETS} | {n.lower() for n in DATASETS.values()}
    if m.label.lower() in names or m.label.split("@")[0].lower() in names:
        return f"{_KEY_NAMES.get(m.job_key, m.job_key)} (reproduced)"
    return f"{m.label} (reproduced)"


def _per_seed(spec: TableSpec, sources: dict[str, Result]) -> dict[int, dict[str, float]]:
    """``{seed: {metric key: value}}`` of a row's reproduced numbers, where seeds are recorded."""
    out: dict[int, dict[str, float]] = {}
    for key, res in sources.items():
        for seed, value in res.seed_values(spec.metric(key).job_key).items():
            out.setdefault(seed, {})[key] = value
    return out


def _display_frame(t: RenderedTable) -> pd.DataFrame:
    df = t.frame.drop(columns=["id", "kind"]).copy()
    renames = {}
    for m in t.spec.metrics:
        col = reproduced_name(m)
        if col in df.columns and m.key in t.column_data:
            renames[col] = f"{col[:-1]}; {t.column_data[m.key]})"
        if f"{m.label} (reported)" in df.columns and m.job:
            paper = _paper_dataset(t.spec) if m.job != "profile" else None  # counts are on no dataset
            renames[f"{m.label} (reported)"] = f"{m.label} (reported{'; ' + paper if paper else ''})"
    for col in df.columns:
        if col.endswith("(reported)") or col.endswith("(reproduced)") or col.endswith("Δ"):
            signed = col.endswith("Δ")
            df[col] = [("+" if signed and v is not None and not math.isnan(v) and v > 0 else "") + _fmt(v)
                       if v is not None and not (isinstance(v, float) and math.isnan(v)) else "" for v in df[col]]
    return df.rename(columns=renames).fillna("")


def _verdict_text(r: ClaimResult) -> str:
    d = r.detail or {}
    if r.status in ("not run",):
        return "not run"
    if r.status == "n/a":
        return "n/a: compares with a cited row"
    if r.status == "stale":  # the numbers are shown, not compared
        return d.get("reason", "stale: re-run") + f"; measured {_fmt(r.a)} vs {_fmt(r.b)}, not compared"
    diff, margin, ci = d.get("diff"), d.get("margin"), d.get("ci")
    what = f"diff {_signed(diff)}"
    if ci:
        half = (ci[1] - ci[0]) / 2
        what += f" ± {_fmt(half)} [{_signed(ci[0])}, {_signed(ci[1])}]"
    what += f" vs margin {_signed(margin)}"
    if d.get("method") == PAIRED_SEEDS:  # a seeded verdict (also on 0 or 1 paired seeds)
        what += f"; {d['seeds']} paired seed{'' if d['seeds'] == 1 else 's'}"
    if d.get("reason"):
        what += f"; {d['reason']}"
    elif d.get("method", "").startswith("exact"):
        what += "; exact counts"
    elif d.get("method", "").startswith("one measurement"):
        what += "; latency p10-p90"
    elif d.get("method") == UNPAIRED_RUNS:
        what += "; unpaired runs, each one's latency p10-p90"
    if r.status == "inconclusive" and "seeds_needed" in d:
        what += "; " + needs_text(d["seeds_needed"])
    return f"**{r.status}** ({what})"


def needs_text(seeds_needed: int | None) -> str:
    """What an inconclusive seeded verdict would need (:func:`repro.claims.seeds_needed`)."""
    from repro.claims import MAX_SEEDS_NEEDED

    if seeds_needed:
        return f"~{seeds_needed} paired seeds would decide it at this spread"
    return f"more than {MAX_SEEDS_NEEDED} paired seeds at this spread (the mean is at the margin)"


def _signed(v: float | None) -> str:
    return "" if v is None else ("+" if v > 0 else "") + _fmt(v)


def _claim_form(claim: Claim) -> str:
    """The claim's test as the reader checks it."""
    b = _fmt(claim.b) if isinstance(claim.b, (int, float)) else claim.b
    if claim.form == "ratio":
        return f"{claim.a} / {b} {claim.op} {claim.ratio:g}"
    if claim.form == "within":
        return f"|{claim.a} − {b}| ≤ {_fmt(claim.tolerance)}"
    slack = f" by ≥ {_fmt(claim.margin)}" if claim.margin else (
        f" (may lose by ≤ {_fmt(claim.tolerance)})" if claim.tolerance else "")
    return f"{claim.a} {claim.op} {b}{slack}"


def to_markdown(t: RenderedTable) -> str:
    spec = t.spec
    from repro.spec.schema import PAPERS

    lines = [f"# {PAPERS[spec.paper]} — Table {spec.table}: {spec.title}", ""]
    if spec.caption:
        lines += [f"> {spec.caption}", ""]
    lines += ["Generated by `python -m repro` from `specs/` and `results/`; do not edit by hand. "
              "*Reported*: the paper's number, on the paper's data. *Reproduced*: measured by this code, on the data "
              "its column names (mini numbers come from the built-in synthetic benchmark on a CPU: another dataset, "
              "so no Δ is shown for them). Lettered notes say how each row's reproduced numbers depart from the "
              "paper's protocol.", ""]
    lines.append(_display_frame(t).to_markdown(index=False))
    if t.chance:
        lines += ["", "Chance on the reproduced data: " + "; ".join(
            f"{spec.metric(k).label} {v:.1f} %" for k, v in t.chance.items()) + "."]
    if t.notes:
        lines += ["", "**How the reproduced numbers depart from the paper's protocol** (generated from the spec "
                  "and the run config that ran):", ""]
        lines += [f"* [{k}] " + "; ".join(v) for k, v in t.notes.items()]
    written = [d for d in spec.departures]
    if written:
        lines += ["", "**Departures written in the spec:**", ""]
        lines += [f"* {d.what}: {d.here} (paper: {d.paper})" + (f" — {d.why.strip()}" if d.why else "")
                  + (f" [{', '.join(d.scales)}]" if d.scales else "") for d in written]
    row_deps = [(r, d) for r in spec.rows for d in r.departures]
    if row_deps:
        lines += [""] if written else ["", "**Departures written in the spec:**", ""]
        lines += [f"* {r.label}: {d.what}: {d.here} (paper: {d.paper})" + (f" — {d.why.strip()}" if d.why else "")
                  for r, d in row_deps]
    if spec.recovery:
        lines += ["", f"**How rows were recovered from the text:** {spec.recovery.strip()}"]
    if spec.claims:
        lines += ["", "## Claims", "",
                  "Verdicts on reproduced numbers: *held* when the whole 95 % interval of the claim's difference "
                  "clears its margin, *failed* when it lies wholly on the other side, *inconclusive* otherwise "
                  "(t-interval over ≥ 3 paired seeds; exact for counts; for two rows' timings, the range over "
                  f"each row's own run's 10th-90th percentile: unpaired runs, decided only beyond ±{RUN_DRIFT:.0%} run-to-run drift); "
                  "*stale* when the rows were produced by "
                  "different code. `diff` is oriented so that the claim asserts diff > margin.", "",
                  "| claim | test | on reported numbers | reproduced (" + t.scale + ") |", "|---|---|---|---|"]
        for c, r in zip(t.reported_claims, t.reproduced_claims):
            lines.append(f"| {c.claim.text} | `{_claim_form(c.claim)}` | {c.status} ({_fmt(c.a)} vs {_fmt(c.b)}) | "
                         f"{_verdict_text(r)} |")
    return "\n".join(lines) + "\n"


#: The order verdicts are counted and listed in.
VERDICT_ORDER = ("held", "failed", "inconclusive", "stale", "not run", "n/a")


def verdict_summary(tables: list[RenderedTable]) -> tuple[list[dict[str, Any]], str]:
    """Every claim of ``tables`` with its reproduced verdict: ``(json, markdown)``.  The Markdown
    is a count per table and verdict, then one line per decided or inconclusive claim -- what
    README's summary is pasted from (``python -m repro verdicts``)."""
    items = [{"paper": t.spec.paper, "table": t.spec.table, "scale": t.scale, **claim}
             for t in tables for claim in t.claims_json()]
    header = "| table | " + " | ".join(VERDICT_ORDER) + " |"
    lines = [header, "|---" * (len(VERDICT_ORDER) + 1) + "|"]
    for t in tables:
        counts = [sum(r.status == v for r in t.reproduced_claims) for v in VERDICT_ORDER]
        lines.append(f"| {t.spec.paper} {t.spec.table} | " + " | ".join(str(c) for c in counts) + " |")
    totals = [sum(item["reproduced"] == v for item in items) for v in VERDICT_ORDER]
    lines += ["| **all** | " + " | ".join(f"**{c}**" for c in totals) + " |", ""]
    for t in tables:
        for r in t.reproduced_claims:
            if r.status in ("held", "failed", "inconclusive"):
                lines.append(f"* {t.spec.paper} Table {t.spec.table} — {r.claim.text}: {_verdict_text(r)}")
    return items, "\n".join(lines) + "\n"


def to_latex(t: RenderedTable) -> str:
    return _display_frame(t).to_latex(index=False, escape=True, caption=f"{t.spec.title} (Table {t.spec.table})")


def plot_png(t: RenderedTable, path: Path) -> bool:
    """Per metric with reproduced numbers, two panels side by side: the paper's numbers (on the
    paper's data) and the reproduced ones (on the data the column names, with chance marked) --
    separate axes, because they are numbers on different data.  Returns False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in t.spec.metrics if reproduced_name(m) in t.frame and t.frame[reproduced_name(m)].notna().any()]
    if not metrics:
        return False
    labels = ["\n".join(textwrap.wrap(s, 34)) for s in t.frame["Method"]]
    height = 1.4 + 0.42 * len(labels) * max(1, max(lab.count("\n") + 1 for lab in labels) * 0.6)
    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, height * len(metrics)), squeeze=False)
    for (ax_rep, ax_got), m in zip(axes, metrics):
        paper = "paper" if m.job == "profile" else f"paper; {_paper_dataset(t.spec) or 'the paper’s data'}"
        y = list(range(len(labels)))
        for ax, col, colour, title, xlabel in (
                (ax_rep, f"{m.label} (reported)", "tab:blue", f"reported ({paper})", m.label),
                (ax_got, reproduced_name(m), "tab:orange", f"reproduced ({t.column_data.get(m.key, '')})",
                 reproduced_name(m).removesuffix(" (reproduced)"))):
            vals = [v if v is not None and not (isinstance(v, float) and math.isnan(v)) else 0.0 for v in t.frame[col]]
            ax.barh(y, vals, color=colour)
            ax.set_yticks(y, labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel(f"{xlabel} [{m.unit}]" if m.unit else xlabel, fontsize=8)
            ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=8)
        if m.key in t.chance:
            ax_got.axvline(t.chance[m.key], color="k", ls="--", lw=1)
            ax_got.text(t.chance[m.key], len(labels) - 0.5, f" chance {t.chance[m.key]:.1f} %", fontsize=7,
                        va="bottom")
    fig.suptitle(f"{t.spec.paper} Table {t.spec.table}: {t.spec.title}"[:110], fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title above the panels' own
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
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
    elif png.exists():
        png.unlink()
    return paths
