"""``python -m repro report``: a self-contained static site whose links all resolve, which loads in a
real headless browser (Debian's chromium) without script or image errors, and whose index renders."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from repro.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install "
                                                              "chromium; .ci/run installs it)")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.refs.append(value)


def _refs(path: Path) -> list[str]:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.refs


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["report", "--out", str(out), "--format", "json", "-q",
                     "--tables", str(tmp_path_factory.mktemp("tables"))]) == 0
    return out, json.loads(buf.getvalue())


def test_every_page_written_and_every_link_resolves(site):
    out, summary = site
    html_files = sorted(out.rglob("*.html"))
    assert (out / "index.html").is_file() and (out / "flow.html").is_file()
    assert len(html_files) == len(summary["pages"]) == summary["tables"] + summary["provenance_pages"] + 2
    assert summary["tables"] >= 20 and summary["provenance_pages"] >= 1 and summary["flow_pictures"] >= 6
    checked = 0
    for page in html_files:
        for ref in _refs(page):
            assert not ref.startswith(("http:", "https:", "//")), f"{page.name} reaches out to {ref}"
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(out)} links to missing {ref}"
            assert out.resolve() in target.parents, f"{page.name}: {ref} leaves the site"
            checked += 1
    assert checked > 100
    index_links = _refs(out / "index.html")
    for paper in ("trajectorynet", "tvnet", "dynamics", "lgd"):
        assert f"{paper}-table2.html" in index_links


def test_table_page_shows_what_render_produces_with_provenance(site):
    out, _ = site
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["table3", "--paper", "tvnet", "--no-run", "--format", "json", "-q", "--tables", str(out / "_t")])
    payload = json.loads(buf.getvalue())[0]
    page = (out / "tvnet-table3.html").read_text()
    reproduced = [(r, k, v) for r in payload["rows"] for k, v in r["reproduced"].items()]
    assert reproduced, "the committed results hold reproduced TVNet Table 3 numbers"
    for row, key, value in reproduced:
        assert escape(row["label"]) in page and f"{value:.2f}" in page
        data = row["sources"][key]["data"]
        assert data and data.split(";")[0] in page  # the data each number comes from
    for row in payload["rows"]:
        for value in row["reported"].values():
            assert value is None or f"{value:.2f}" in page
    for claim in payload["claims"]:
        assert escape(claim["text"]) in page
    prov = [r for r in _refs(out / "tvnet-table3.html") if r.startswith("prov/")]
    assert len(prov) == len(reproduced)
    first = json.loads(Path(reproduced[0][0]["sources"][reproduced[0][1]]["file"]).read_text())
    assert first["provenance"]["spec_hash"] in (out / prov[0]).read_text()
    assert 'src="img/tvnet-table3.png"' in page


def test_flow_page_shows_tvnet_and_classical_methods_with_epe(site):
    out, _ = site
    page = (out / "flow.html").read_text()
    for method in ("tvnet-50", "tvl1", "dis-fast", "farneback"):
        assert f"img/flow/{method}.png" in page and f"{method}: EPE" in page
    from PIL import Image

    gt = np.asarray(Image.open(out / "img" / "flow" / "gt.png"))
    assert gt.ndim == 3 and len(np.unique(gt.reshape(-1, 3), axis=0)) > 20  # a real flow field, coloured


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=3000", *args], capture_output=True, text=True, timeout=120)


def _dom(page: Path) -> str:
    done = _chromium("--dump-dom", page.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _recorded_errors(dom: str) -> str:
    start = dom.index('<div id="page-errors">') + len('<div id="page-errors">')
    return dom[start:dom.index("</div>", start)]


@needs_browser
def test_pages_load_in_chromium_without_errors(site):
    out, _ = site
    pages = [out / "index.html", out / "flow.html", out / "tvnet-table3.html", out / "trajectorynet-table3.html",
             next((out / "prov").glob("*.html"))]
    for page in pages:
        dom = _dom(page)
        assert 'data-loaded="yes"' in dom, f"{page.name} did not finish loading"
        assert _recorded_errors(dom).strip() == "", f"{page.name}: {_recorded_errors(dom)}"


@needs_browser
def test_the_error_recorder_sees_broken_pages(tmp_path):
    """The check above means something: a broken image and a script error are caught."""
    from repro.report.html import page

    broken = tmp_path / "broken.html"
    broken.write_text(page("broken", '<img src="missing.png" alt="x"><script>undefinedFunction();</script>'))
    errors = _recorded_errors(_dom(broken))
    assert "missing.png" in errors and "undefinedFunction" in errors


@needs_browser
def test_index_screenshot_renders(site, tmp_path):
    from PIL import Image

    out, _ = site
    shot = tmp_path / "index.png"
    done = _chromium("--window-size=1280,900", f"--screenshot={shot}", (out / "index.html").resolve().as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (900, 1280, 3)
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, table rules, progress bars: not a blank or single-colour page
    header = image[:60].reshape(-1, 3).mean(0)
    assert header[2] > header[0] + 30  # the dark blue title bar is drawn
