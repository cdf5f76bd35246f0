"""Write the whole site: ``index.html``, ``<paper>-table<N>.html``, ``flow.html``, ``prov/*.html``, ``img/``."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from repro.fileio import atomic_write_text
from repro.report.html import esc, page
from repro.report.pages import index_page, provenance_page, provenance_page_name, table_page, table_page_name

__all__ = ["build_site"]


def _plot(t, tables_dir: Path, img_dir: Path) -> str | None:
    """The table's plot, drawn afresh from the results (or copied from ``tables/`` if it cannot be)."""
    name = f"{t.spec.paper}-table{t.spec.table}.png"
    target = img_dir / name
    try:
        from repro.render import plot_png

        if plot_png(t, target):
            return f"img/{name}"
    except ImportError:
        pass
    source = Path(tables_dir) / t.spec.paper / f"table{t.spec.table}.png"
    if source.is_file():
        shutil.copyfile(source, target)
        return f"img/{name}"
    return None


def _flow_page(pictures: list[dict[str, Any]]) -> str:
    if not pictures:
        return page("Flow pictures", "<p>Not rendered (<code>--no-flow</code>).</p>")
    figures = "\n".join(f'<figure><img src="img/flow/{esc(p["file"])}" alt="{esc(p["caption"])}" height="192">'
                        f'<figcaption>{esc(p["caption"])}</figcaption></figure>' for p in pictures)
    body = (f"<p>One pair of the built-in benchmark (<code>{esc(pictures[0]['pair'])}</code>), rendered with its "
            "exact flow; each method's flow is drawn with the Middlebury colour wheel on the known flow's colour "
            "scale, with its end-point error (EPE) against the known flow.</p>" + figures)
    return page("Flow pictures: TVNet and classical methods", body)


def build_site(out: Path, specs: dict, results: dict, *, scale: str = "mini", tables_dir: Path = Path("tables"),
               flow: bool = True) -> dict[str, Any]:
    """Render every spec's table from ``results`` (no job is run) into the site under ``out``.
    Returns ``{"pages": [...], "index": path}``."""
    from repro.render import build_table
    from repro.report.data import table_payload

    out = Path(out)
    img_dir = out / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / "prov").mkdir(exist_ok=True)
    pages: list[Path] = []

    def write(name: str, html: str) -> None:
        atomic_write_text(out / name, html)
        pages.append(out / name)

    prov_for: dict[str, str] = {}
    for (_, paper, table, _, _), result in sorted(results.items()):
        name = provenance_page_name(result.scale, result.paper, result.table, result.row, result.job)
        prov_for[str(result.path)] = name
        write(name, provenance_page(result, table_page_name(paper, table)))
    payloads = []
    for spec in specs.values():
        t = build_table(spec, results, scale=scale)
        payload = table_payload(t)
        payloads.append(payload)
        write(table_page_name(spec.paper, spec.table), table_page(payload, _plot(t, tables_dir, img_dir), prov_for))
    pictures = []
    if flow:
        from repro.report.flowviz import render_flow_pictures

        pictures = render_flow_pictures(img_dir / "flow")
    write("flow.html", _flow_page(pictures))
    write("index.html", index_page(payloads, scale))
    return {"index": str(out / "index.html"), "pages": [str(p) for p in pages], "tables": len(payloads),
            "provenance_pages": len(prov_for), "flow_pictures": len(pictures)}
