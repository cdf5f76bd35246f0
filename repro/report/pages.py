"""The site's pages: the index, one page per table, one provenance page per result file."""
from __future__ import annotations

import json
import math
from typing import Any

from repro.report.data import coverage
from repro.report.html import esc, link, page, table

__all__ = ["table_page_name", "provenance_page_name", "index_page", "table_page", "provenance_page"]

PAPER_NAMES = {"trajectorynet": "TrajectoryNet (NeurIPS 2018)", "tvnet": "TVNet (CVPR 2018)",
               "dynamics": "Disentangling Dynamics (CVPR 2018)", "lgd": "LGD (CVPR 2019)"}


def table_page_name(paper: str, table: int) -> str:
    return f"{paper}-table{table}.html"


def provenance_page_name(scale: str, paper: str, table: int, row: str, job: str) -> str:
    return f"prov/{scale}-{paper}-table{table}-{row}-{job}.html"


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (int, float)):
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.3f}" if 0 < abs(v) < 1 else f"{v:.2f}"
    return esc(v)


def _bar(done: int, total: int) -> str:
    pct = 100.0 * done / total if total else 0.0
    return f'<span class="bar" title="{pct:.0f} %"><span style="width:{pct:.0f}%"></span></span>'


def index_page(payloads: list[dict[str, Any]], scale: str) -> str:
    parts = [f"<p>Every numeric table of the four papers, with the paper's numbers beside the ones this code "
             f"measured at <b>{esc(scale)}</b> scale. Mini-scale numbers come from the built-in synthetic "
             f"benchmark, not the paper's datasets: each number says what data it was measured on.</p>"]
    total = {"rows": 0, "rows_reproduced": 0, "cells": 0, "cells_reproduced": 0}
    for paper in PAPER_NAMES:
        mine = [p for p in payloads if p["paper"] == paper]
        if not mine:
            continue
        rows, classes = [], []
        for p in mine:
            cov = coverage(p)
            for k in total:
                total[k] += cov[k]
            claims = f"{cov['claims_held']} of {cov['claims']} held" if cov["claims"] else ""
            rows.append([link(table_page_name(paper, p["table"]), f"Table {p['table']}"), esc(p["title"]),
                         f"{_bar(cov['rows_reproduced'], cov['rows'])} {cov['rows_reproduced']} / {cov['rows']}",
                         f"num:{cov['cells_reproduced']} / {cov['cells']}", esc(claims)])
            classes.append("")
        parts.append(f"<h2>{esc(PAPER_NAMES[paper])}</h2>")
        parts.append(table(["table", "title", "rows reproduced", "numbers reproduced", "claims (reproduced)"],
                           rows, classes))
    parts.insert(1, f"<p><b>{total['rows_reproduced']}</b> of {total['rows']} rows and <b>{total['cells_reproduced']}"
                    f"</b> of {total['cells']} measurable numbers are reproduced (cited rows, which the paper "
                    f"quotes from elsewhere, are not counted). {link('flow.html', 'Flow pictures')}: TVNet and "
                    f"classical methods on a pair with known flow.</p>")
    return page("repro — reproduced tables", "\n".join(parts))


def _cell(row: dict[str, Any], key: str, prov_for: dict[str, str]) -> str:
    value = row["reproduced"].get(key)
    if value is None:
        return ""
    src = row.get("sources", {}).get(key, {})
    href = prov_for.get(str(src.get("file")))
    text = _num(value)
    shown = link(href, text, "provenance of this number") if href else text
    about = "; ".join(f"{esc(v)}" for k, v in src.items() if k not in ("file", "commit") and v)
    return f'num:{shown}<br><span class="muted">{about}</span>'


def table_page(p: dict[str, Any], plot: str | None, prov_for: dict[str, str]) -> str:
    cov = coverage(p)
    parts = [f"<p>{esc(PAPER_NAMES.get(p['paper'], p['paper']))}, Table {p['table']}. "
             f"{cov['rows_reproduced']} of {cov['rows']} rows reproduced at <b>{esc(p['scale'])}</b> scale. "
             "Each reproduced number names the data it was measured on and links to its provenance.</p>"]
    if p.get("caption"):
        parts.append(f"<blockquote>{esc(p['caption'])}</blockquote>")
    header = ["method", *[c["label"] for c in p["text_columns"]]]
    for m in p["metrics"]:
        unit = f" [{m['unit']}]" if m.get("unit") else ""
        header.append(f"{m['label']}{unit} reported")
        if m["job"]:
            header.append(f"{m['label']}{unit} reproduced")
    header.append("status")
    rows, classes = [], []
    for r in p["rows"]:
        cells = [esc(r["label"]) + (' <span class="muted">(cited)</span>' if r["kind"] == "cited" else "")]
        cells += [esc(r["cells"].get(c["key"], "")) for c in p["text_columns"]]
        for m in p["metrics"]:
            cells.append("num:" + _num(r["reported"].get(m["key"])))
            if m["job"]:
                cells.append(_cell(r, m["key"], prov_for))
        cells.append(f'<span class="muted">{esc(r.get("status", ""))}</span>')
        rows.append(cells)
        classes.append("cited" if r["kind"] == "cited" else "")
    parts.append(table(header, rows, classes))
    if p["claims"]:
        crow = []
        for c in p["claims"]:
            def verdict(side: str) -> str:
                status, values = c[side], c[f"{side}_values"]
                shown = f"{esc(status)}" if status in ("not run", "cited") else \
                    f'<span class="{esc(status)}">{esc(status)}</span> ({_num(values[0])} vs {_num(values[1])})'
                detail = c.get("reproduced_detail") if side == "reproduced" else None
                if detail and detail.get("ci"):
                    lo, hi = detail["ci"]
                    shown += (f'<br><span class="muted">diff {_num(detail.get("diff"))} [{_num(lo)}, {_num(hi)}] vs '
                              f'margin {_num(detail.get("margin"))}; {esc(detail.get("seeds"))} seeds, '
                              f'{esc(detail.get("method"))}</span>')
                elif detail and detail.get("reason"):
                    shown += f'<br><span class="muted">{esc(detail["reason"])}</span>'
                return shown
            crow.append([esc(c["text"]), verdict("reported"), verdict("reproduced")])
        parts += ["<h2>Claims</h2>", table(["claim", "on the paper's numbers", f"on the reproduced numbers"], crow)]
    if plot:
        parts += ["<h2>Plot</h2>", f'<img class="plot" src="{esc(plot)}" alt="reported and reproduced numbers of '
                                   f'Table {p["table"]}">']
    return page(f"{PAPER_NAMES.get(p['paper'], p['paper'])} — Table {p['table']}: {p['title']}", "\n".join(parts))


def _file_text(result) -> str:
    try:
        return json.dumps(json.loads(result.path.read_text()), indent=2)
    except (OSError, ValueError):
        return json.dumps({"metrics": result.metrics, "provenance": result.provenance}, indent=2, default=str)


def provenance_page(result, back: str) -> str:
    """``result``: a :class:`repro.results.Result`; ``back``: its table's page."""
    prov = result.provenance
    keys = ["commit", "dirty", "date", "scale", "data", "seed", "command", "spec_hash", "code", "threads"]
    rows = [[esc(k), esc(json.dumps(prov.get(k)) if isinstance(prov.get(k), (dict, list)) else prov.get(k))]
            for k in keys if k in prov]
    rows += [[esc(f"metric {k}"), f"num:{_num(v)}"] for k, v in result.metrics.items()]
    body = [f"<p>{link('../' + back, 'back to the table')} · result file <code>{esc(result.path)}</code></p>",
            table(["field", "value"], rows),
            "<h2>Everything the result file holds</h2>",
            f"<pre>{esc(_file_text(result))}</pre>"]
    return page(f"Provenance: {result.path.name}", "\n".join(body), root="../")
