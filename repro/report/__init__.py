"""``python -m repro report``: a static, self-contained HTML site of every table.

No server, no network: inline CSS, images copied beside the pages, relative links only.

* :mod:`repro.report.html` -- the page template (inline CSS, a script that records script and
  image errors into the page so a headless browser's ``--dump-dom`` shows them).
* :mod:`repro.report.data` -- a rendered table as JSON (what ``table<N> --format json`` prints) and
  how much of it is reproduced.
* :mod:`repro.report.pages` -- the index, one page per table, one provenance page per result file.
* :mod:`repro.report.flowviz` -- Middlebury colour-wheel pictures of TVNet and classical flow on a
  synthetic pair with known flow.
* :mod:`repro.report.site` -- :func:`build_site`, which writes them all.
"""
from __future__ import annotations

__all__ = ["build_site"]


def build_site(*args, **kwargs):
    from repro.report.site import build_site as build

    return build(*args, **kwargs)
